"""`strongroom login --method jwt|cert` against a real `strongroom serve` over HTTPS: the JWT
(signed by a key the server's auth configuration trusts) or the client certificate (issued by
the CA given to --tls-client-ca) is exchanged for a short-lived token, stored as the remote
profile stores any token, and the consumer then reads what its role allows and nothing else."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import trustme
from clirun import Cli, client_cli, make_cli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from servedproc import ServeProcess, serving

ISSUER = "https://sts.fleet.example"


@dataclass
class Site:
    host: Cli
    served: ServeProcess
    ca_path: Path
    signing_key: ec.EllipticCurvePrivateKey
    client_ca: trustme.CA


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("login-methods")
    host = make_cli("sqlite", root / "server-home")
    host("init")
    host("policy", "set", "dispatch-read", "-g", "read:dispatch-*")
    host("policy", "set", "terminal-read", "-g", "read:radio-*")
    admin = host("token", "create", "ops", "--policy", "admin").stdout.strip()
    signing_key = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        signing_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    client_ca = trustme.CA()
    client_ca_path = root / "terminals-ca.pem"
    client_ca.cert_pem.write_to_path(client_ca_path)
    config = root / "auth.toml"
    config.write_text(
        f'[jwt.ci]\nissuer = "{ISSUER}"\naudiences = ["strongroom"]\n'
        f"public_keys = [{json.dumps(public_pem)}]\n"
        '[jwt.ci.roles.deploy]\nidentity = "ci-{sub}"\npolicies = ["dispatch-read"]\n'
        'algorithms = ["ES256"]\n[jwt.ci.roles.deploy.claims]\nsub = "dispatch-*"\n'
        f"[cert.terminals]\nca_file = {json.dumps(str(client_ca_path))}\n"
        'identity = "terminal-{cn}"\npolicies = ["terminal-read"]\n'
        '[cert.terminals.match]\ndns = "*.terminals.fleet.example"\n'
    )
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = root / "cert.pem", root / "key.pem", root / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    ca.cert_pem.write_to_path(ca_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    env = {**host.env, "STRONGROOM_AUTH_CONFIG": str(config)}
    args = ("--tls-cert", str(cert_path), "--tls-key", str(key_path),
            "--tls-client-ca", str(client_ca_path))  # fmt: skip
    with serving(env, *args, scheme="https", verify=context) as served:
        for name in ("dispatch-db", "radio-key"):
            made = client_cli(served, ca_path, root / f"seed-{name}")
            made("login", "--token-stdin", stdin=admin + "\n")
            made("secret", "create", name, "--value", f"value-of-{name}")
        yield Site(host, served, ca_path, signing_key, client_ca)


def test_login_with_a_jwt_stores_a_short_lived_token_that_reads_its_role(
    site: Site, tmp_path: Path
) -> None:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "strongroom", "sub": "dispatch-deployer", "iat": now,
              "exp": now + 300}  # fmt: skip
    token = jwt.encode(claims, site.signing_key, algorithm="ES256")
    jwt_file = tmp_path / "token.jwt"
    jwt_file.write_text(token)
    cli = client_cli(site.served, site.ca_path, tmp_path / "runner")
    result = cli("login", "--method", "jwt", "--jwt-file", str(jwt_file), "--role", "deploy",
                 "--json")  # fmt: skip
    assert result.json()["identity"] == "ci-dispatch-deployer"
    assert token not in result.stdout + result.stderr
    assert cli("secret", "get", "dispatch-db").stdout == "value-of-dispatch-db"
    refused = cli("secret", "get", "radio-key", code=None)
    assert refused.code != 0
    stored = (tmp_path / "runner" / "config" / "strongroom" / "credentials").read_text()
    assert token not in stored  # the JWT is exchanged, never kept


def test_login_with_a_bad_jwt_fails_and_stores_nothing(site: Site, tmp_path: Path) -> None:
    now = int(time.time())
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode({"iss": ISSUER, "aud": "strongroom", "sub": "dispatch-x", "iat": now,
                         "exp": now + 300}, other, algorithm="ES256")  # fmt: skip
    jwt_file = tmp_path / "forged.jwt"
    jwt_file.write_text(forged)
    cli = client_cli(site.served, site.ca_path, tmp_path / "intruder")
    failed = cli("login", "--method", "jwt", "--jwt-file", str(jwt_file), "--role", "deploy",
                 code=None)  # fmt: skip
    assert failed.code != 0
    assert "signature" in failed.stderr
    assert forged not in failed.stderr
    assert not (tmp_path / "intruder" / "config" / "strongroom" / "credentials").exists()


def test_login_with_a_client_certificate(site: Site, tmp_path: Path) -> None:
    leaf = site.client_ca.issue_cert("term-5.terminals.fleet.example", common_name="term-5")
    pem = tmp_path / "terminal.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(pem)
    cli = client_cli(site.served, site.ca_path, tmp_path / "terminal")
    logged = cli("login", "--method", "cert", "--cert", str(pem), "--json").json()
    assert logged["identity"] == "terminal-term-5"
    assert cli("secret", "get", "radio-key").stdout == "value-of-radio-key"
    assert cli("secret", "get", "dispatch-db", code=None).code != 0
