"""Client certificates (mTLS): a terminal's certificate, verified by the TLS handshake against
the configured CA bundle, is mapped by a rule (its CA, subject CN and SAN globs) to an identity
and policies; it reads what those allow over /v1 and the Key Vault API, and nothing else.
Certificates from another CA never get past the handshake; expired or not-yet-valid ones, and
ones their CA did not issue for clients, are a 401 (``cert_expired``, ``cert_untrusted``) with an
audit row, as is a certificate that matches no rule (``cert_mismatch``)."""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from served import Served, serve, server_settings

from strongroom import Strongroom
from strongroom.core.policy import Policy


@dataclass
class LapsedCA:
    """A CA whose own validity ended yesterday (trustme makes only current ones)."""

    private_key_pem: trustme.Blob
    cert_pem: trustme.Blob

    @classmethod
    def make(cls) -> LapsedCA:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legacy terminals CA")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        return cls(trustme.Blob(pem), trustme.Blob(cert.public_bytes(serialization.Encoding.PEM)))


def issue(
    ca: trustme.CA | LapsedCA, folder: Path, cn: str, *, dns: tuple[str, ...] = (),
    uris: tuple[str, ...] = (), not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Path:  # fmt: skip
    """A client certificate for ``cn`` signed by ``ca`` (trustme makes no URI SANs), written
    with its key to one PEM file; returns the file."""
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    path = folder / f"{cn}-{x509.random_serial_number()}.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM)
    )  # fmt: skip
    return path


CONFIG = """
[cert.terminals]
ca_file = {terminals}
identity = "terminal-{{cn}}"
policies = ["terminal-read"]
ttl_seconds = 600
[cert.terminals.match]
dns = "*.terminals.fleet.example"

[cert.legacy]
ca_file = {legacy}
identity = "terminal-{{cn}}"
policies = ["terminal-read"]
[cert.legacy.match]
dns = "*.legacy.fleet.example"

[cert.consoles]
ca_file = {consoles}
identity = "console-{{cn}}"
policies = ["console-read"]
[cert.consoles.match]
uri = "spiffe://fleet/console/*"
"""


@dataclass
class Pki:
    served: Served
    app: Strongroom
    terminals: trustme.CA
    consoles: trustme.CA
    legacy: LapsedCA
    folder: Path

    def client(self, leaf: Path | None, token: str | None = None) -> httpx.AsyncClient:
        context = ssl.create_default_context()
        assert self.served.ca is not None
        self.served.ca.configure_trust(context)
        if leaf is not None:
            context.load_cert_chain(leaf)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.served.base_url, verify=context, headers=headers)

    def terminal(self, cn: str = "term-042", **options: Any) -> Path:
        dns = (f"{cn}.terminals.fleet.example",)
        return issue(self.terminals, self.folder, cn, dns=dns, **options)

    async def audit(self, **params: str) -> list[dict[str, Any]]:
        async with self.served.admin() as c:
            found = await c.get("/v1/audit/events", params={"limit": "1000", **params})
        rows: list[dict[str, Any]] = found.json()
        return rows


@pytest.fixture(scope="module")
async def pki(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pki]:
    home = tmp_path_factory.mktemp("mtls")
    terminals, consoles, legacy = trustme.CA(), trustme.CA(), LapsedCA.make()
    paths = {}
    for name, ca in (("terminals", terminals), ("consoles", consoles), ("legacy", legacy)):
        paths[name] = home / f"{name}-ca.pem"
        ca.cert_pem.write_to_path(paths[name])
    bundle = home / "client-ca-bundle.pem"
    bundle.write_bytes(b"".join(p.read_bytes() for p in paths.values()))
    config = home / "auth.toml"
    config.write_text(CONFIG.format(**{k: json.dumps(str(v)) for k, v in paths.items()}))
    app = await Strongroom.open(server_settings("sqlite", home, auth_config=config))
    try:
        await app.access.put_policy(Policy.build("terminal-read", ["read,list:radio-*"]))
        await app.access.put_policy(Policy.build("console-read", ["read:console-*"]))
        async with serve(app, tls_dir=home, client_ca=bundle) as served:
            async with served.admin() as c:
                for name in ("radio-key", "fleet-db", "console-key"):
                    made = await c.post("/v1/secrets", json={"name": name, "value": "v-1"})
                    assert made.status_code == 201, made.text
            yield Pki(served, app, terminals, consoles, legacy, home)
    finally:
        await app.close()


async def test_a_terminal_certificate_reads_what_its_rule_allows_and_nothing_else(pki: Pki) -> None:
    leaf = pki.terminal()
    async with pki.client(leaf) as c:
        me = await c.get("/v1/auth/self")
        assert me.status_code == 200, me.text
        assert me.json()["identity"] == "terminal-term-042"
        assert me.json()["policies"] == ["terminal-read"]
        assert (await c.get("/v1/secrets/radio-key")).json()["value"] == "v-1"
        assert (await c.get("/v1/secrets/fleet-db")).status_code == 403
        kv = await c.get("/secrets/radio-key", params={"api-version": "7.5"})
        assert kv.status_code == 200, kv.text
        assert (await c.get("/secrets/fleet-db", params={"api-version": "7.5"})).status_code == 403
    reads = [r for r in await pki.audit(secret="radio-key", action="READ")
             if r["actor_id"] == "terminal-term-042"]  # fmt: skip
    auth = reads[0]["details"]["auth"]
    assert (auth["method"], auth["role"]) == ("cert", "terminals")
    assert len(auth["fingerprint"]) == 64


