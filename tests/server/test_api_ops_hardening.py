"""Operations and hardening over real HTTP: health and readiness, Prometheus metrics after a
scripted workload, body and rate limits, security and CORS headers, TLS-only HSTS, values kept
out of errors and logs, JSON 404s, and the client address (X-Forwarded-For only via a trusted
proxy) in the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from served import Served, serve, server_settings

from strongroom import Strongroom
from strongroom.core.logging import configure_logging

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


@asynccontextmanager
async def custom_server(
    tmp_path: Path, *, tls: bool = False, **changes: Any
) -> AsyncIterator[Served]:
    """A server over an app whose settings differ from the defaults by ``changes``."""
    app = await Strongroom.open(server_settings("sqlite", tmp_path, **changes))
    try:
        async with serve(app, tls_dir=tmp_path if tls else None) as running:
            yield running
    finally:
        await app.close()


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def audit_rows(served: Served, **filters: Any) -> list[dict[str, Any]]:
    async with served.admin() as c:
        response = await c.get("/v1/audit/events", params={"limit": 1000, **filters})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


# -- health, readiness, metrics ------------------------------------------------------------------


async def test_health_and_readiness_need_no_token(served: Served) -> None:
    async with served.client() as c:
        health = await c.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"secrets": "ok", "audit": "ok"}}
        for response in (health, ready):
            assert "www-authenticate" not in response.headers


async def test_metrics_need_audit_read_on_every_secret(served: Served) -> None:
    async with served.client() as c:
        anonymous = await c.get("/metrics")
        assert (anonymous.status_code, code(anonymous)) == (401, "unauthorized")
        assert "strongroom_" not in anonymous.text
    for grants in (("read:*",), ("audit-read:app-*",), ("read,list,write,delete,rotate:*",)):
        token = await served.token_for(f"no-metrics-{len(grants[0])}", *grants)
        async with served.client(token) as c:
            refused = await c.get("/metrics")
            assert (refused.status_code, code(refused)) == (403, "forbidden"), grants
            assert "strongroom_" not in refused.text
    allowed = await served.token_for("scraper", "audit-read:*")
    auditor = (await served.app.access.create_token("auditor-1", policies=["auditor"])).token
    for token in (allowed, auditor):
        async with served.client(token) as c:
            samples = await scrape(c)
            assert (
                "strongroom_operations_total",
                (("action", "ACCESS_CHANGE"), ("result", "SUCCESS")),
            ) in samples


async def workload(served: Served, reader: str) -> None:
    """Create, 3 reads, a failed read, a 401, a 403, a rotation and a critical break-glass."""
    async with served.admin() as c:
        assert (await c.post("/v1/secrets", json={"name": "app-m", "value": "first"})).is_success
        for _ in range(3):
            assert (await c.get("/v1/secrets/app-m")).json()["value"] == "first"
        assert (await c.get("/v1/secrets/app-missing")).status_code == 404
        config = await c.put("/v1/rotation/app-m", json={"generator": "password"})
        assert config.status_code == 200, config.text
        rotated = await c.post("/v1/rotation/app-m/rotate")
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["rotated"] is True
        revocation = await c.post(
            "/v1/revocations",
            json={"secret_name": "app-m", "reason": "key_compromise", "severity": "critical",
                  "immediate": True},
        )  # fmt: skip
        assert revocation.status_code == 201, revocation.text
        assert revocation.json()["status"] == "COMPLETED"
    async with served.client() as c:
        assert (await c.get("/v1/secrets/app-m")).status_code == 401
    async with served.client(reader) as c:
        assert (await c.get("/v1/secrets/app-m")).status_code == 403


async def test_metrics_count_a_scripted_workload(served: Served) -> None:
    reader = await served.token_for("metrics-reader", "read:other-*")
    async with served.admin() as c:
        before = await scrape(c)
    await workload(served, reader)
    async with served.admin() as c:
        after = await scrape(c)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ops = "strongroom_operations_total"
    assert delta(ops, action="CREATE", result="SUCCESS") == 1
    assert delta(ops, action="READ", result="SUCCESS") == 3
    assert delta(ops, action="READ", result="FAILURE") == 2  # the missing secret, the 403
    assert delta(ops, action="AUTHENTICATE", result="FAILURE") == 1
    assert delta(ops, action="ROTATE", result="SUCCESS") == 1
    assert delta(ops, action="UPDATE", result="SUCCESS") == 1  # the schedule configured
    # the request, the break-glass review it opens, its execution
    assert delta(ops, action="REVOKE", result="SUCCESS") == 3
    assert delta(ops, action="REVOKE", result="FAILURE") == 0
    assert delta("strongroom_unauthorized_attempts_total", reason="no_token") == 1
    assert delta("strongroom_unauthorized_attempts_total", reason="forbidden") == 1
    assert delta("strongroom_rotations_total", result="success") == 1
    assert delta("strongroom_rotations_total", result="failure") == 0
    assert delta("strongroom_rotation_seconds_count") == 1
    assert after[("strongroom_rotation_seconds_bucket", (("le", "+Inf"),))] == 1
    assert 0 < after[("strongroom_rotation_seconds_sum", ())] < 60
    assert delta("strongroom_revocations_total", severity="critical") == 1
    # Every recorded event was committed, one audit batch at a time or more per batch.
    recorded = sum(value - before.get(key, 0.0) for key, value in after.items() if key[0] == ops)
    assert recorded == 12
    assert delta("strongroom_audit_events_total") == recorded
    assert 1 <= delta("strongroom_audit_write_seconds_count") <= recorded
    assert delta("strongroom_audit_batches_total") == delta("strongroom_audit_write_seconds_count")
    assert after[("strongroom_audit_queue_depth", ())] == 0
    assert after.get(("strongroom_audit_write_failures_total", ()), 0.0) == 0


# -- body and rate limits ------------------------------------------------------------------------


async def raw_request(port: int, head: str) -> bytes:
    """Send only ``head`` (no body) and read what the server answers (within 5 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode("latin-1"))
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(65536)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_content_length_over_the_limit_is_413_before_the_body_is_read(
    tmp_path: Path,
) -> None:
    async with custom_server(tmp_path, max_body_bytes=2048) as served:
        async with served.admin() as c:
            fits = await c.post("/v1/secrets", json={"name": "app-fits", "value": "x" * 1500})
            assert fits.status_code == 201, fits.text
            big = await c.post("/v1/secrets", json={"name": "app-big", "value": "x" * 3000})
            assert (big.status_code, code(big)) == (413, "request_too_large")
            for header, value in SECURITY_HEADERS.items():
                assert big.headers[header] == value
            put = await c.put("/v1/secrets/app-fits", json={"value": "y" * 3000})
            assert put.status_code == 413

        # Headers that promise 50 MB, and no body at all: the answer cannot wait for it.
        answer = await raw_request(
            served.port,
            "POST /v1/secrets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {served.admin_token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"request_too_large" in answer
        # Before authentication too: nobody can make the server buffer a large body.
        anonymous = await raw_request(
            served.port,
            "PUT /v1/secrets/app-fits HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9999\r\n\r\n",
        )
        assert anonymous.startswith(b"HTTP/1.1 413 "), anonymous[:200]

        async with served.admin() as c:
            assert (await c.get("/v1/secrets/app-big")).status_code == 404
            assert (await c.get("/v1/secrets/app-fits")).json()["value"] == "x" * 1500
            assert len((await c.get("/v1/secrets/app-fits/versions")).json()) == 1


async def chunks(payload: bytes, size: int = 512) -> AsyncIterator[bytes]:
    """A body without Content-Length (sent chunked)."""
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def secret_body(name: str, value_size: int) -> bytes:
    return b'{"name": "' + name.encode() + b'", "value": "' + b"z" * value_size + b'"}'


async def test_a_chunked_body_over_the_limit_creates_nothing(tmp_path: Path) -> None:
    async with custom_server(tmp_path, max_body_bytes=2048) as served, served.admin() as c:
        headers = {"Content-Type": "application/json"}
        small = await c.post(
            "/v1/secrets", content=chunks(secret_body("app-s", 100)), headers=headers
        )
        assert small.status_code == 201, small.text
        assert "content-length" not in small.request.headers
        big = await c.post(
            "/v1/secrets", content=chunks(secret_body("app-l", 5000)), headers=headers
        )
        assert big.request.headers["transfer-encoding"] == "chunked"
        assert 400 <= big.status_code < 500, big.text
        assert (await c.get("/v1/secrets/app-l")).status_code == 404
        assert [s["name"] for s in (await c.get("/v1/secrets")).json()] == ["app-s"]


async def test_a_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    async with custom_server(tmp_path, max_body_bytes=2048) as served, served.admin() as c:
        big = await c.post(
            "/v1/secrets",
            content=chunks(secret_body("app-l", 5000)),
            headers={"Content-Type": "application/json"},
        )
        assert (big.status_code, code(big)) == (413, "request_too_large")


async def test_rate_limit_is_per_identity_with_retry_after(tmp_path: Path) -> None:
    async with custom_server(tmp_path, rate_limit_per_second=0.01, rate_limit_burst=5) as served:
        busy = await served.token_for("busy", "read:*")
        busy_again = (await served.app.access.create_token("busy")).token
        calm = await served.token_for("calm", "read:*")
        async with served.client(busy) as c:
            for _ in range(5):
                assert (await c.get("/v1/auth/self")).status_code == 200
            limited = await c.get("/v1/auth/self")
            assert (limited.status_code, code(limited)) == (429, "throttled")
            assert int(limited.headers["retry-after"]) >= 1
            for header, value in SECURITY_HEADERS.items():
                assert limited.headers[header] == value
        async with served.client(busy_again) as c:  # the limit is the identity's, not the token's
            assert (await c.get("/v1/auth/self")).status_code == 429
        async with served.client(calm) as c:
            assert (await c.get("/v1/auth/self")).status_code == 200
        async with served.admin() as c:
            samples = await scrape(c)
        assert samples[("strongroom_rate_limited_total", ())] == 2


# -- headers ------------------------------------------------------------------------------------


async def test_security_headers_on_every_answer_and_no_hsts_without_tls(served: Served) -> None:
    async with served.admin() as admin, served.client() as anonymous:
        responses = [
            await anonymous.get("/healthz"),
            await anonymous.get("/v1/secrets"),  # 401
            await admin.get("/v1/secrets"),
            await admin.get("/v1/secrets/app-none"),  # 404
            await admin.get("/v1/unknown-endpoint"),
            await admin.post("/v1/secrets", json={"name": "bad name", "value": "v"}),  # 400
        ]
    assert [r.status_code for r in responses] == [200, 401, 200, 404, 404, 400]
    for response in responses:
        for header, value in SECURITY_HEADERS.items():
            assert response.headers.get(header) == value, (response.url, header)
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in response.headers
        assert "server" not in response.headers


async def test_hsts_only_over_tls(tmp_path: Path) -> None:
    async with custom_server(tmp_path, tls=True) as served:
        assert served.base_url.startswith("https://")
        async with served.client() as c:
            health = await c.get("/healthz")
            refused = await c.get("/v1/secrets")
        async with served.admin() as c:
            created = await c.post("/v1/secrets", json={"name": "app-tls", "value": "v"})
        for response in (health, refused, created):
            assert response.headers["strict-transport-security"] == (
                "max-age=31536000; includeSubDomains"
            )
            for header, value in SECURITY_HEADERS.items():
                assert response.headers[header] == value
        assert (health.status_code, refused.status_code, created.status_code) == (200, 401, 201)


async def test_no_cors_headers_by_default(served: Served) -> None:
    origin = {"Origin": "https://console.example"}
    async with served.admin() as c:
        simple = await c.get("/v1/secrets", headers=origin)
        preflight = await c.options(
            "/v1/secrets", headers={**origin, "Access-Control-Request-Method": "PUT"}
        )
    assert simple.status_code == 200
    assert preflight.status_code != 200
    for response in (simple, preflight):
        assert not [h for h in response.headers if h.startswith("access-control-")]


async def test_cors_echoes_only_configured_origins(tmp_path: Path) -> None:
    allowed = "https://console.example"
    async with custom_server(tmp_path, cors_origins=f"{allowed}, https://other.example") as served:
        async with served.admin() as c:
            ok = await c.get("/v1/secrets", headers={"Origin": allowed})
            evil = await c.get("/v1/secrets", headers={"Origin": "https://evil.example"})
            await c.post("/v1/secrets", json={"name": "cors-db", "value": "v"})
            hot_read = await c.get("/v1/secrets/cors-db", headers={"Origin": allowed})
        async with served.client() as c:
            preflight = await c.options(
                "/v1/secrets",
                headers={"Origin": allowed, "Access-Control-Request-Method": "PUT",
                         "Access-Control-Request-Headers": "Authorization, Content-Type"},
            )  # fmt: skip
            refused = await c.options(
                "/v1/secrets",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == allowed
    assert hot_read.headers["access-control-allow-origin"] == allowed  # the hot read too
    assert evil.status_code == 200
    assert "access-control-allow-origin" not in evil.headers
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == allowed
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


# -- values stay out of errors and logs ---------------------------------------------------------


@pytest.fixture
def captured_logs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture]]:
    """capsys and caplog, with structlog put back to its defaults afterwards."""
    caplog.set_level(logging.DEBUG)
    yield capsys, caplog
    structlog.reset_defaults()


