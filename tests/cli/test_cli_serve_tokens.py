"""``strongroom token|policy|serve``: the first admin token, policies, and the real service
process (TLS, several workers, graceful shutdown)."""

from __future__ import annotations

import re
import signal
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme
from clirun import Cli, make_cli
from servedproc import serving

#: A clean stop: uvicorn finishes, then lets SIGTERM end the process as the signal asks.
STOPPED = (0, -signal.SIGTERM)
TOKEN = re.compile(r"srt_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli("sqlite", tmp_path / "home")


def test_token_create_prints_the_token_once_and_list_never_shows_it(cli: Cli) -> None:
    created = cli("token", "create", "dispatch-api", "--policy", "auditor")
    token = created.stdout.strip()
    assert TOKEN.fullmatch(token), created.stdout
    listed = cli("token", "list", "--json").json()
    assert [(t["identity"], t["revoked_at"]) for t in listed] == [("dispatch-api", None)]
    token_id = listed[0]["id"]
    assert token_id in token
    plain = cli("token", "list")
    assert token.split("_")[2] not in plain.stdout + plain.stderr
    assert "digest" not in cli("token", "list", "--json").stdout

    revoked = cli("token", "revoke", token_id, "--json").json()
    assert revoked["revoked_at"] is not None
    assert revoked["identity"] == "dispatch-api"
    assert cli("token", "list", "--json").json()[0]["revoked_at"] is not None


def test_token_create_refuses_an_unknown_policy_and_creates_nothing(cli: Cli) -> None:
    failed = cli("token", "create", "someone", "--policy", "no-such-policy", code=None)
    assert failed.code != 0
    assert "no-such-policy" in failed.stderr
    assert cli("token", "list", "--json").json() == []


def test_policy_set_attach_detach_delete(cli: Cli) -> None:
    cli("policy", "set", "dispatch-read", "-g", "read,list:dispatch-*", "--description", "d")
    policies = {p["name"]: p for p in cli("policy", "list", "--json").json()}
    assert policies["dispatch-read"]["grants"] == [
        {"actions": ["list", "read"], "pattern": "dispatch-*"}
    ]
    assert {"admin", "auditor"} <= set(policies)  # built in
    held = cli("policy", "attach", "dispatch-read", "radio-7", "--json").json()
    assert held == {"identity": "radio-7", "policies": ["dispatch-read"]}
    assert cli("policy", "detach", "dispatch-read", "radio-7", "--json").json()["policies"] == []
    bad = cli("policy", "set", "broken", "-g", "fly:dispatch-*", code=None)
    assert bad.code == 2
    assert "unknown action" in bad.stderr
    assert cli("policy", "set", "admin", "-g", "read:*", code=None).code == 2  # built in
    cli("policy", "delete", "dispatch-read")
    assert "dispatch-read" not in {p["name"] for p in cli("policy", "list", "--json").json()}


@pytest.mark.slow
def test_serve_with_tls_and_two_workers_answers_and_stops_cleanly(cli: Cli, tmp_path: Path) -> None:
    token = cli("token", "create", "ops", "--policy", "admin").stdout.strip()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    args = ("--workers", "2", "--tls-cert", str(cert_path), "--tls-key", str(key_path))
    with serving(cli.env, *args, scheme="https", verify=context) as served:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=served.base_url, verify=context, headers=headers) as client:
            created = client.post("/v1/secrets", json={"name": "fleet-db", "value": "pw-1"})
            assert created.status_code == 201, created.text
            # Every worker reads what one wrote (they share the store).
            for _ in range(20):
                read = client.get("/v1/secrets/fleet-db")
                assert read.status_code == 200
                assert read.json()["value"] == "pw-1"
            assert "max-age" in read.headers["strict-transport-security"]
            # /metrics sums every worker's counts, whichever worker answers the scrape; the
            # workers publish their counts every second, so wait until the sum is complete.
            reads = 'strongroom_operations_total{action="READ",result="SUCCESS"} 20.0'
            deadline = time.monotonic() + 30
            while reads not in client.get("/metrics").text:
                assert time.monotonic() < deadline, "the workers' counts were never summed"
                time.sleep(0.05)
            for _ in range(4):
                assert reads in client.get("/metrics").text
        with pytest.raises(httpx.TransportError):  # plain HTTP gets no answer
            httpx.get(f"http://127.0.0.1:{served.base_url.rsplit(':', 1)[1]}/healthz").read()
        assert served.stop() in STOPPED
        log = served.log()
    assert "listening on https://127.0.0.1" in log
    assert "token create admin --policy admin" in log
    assert log.count("service stopped") == 2  # each worker closed its stores
    assert token not in log
    assert "pw-1" not in log


@pytest.mark.slow
def test_shutdown_finishes_the_request_in_flight(cli: Cli) -> None:
    token = cli("token", "create", "ops", "--policy", "admin").stdout.strip()
    with serving(cli.env) as served:
        port = int(served.base_url.rsplit(":", 1)[1])
        body = b'{"name": "late-secret", "value": "written during shutdown"}'
        head = (
            f"POST /v1/secrets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(head)
            # "100 Continue" comes when the application starts reading the body: the request
            # is in flight (a connection still waiting for its headers would just be closed).
            assert read_head(conn).startswith(b"HTTP/1.1 100"), "no go-ahead for the body"
            conn.sendall(body[:10])  # its body half sent
            served.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: "Waiting for connections to close" in served.log(), 30)
            assert served.proc.poll() is None  # waiting for the request, not gone
            conn.sendall(body[10:])
            answer = read_head(conn)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        assert served.proc.wait(30) in STOPPED
        assert "service stopped" in served.log()
    # The secret written during shutdown is there.
    assert cli("secret", "get", "late-secret").stdout.strip() == "written during shutdown"


def read_head(conn: socket.socket) -> bytes:
    """What the server sends up to the end of one answer's head (or until it closes)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = conn.recv(1)  # byte by byte: nothing of the next answer is consumed
        if not chunk:
            break
        answer += chunk
    return answer


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def test_status_warns_about_tokens_that_never_expire(cli: Cli) -> None:
    lasting = cli("token", "create", "bootstrap", "--policy", "admin").stdout.strip()
    cli("token", "create", "ci-job", "--policy", "auditor", "--ttl-days", "1")
    report = cli("status", "--json").json()
    lasting_id = lasting.split("_")[1]
    assert len(report["token_warnings"]) == 1
    assert lasting_id in report["token_warnings"][0]
    assert "bootstrap" in report["token_warnings"][0]
    assert lasting.split("_", 2)[2] not in cli("status").stderr  # the id, never the token
    assert "never expires" in cli("status").stderr
    cli("token", "revoke", lasting_id)
    assert cli("status", "--json").json()["token_warnings"] == []
