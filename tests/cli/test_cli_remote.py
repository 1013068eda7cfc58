"""The command line in the remote profile: a machine with only STRONGROOM_ADDR, a CA bundle and
a token from `strongroom login` (no key file, no database) uses a real `strongroom serve`."""

from __future__ import annotations

import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from clirun import Cli, client_cli, make_cli
from servedproc import ServeProcess, serving

PASSWORD = "s3cr3t-fleet-pw"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, ServeProcess, Path]]:
    """`strongroom serve` over HTTPS on the embedded store; the CLI of its own host."""
    root = tmp_path_factory.mktemp("remote-cli")
    host_cli = make_cli("sqlite", root / "server-home")
    host_cli("init")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = root / "cert.pem", root / "key.pem", root / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    ca.cert_pem.write_to_path(ca_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    args = ("--tls-cert", str(cert_path), "--tls-key", str(key_path))
    with serving(host_cli.env, *args, scheme="https", verify=context) as served:
        yield host_cli, served, ca_path


def test_login_then_secret_commands_then_logout(
    server: tuple[Cli, ServeProcess, Path], tmp_path: Path
) -> None:
    host_cli, served, ca_path = server
    token = host_cli("token", "create", "deploy-bot", "--policy", "admin").stdout.strip()
    cli = client_cli(served, ca_path, tmp_path / "laptop")

    logged = cli("login", "--token-stdin", stdin=token + "\n")
    assert "deploy-bot" in logged.stdout
    stored = tmp_path / "laptop" / "config" / "strongroom" / "credentials"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    status = cli("status", "--json").json()
    assert (status["profile"], status["identity"], status["health"]) == (
        "remote", "deploy-bot", "ok",
    )  # fmt: skip

    cli("secret", "create", "fleet-db", "--value", f'{{"user":"fleet","password":"{PASSWORD}"}}',
        "--content-type", "application/json")  # fmt: skip
    assert cli("secret", "get", "fleet-db", "--field", "password").stdout == PASSWORD
    assert cli("secret", "get", "fleet-db", "--field", "user").stdout == "fleet"
    missing = cli("secret", "get", "fleet-db", "--field", "host", code=3)
    assert "host" in missing.stderr
    listed = cli("secret", "list", "--json").json()
    assert "fleet-db" in [s["name"] for s in listed]
    cli("--as", "ciso", "secret", "update", "fleet-db", "--value", '{"password":"v2"}',
        "--content-type", "application/json")  # fmt: skip
    trail = host_cli("audit", "trail", "--secret", "fleet-db", "--json").json()
    writers = {(e["action"], e["actor_id"]) for e in trail}
    assert ("UPDATE", "deploy-bot") in writers  # the token acts, --as is only a note
    assert not any(e["actor_id"] == "ciso" for e in trail)
    cli("logout")
    assert not stored.exists()
    after = cli("secret", "get", "fleet-db", code=4)
    assert "strongroom login" in after.stderr
    assert sorted(p.name for p in (tmp_path / "laptop").iterdir()) == ["config"]
    assert cli.leaks(token) == []
    assert cli.leaks(PASSWORD) == []  # only `secret get` printed it


def test_local_mode_records_the_os_user_beside_a_claimed_name(
    server: tuple[Cli, ServeProcess, Path],
) -> None:
    host_cli = server[0]
    host_cli("--as", "ciso", "secret", "create", "claimed-name", "--value", "v")
    trail = host_cli("audit", "trail", "--secret", "claimed-name", "--json").json()
    created = [e for e in trail if e["action"] == "CREATE"]
    assert [e["actor_id"] for e in created] == ["ciso"]
    assert "(os-user " in created[0]["actor_user_agent"]
    assert "(os-user ciso" not in created[0]["actor_user_agent"]


def test_rotation_revocation_audit_and_events_commands_use_the_server(
    server: tuple[Cli, ServeProcess, Path], tmp_path: Path
) -> None:
    host_cli, served, ca_path = server
    host_cli("policy", "set", "ops-remote", "-g", "read,write,list,rotate:ops-*",
             "-g", "revoke-request,revoke-approve:ops-*", "-g", "audit-read:*")  # fmt: skip
    alice_token = host_cli("token", "create", "ops-alice", "--policy", "ops-remote").stdout.strip()
    bob_token = host_cli("token", "create", "ops-bob", "--policy", "ops-remote").stdout.strip()
    admin_token = host_cli("token", "create", "ops-admin", "--policy", "admin").stdout.strip()
    alice = client_cli(served, ca_path, tmp_path / "alice")
    alice.env["STRONGROOM_TOKEN"] = alice_token
    bob = client_cli(served, ca_path, tmp_path / "bob")
    bob.env["STRONGROOM_TOKEN"] = bob_token

    alice("secret", "create", "ops-db", "--value", "first-value")
    alice("rotation", "register", "ops-db", "--generator", "password", "--days", "30")
    status = alice("rotation", "status", "ops-db", "--json").json()
    assert status["rotation_days"] == 30
    alice("rotation", "rotate", "ops-db")
    assert alice("secret", "get", "ops-db").stdout != "first-value"
    assert [c["name"] for c in alice("rotation", "list", "--json").json()] == ["ops-db"]

    opened = alice("--as", "ops-bob", "revoke", "request", "ops-db", "--reason",
                   "key_compromise", "--severity", "low", "--json").json()  # fmt: skip
    assert opened["requested_by"] == "ops-alice"  # the token, not --as
    own = alice("--as", "ops-bob", "revoke", "approve", str(opened["revocation_id"]), code=4)
    assert "nobody approves their own" in own.stderr
    pending = bob("revoke", "pending", "--json").json()
    assert [r["revocation_id"] for r in pending] == [opened["revocation_id"]]
    bob("revoke", "approve", str(opened["revocation_id"]))
    assert alice("secret", "get", "ops-db", code=4).code == 4  # revoked

    trail = bob("audit", "trail", "--secret", "ops-db", "--json").json()
    assert {e["actor_id"] for e in trail} == {"ops-alice", "ops-bob"}

    admin = client_cli(served, ca_path, tmp_path / "admin")
    admin.env["STRONGROOM_TOKEN"] = admin_token
    refused = admin("events", "subscribe", "http://10.0.0.1/hook", code=2)
    assert "10.0.0.1" in refused.stderr or "private" in refused.stderr
    assert admin("events", "list", "--json").json() == []
    for cli in (alice, bob, admin):
        assert cli.leaks(alice_token, bob_token, admin_token) == []


def test_token_policy_report_and_transfer_commands_use_the_server(
    server: tuple[Cli, ServeProcess, Path], tmp_path: Path
) -> None:
    host_cli, served, ca_path = server
    admin_token = host_cli("token", "create", "remote-admin", "--policy", "admin").stdout.strip()
    admin = client_cli(served, ca_path, tmp_path / "admin")
    admin.env["STRONGROOM_TOKEN"] = admin_token

    admin("policy", "set", "fleet-readers", "-g", "read,list:fleet-*", "--description", "ro")
    assert "fleet-readers" in [p["name"] for p in admin("policy", "list", "--json").json()]
    made = admin("token", "create", "fleet-app", "--policy", "fleet-readers", "--json").json()
    assert made["identity"] == "fleet-app"
    listed = admin("token", "list", "--identity", "fleet-app", "--json").json()
    assert [t["id"] for t in listed] == [made["id"]]
    host_view = host_cli("token", "list", "--identity", "fleet-app", "--json").json()
    assert [t["id"] for t in host_view] == [made["id"]]  # made by the server, in its store
    reader = client_cli(served, ca_path, tmp_path / "reader")
    reader.env["STRONGROOM_TOKEN"] = made["token"]
    denied = reader("policy", "list", code=4)  # administration needs the admin grant
    assert "fleet-readers" in denied.stderr
    admin("policy", "detach", "fleet-readers", "fleet-app")
    admin("token", "revoke", made["id"])
    assert host_cli("token", "list", "--identity", "fleet-app", "--json").json()[0]["revoked_at"]
    admin("policy", "delete", "fleet-readers")

    source = tmp_path / "fleet.env"
    source.write_text("FLEET_RADIO_KEY=radio-value-1\nFLEET_MAP_KEY=map-value-2\n")
    imported = admin("secret", "import", str(source), "--json").json()
    assert imported["created"] == 2
    assert host_cli("secret", "get", "FLEET-RADIO-KEY").stdout == "radio-value-1"
    exported = admin("secret", "export", "FLEET-RADIO-KEY", "FLEET-MAP-KEY", "--plain",
                     "--format", "env").stdout  # fmt: skip
    assert "radio-value-1" in exported
    assert "map-value-2" in exported

    report = tmp_path / "soc2.json"
    admin("report", "compliance", "--format", "json", "-o", str(report))
    assert admin("report", "verify", str(report), "--json").json()["valid"] is True
    pem = admin("report", "public-key").stdout
    assert pem == host_cli("report", "public-key").stdout  # the server's key, not a local one
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(report.read_bytes().replace(b"soc2", b"hipaa", 1))
    admin("report", "verify", str(tampered), code=1)
    advice = admin("rotation", "recommend", "FLEET-RADIO-KEY", "--json").json()
    assert [r["name"] for r in advice] == ["FLEET-RADIO-KEY"]
    assert admin.leaks(admin_token) == []