async def test_a_value_never_appears_in_errors_or_logs(
    served: Served,
    captured_logs: tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture],
) -> None:
    capsys, caplog = captured_logs
    capsys.readouterr()
    configure_logging("DEBUG")  # binds the stream capsys captures now
    canary = f"CANARY-{secrets.token_hex(12)}"
    bodies: list[str] = []
    async with served.admin() as c:
        created = await c.post("/v1/secrets", json={"name": "app-leak", "value": canary})
        assert created.status_code == 201
        bodies.append(created.text)
        refusals = [
            await c.patch("/v1/secrets/app-leak", json={"value": canary}),
            await c.patch("/v1/secrets/app-leak", json={"expires_at": canary}),
            await c.patch("/v1/secrets/app-leak", json={"metadata": canary}),
            await c.put("/v1/secrets/app-leak", json={"value": canary, "secret_type": canary}),
            await c.put(
                "/v1/secrets/app-leak", json={"value": canary, "content_type": "application/json"}
            ),
            await c.post("/v1/secrets", json={"name": "app-leak", "value": canary}),
            await c.post("/v1/secrets", json={"name": "APP-LEAK", "value": {"k": canary}}),
            await c.post("/v1/secrets", json={"name": "app-long", "value": canary * 1000}),
            await c.post("/v1/secrets", json={"name": f"bad {canary}", "value": canary}),
            await c.post(
                "/v1/secrets",
                content=b'{"name": "app-broken", "value": "' + canary.encode() + b'"',
                headers={"Content-Type": "application/json"},
            ),
            await c.post("/v1/secrets", json={"name": "app-x", "value": canary, "enabled": canary}),
        ]
        assert [r.status_code for r in refusals] == [400] * 5 + [409, 409] + [400] * 4
        bodies.extend(r.text for r in refusals)
        assert (await c.get("/v1/secrets/app-leak")).json()["value"] == canary  # it is stored
        trail = await c.get("/v1/audit/events", params={"limit": 1000})
        bodies.append(trail.text)
    assert "app-leak" in trail.text

    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "app-leak" in logs  # names are logged: the capture works
    assert '"path": "/v1/secrets/app-leak"' in logs
    assert canary not in logs
    for body in bodies:
        assert canary not in body