async def test_a_console_certificate_maps_by_its_uri_san_under_its_own_ca(pki: Pki) -> None:
    console = issue(pki.consoles, pki.folder, "desk-7", uris=("spiffe://fleet/console/desk-7",))
    async with pki.client(console) as c:
        assert (await c.get("/v1/auth/self")).json()["identity"] == "console-desk-7"
        assert (await c.get("/v1/secrets/console-key")).status_code == 200
        assert (await c.get("/v1/secrets/radio-key")).status_code == 403


async def test_a_bearer_token_speaks_for_the_caller_over_a_certificate(pki: Pki) -> None:
    async with pki.client(pki.terminal(), token=pki.served.admin_token) as c:
        assert (await c.get("/v1/auth/self")).json()["identity"] == "test-admin"


async def test_a_certificate_login_issues_a_short_lived_token(pki: Pki) -> None:
    async with pki.client(pki.terminal("term-007")) as c:
        answer = await c.post("/v1/auth/cert/login")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["identity"], body["auth_method"], body["role"]) == (
        "terminal-term-007", "cert", "terminals",
    )  # fmt: skip
    async with pki.client(None, token=body["token"]) as c:
        assert (await c.get("/v1/secrets/radio-key")).status_code == 200
        assert (await c.get("/v1/secrets/fleet-db")).status_code == 403


@pytest.mark.parametrize(
    ("label", "sans"),
    [
        ("SAN outside the rule", {"dns": ("term-9.evil.example",)}),
        ("console URI under the terminals CA", {"uris": ("spiffe://fleet/console/x",)}),
        ("no SAN at all", {}),
    ],
)
async def test_a_certificate_that_matches_no_rule_is_a_401_and_audited(
    pki: Pki, label: str, sans: dict[str, tuple[str, ...]]
) -> None:
    leaf = issue(pki.terminals, pki.folder, "x", **sans)
    before = len(await pki.audit(action="AUTHENTICATE", result="FAILURE"))
    tokens = len(await pki.app.access.list_tokens())
    async with pki.client(leaf) as c:
        refused = await c.get("/v1/secrets/radio-key")
        assert refused.status_code == 401, label
        assert refused.json()["error"]["code"] == "cert_mismatch", label
        login = await c.post("/v1/auth/cert/login")
        assert login.status_code == 401, label
        assert login.json()["error"]["code"] == "cert_mismatch", label
    rows = await pki.audit(action="AUTHENTICATE", result="FAILURE")
    assert len(rows) == before + 2
    assert {r["error_code"] for r in rows[:2]} == {"cert_mismatch"}
    assert len(await pki.app.access.list_tokens()) == tokens


async def test_a_login_without_a_certificate_is_refused(pki: Pki) -> None:
    async with pki.client(None) as c:
        answer = await c.post("/v1/auth/cert/login")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "cert_required"


@pytest.mark.parametrize("case", ["expired", "not yet valid"])
async def test_a_certificate_outside_its_dates_is_a_401_and_audited(pki: Pki, case: str) -> None:
    """The handshake leaves the dates to the application, which refuses with a reason on record
    (a TLS alert would leave none)."""
    now = dt.datetime.now(dt.UTC)
    if case == "expired":
        window = {"not_before": now - dt.timedelta(days=3), "not_after": now - dt.timedelta(days=2)}
    else:
        window = {"not_before": now + dt.timedelta(days=1), "not_after": now + dt.timedelta(days=2)}
    leaf = pki.terminal("term-7", **window)
    before = len(await pki.audit(action="AUTHENTICATE", result="FAILURE"))
    tokens = len(await pki.app.access.list_tokens())
    async with pki.client(leaf) as c:
        refused = await c.get("/v1/secrets/radio-key")
        login = await c.post("/v1/auth/cert/login")
    for answer in (refused, login):
        assert answer.status_code == 401, case
        assert answer.json()["error"]["code"] == "cert_expired", case
        assert "v-1" not in answer.text
    rows = await pki.audit(action="AUTHENTICATE", result="FAILURE")
    assert len(rows) == before + 2
    assert {r["error_code"] for r in rows[:2]} == {"cert_expired"}
    assert len(await pki.app.access.list_tokens()) == tokens


async def test_a_certificate_under_a_lapsed_ca_is_untrusted_and_audited(pki: Pki) -> None:
    """The handshake no longer checks dates, so the application verifies the whole chain at its
    own clock: a current certificate whose CA has lapsed is refused, with the reason on record."""
    leaf = issue(pki.legacy, pki.folder, "term-9", dns=("term-9.legacy.fleet.example",))
    before = len(await pki.audit(action="AUTHENTICATE", result="FAILURE"))
    async with pki.client(leaf) as c:
        refused = await c.get("/v1/secrets/radio-key")
        login = await c.post("/v1/auth/cert/login")
    for answer in (refused, login):
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "cert_untrusted"
    rows = await pki.audit(action="AUTHENTICATE", result="FAILURE")
    assert len(rows) == before + 2
    assert {r["error_code"] for r in rows[:2]} == {"cert_untrusted"}


async def test_another_cas_certificate_fails_the_handshake(pki: Pki) -> None:
    """The ssl module verifies the chain in the handshake with no callback to let another CA's
    certificate through, so it never gets an HTTP exchange (nor an audit row)."""
    leaf = issue(trustme.CA(), pki.folder, "term-1", dns=("term-1.terminals.fleet.example",))
    before = len(await pki.audit(action="AUTHENTICATE"))
    async with pki.client(leaf) as c:
        with pytest.raises(httpx.HTTPError):  # TLS alert: the request is never made
            await c.get("/v1/secrets/radio-key")
    assert len(await pki.audit(action="AUTHENTICATE")) == before
