"""A newcomer's first steps with the service: HTTPS in one command, and the first token made
by the very command `strongroom serve` prints."""

from __future__ import annotations

import json
import shlex
import ssl
import subprocess
from pathlib import Path

import httpx
from clirun import make_cli
from cryptography import x509
from servedproc import serving


def test_dev_cert_gives_https_that_curl_and_python_trust(tmp_path: Path) -> None:
    cli = make_cli("sqlite", tmp_path / "home")
    made = cli("dev-cert", "--json").json()
    folder = tmp_path / "home" / "tls"
    assert made["ca_cert"] == str(folder / "ca.pem")
    for key in ("ca_key", "server_key"):
        assert Path(made[key]).stat().st_mode & 0o777 == 0o600  # keys are private
    server = x509.load_pem_x509_certificate(Path(made["server_cert"]).read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    again = cli("dev-cert", code=2)  # never overwritten by accident
    assert "--force" in again.stderr

    with serving(
        cli.env, "--tls-cert", made["server_cert"], "--tls-key", made["server_key"],
        scheme="https", verify=ssl.create_default_context(cafile=made["ca_cert"]),
    ) as served:  # fmt: skip
        port = served.base_url.rsplit(":", 1)[1]
        for host in ("localhost", "127.0.0.1"):
            url = f"https://{host}:{port}/healthz"
            curl = subprocess.run(
                ["curl", "--silent", "--show-error", "--fail", "--cacert", made["ca_cert"], url],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert curl.returncode == 0, curl.stderr
            assert json.loads(curl.stdout)["status"] == "ok"
        # Without the CA, verification fails loudly rather than silently.
        untrusted = subprocess.run(
            ["curl", "--silent", "--show-error", f"https://localhost:{port}/healthz"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert untrusted.returncode != 0
        assert "certificate" in untrusted.stderr.lower()


def test_serve_prints_a_first_token_command_that_runs_as_printed(tmp_path: Path) -> None:
    cli = make_cli("sqlite", tmp_path / "data dir")  # a space in the path, quoted as printed
    with serving(cli.env) as served:
        log = served.log()
        hint = next(line for line in log.splitlines() if "token create admin" in line)
        # Run it in a shell that knows nothing of the server's environment.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        made = subprocess.run(
            ["/bin/sh", "-c", hint.strip()], capture_output=True, text=True, env=env,
            timeout=60, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        assert token.startswith("srt_")
        me = httpx.get(
            f"{served.base_url}/v1/auth/self", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status_code == 200, me.text
        assert me.json()["identity"] == "admin"
        assert shlex.split(hint)[0].startswith("STRONGROOM_HOME=")