# -- routing and client address ----------------------------------------------------------------


async def test_unknown_paths_answer_json_errors(served: Served) -> None:
    async with served.admin() as c:
        for path in ("/v1/nothing-here", "/no/such/thing", "/v1/secrets/app-a/extra/parts"):
            response = await c.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {
                "error": {"code": "not_found", "message": "no such endpoint"}
            }
        wrong_method = await c.patch("/v1/deleted-secrets")
        assert (wrong_method.status_code, code(wrong_method)) == (405, "method_not_allowed")
    async with served.client() as c:
        hidden = await c.get("/v1/nothing-here")  # no token: the guard answers first
        assert (hidden.status_code, code(hidden)) == (401, "unauthorized")


def from_address(address: str) -> httpx.AsyncHTTPTransport:
    """A transport whose connections come from ``address`` (any of 127.0.0.0/8 on Linux).

    The harness runs uvicorn with its own proxy-header handling on, which rewrites the client
    from X-Forwarded-For for peers 127.0.0.1 and ::1 (``strongroom serve`` turns it off).
    Connecting from other loopback addresses leaves that to strongroom's guard, as in production.
    """
    return httpx.AsyncHTTPTransport(local_address=address)


async def test_the_callers_address_and_user_agent_are_audited(served: Served) -> None:
    agent = "deploy-bot/7.3 (+https://ci.example/bot)"
    headers = {"User-Agent": agent, "X-Forwarded-For": "203.0.113.7"}
    async with served.admin(headers=headers, transport=from_address("127.0.0.2")) as c:
        assert (await c.post("/v1/secrets", json={"name": "app-ua", "value": "v"})).is_success
        assert (await c.get("/v1/secrets/app-ua")).status_code == 200
    rows = await audit_rows(served, secret="app-ua")
    assert [r["action"] for r in rows] == ["READ", "CREATE"]
    for row in rows:
        assert row["actor_id"] == "test-admin"
        assert row["actor_user_agent"] == agent
        assert row["actor_ip"] == "127.0.0.2"  # no trusted proxy: X-Forwarded-For is ignored


async def test_x_forwarded_for_is_honoured_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    proxy, stranger = "127.0.0.2", "127.0.0.3"
    async with custom_server(tmp_path, trusted_proxies=f"{proxy}/32") as served:
        chains = {
            "app-one": ("203.0.113.5", "203.0.113.5"),
            # A client may send any X-Forwarded-For: only the hop our proxy added counts.
            "app-two": ("198.51.100.1, 203.0.113.9", "203.0.113.9"),
            "app-three": (f"198.51.100.1, 203.0.113.10, {proxy}", "203.0.113.10"),
        }
        for name, (header, _) in chains.items():
            headers = {"X-Forwarded-For": header}
            async with served.admin(headers=headers, transport=from_address(proxy)) as c:
                assert (await c.post("/v1/secrets", json={"name": name, "value": "v"})).is_success
        spoofed = {"X-Forwarded-For": "203.0.113.99"}
        async with served.admin(headers=spoofed, transport=from_address(stranger)) as c:
            assert (
                await c.post("/v1/secrets", json={"name": "app-direct", "value": "v"})
            ).is_success
        for name, (_, expected) in chains.items():
            rows = await audit_rows(served, secret=name, action="CREATE")
            assert [r["actor_ip"] for r in rows] == [expected], name
        direct = await audit_rows(served, secret="app-direct", action="CREATE")
        assert [r["actor_ip"] for r in direct] == [stranger]

        # Failed authentications are limited per forwarded client, not per proxy address.
        attacker = {"X-Forwarded-For": "203.0.113.66"}
        async with served.client(headers=attacker, transport=from_address(proxy)) as c:
            statuses = [(await c.get("/v1/secrets")).status_code for _ in range(25)]
        assert statuses[:20] == [401] * 20
        assert 429 in statuses
        refusals = await audit_rows(served, action="AUTHENTICATE")
        assert {r["actor_ip"] for r in refusals} == {"203.0.113.66"}
        neighbour = {"X-Forwarded-For": "203.0.113.67"}
        async with served.client(headers=neighbour, transport=from_address(proxy)) as c:
            assert (await c.get("/v1/secrets")).status_code == 401
        async with served.admin(headers=neighbour, transport=from_address(proxy)) as c:
            assert (await c.get("/v1/auth/self")).status_code == 200
