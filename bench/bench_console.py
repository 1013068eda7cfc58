"""``python -m bench --only console``: the console's pages and a 90-day compliance report over
10,000 secrets and 1,000,000 audit events in PostgreSQL.

The events are generated in SQL as for the audit query benchmark (30 days, 200 actors, 2%
failures), here spread over the 10,000 secrets; their chain hashes are filler, so the report's
chain check stops at the first event: the chain check's own cost is measured separately, on a
real chain of 200,000 events read back from PostgreSQL, and projected to 1,000,000. Pages are
timed in process through the ASGI app (the guard, the session, the queries and the template:
server time, no network).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.bench_audit import _FILLER_HASH, _GENERATE, _drop_schema, _pg_reachable, _settings
from bench.harness import render_table
from strongroom import SecretsAudit, SecretsManager, SecretType, Strongroom
from strongroom.core.audit import AuditEvent
from strongroom.server.app import create_app
from strongroom.services.reports.collect import collect
from strongroom.services.reports.render import render
from strongroom.services.reports.signing import ReportSigner

__all__ = ["run_console"]

SECRETS = 10_000
EVENTS = 1_000_000
DAYS, ACTORS, FAILURES = 30, 200, 0.02
PAGE_GOAL_MS = 200.0
REPORT_GOAL_S = 10.0
_NONCE = re.compile(r'name="nonce" value="([^"]+)"')


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


async def _populate(app: Strongroom, pg_url: str, schema: str, secrets_n: int, events: int) -> None:
    manager = SecretsManager(app)
    gate = asyncio.Semaphore(32)
    types = list(SecretType)

    async def one(i: int) -> None:
        async with gate:
            await manager.create_secret(f"secret-{i:04d}", secrets.token_hex(12),
                                        types[i % len(types)], {"team": f"t{i % 20}"})  # fmt: skip

    await asyncio.gather(*(one(i) for i in range(1, secrets_n + 1)))
    conn = await asyncpg.connect(pg_url, server_settings={"search_path": schema})
    try:
        base = await conn.fetchval("SELECT coalesce(max(id), 0) FROM secrets_audit_log")
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            generate = _GENERATE.replace("SELECT g, a.action", "SELECT g + $8, a.action")
            await conn.execute(generate, events, app.clock() - timedelta(minutes=1), DAYS,
                               secrets_n, ACTORS, FAILURES, _FILLER_HASH, base)  # fmt: skip
            await conn.execute(
                "UPDATE secrets_audit_chain SET last_seq = $1, last_hash = $2 WHERE id = 1",
                base + events, _FILLER_HASH,
            )  # fmt: skip
        await conn.execute("VACUUM (ANALYZE) secrets_audit_log")
    finally:
        await conn.close()


async def _signed_in(app: Strongroom) -> httpx.AsyncClient:
    token = (await app.access.create_token("bench-admin", policies=["admin"])).token
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(app, run_scheduler=False)),
        base_url="https://console.bench", follow_redirects=False, timeout=120,
    )  # fmt: skip
    page = await client.get("/ui/signin")
    nonce = _NONCE.search(page.text)
    assert nonce is not None
    answer = await client.post("/ui/signin", data={"nonce": nonce.group(1), "token": token},
                               headers={"Origin": "https://console.bench"})  # fmt: skip
    assert answer.status_code == 303, answer.text[:300]
    return client


async def _time(op: Callable[[], Awaitable[Any]], rounds: int) -> tuple[list[float], Any]:
    times, last = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        last = await op()
        times.append((time.perf_counter() - started) * 1000)
    return times, last


async def _chain_walk_rate(pg_url: str, events: int) -> float:
    """Events per second of ``verify_integrity`` over a real chain in its own schema: rows read
    from PostgreSQL, rebuilt as stored and each one's HMAC link checked (what a report pays)."""
    schema = f"bench_chain_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as home:
        app = await Strongroom.open(_settings("postgres", Path(home), schema, pg_url))
        try:
            now = app.clock()
            for start in range(0, events, 5_000):
                batch = [
                    AuditEvent.build(action="READ", resource_name=f"secret-{i % 9999:04d}",
                                     timestamp=now, result="SUCCESS", actor_id=f"actor-{i % 200}",
                                     actor_ip="10.0.0.1", details={"version": "ab" * 16})
                    for i in range(start, min(start + 5_000, events))
                ]  # fmt: skip
                await app.audit.store.append(batch, app.audit.key)
            started = time.perf_counter()
            report = await SecretsAudit(app).verify_integrity()
            elapsed = time.perf_counter() - started
            if not report["valid"] or report["checked"] != events:
                raise RuntimeError(f"the bench's chain did not verify: {report}")
        finally:
            await app.close()
            await _drop_schema(pg_url, schema)
    return events / elapsed


async def _run(pg_url: str, quick: bool) -> str:
    reason = await _pg_reachable(pg_url)
    if reason:
        return f"console: SKIPPED - {reason}"
    secrets_n, events = (1_000, 100_000) if quick else (SECRETS, EVENTS)
    rounds = 5 if quick else 20
    schema = f"bench_console_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as home:
        app = await Strongroom.open(_settings("postgres", Path(home), schema, pg_url))
        try:
            started = time.perf_counter()
            await _populate(app, pg_url, schema, secrets_n, events)
            made = time.perf_counter() - started
            rows = await _pages(app, rounds)
            timings = await _report(app)
            rate = await _chain_walk_rate(pg_url, 20_000 if quick else 200_000)
        finally:
            await app.close()
            conn = await asyncpg.connect(pg_url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
    return _table(secrets_n, events, made, rounds, rows, timings, rate)


async def _pages(app: Strongroom, rounds: int) -> list[list[str]]:
    client = await _signed_in(app)
    try:
        pages = [
            ("overview (24 h)", "/ui/"),
            ("inventory, first page", "/ui/secrets"),
            ("inventory, search", "/ui/secrets?q=secret-05"),
            ("inventory, page 100", "/ui/secrets?offset=5000"),
            ("inventory, overdue filter", "/ui/secrets?status=overdue"),
            ("secret detail", "/ui/secrets/secret-0001"),
            ("audit trail", "/ui/audit"),
            ("audit by actor", "/ui/audit?actor=actor-007"),
            ("audit by address", "/ui/audit?ip=10.0.7.2"),
            ("threats (24 h)", "/ui/threats"),
            ("revocations", "/ui/revocations"),
            ("rotation", "/ui/rotation"),
            ("analytics", "/ui/analytics"),
            ("reports", "/ui/reports"),
        ]
        first: dict[str, float] = {}
        for label, path in (("inventory", "/ui/secrets"), ("threats (24 h)", "/ui/threats"),
                            ("analytics", "/ui/analytics")):  # fmt: skip
            times, _ = await _time(lambda p=path: client.get(p), 1)
            first[label] = times[0]
        rows = []
        for label, path in pages:
            times, answer = await _time(lambda p=path: client.get(p), rounds)
            if answer.status_code != 200:
                raise RuntimeError(f"{path} answered {answer.status_code}")
            p95 = _p95(times)
            rows.append([label, f"{statistics.median(times):.1f}", f"{p95:.1f}",
                         "PASS" if p95 <= PAGE_GOAL_MS else "MISS"])  # fmt: skip
        for label, ms in first.items():
            rows.append([f"{label}: first view (snapshot taken)", f"{ms:.1f}", f"{ms:.1f}",
                         "(then in the background)"])  # fmt: skip
        return rows
    finally:
        await client.aclose()


async def _report(app: Strongroom) -> dict[str, float]:
    now = app.clock()
    signer = ReportSigner(app.report_signing_seed)
    started = time.perf_counter()
    data = await collect(app, "soc2", now - timedelta(days=90), now)
    timings = {"collect": time.perf_counter() - started}
    for fmt in ("json", "pdf"):
        started = time.perf_counter()
        body = render(data, fmt, signer)
        timings[fmt] = time.perf_counter() - started
        timings[f"{fmt}_bytes"] = len(body)
    return timings


def _table(
    secrets_n: int,
    events: int,
    made: float,
    rounds: int,
    rows: list[list[str]],
    timings: dict[str, float],
    rate: float,
) -> str:
    total_pdf = timings["collect"] + timings["pdf"]
    projected = EVENTS / rate
    lines = [
        f"console: {secrets_n:,} secrets, {events:,} audit events over {DAYS} days "
        f"(PostgreSQL, generated in {made:.0f} s); {rounds} requests per page, server time",
        render_table(["page", "p50 ms", "p95 ms", f"p95 <= {PAGE_GOAL_MS:.0f} ms"], rows, "lrrl"),
        "",
    ]
    report_rows = [
        ["collect (queries, threat rules)", f"{timings['collect']:.2f}", ""],
        ["render + sign JSON", f"{timings['json']:.2f}", f"{timings['json_bytes']:,.0f} bytes"],
        ["render + sign PDF", f"{timings['pdf']:.2f}", f"{timings['pdf_bytes']:,.0f} bytes"],
        ["90-day report, PDF, total", f"{total_pdf:.2f}",
         "PASS" if total_pdf <= REPORT_GOAL_S else "MISS"],
        ["chain check (real chain, read from PostgreSQL)", f"{rate:,.0f} events/s",
         f"{projected:.1f} s projected for {EVENTS:,} events"],
    ]  # fmt: skip
    lines.append(render_table(["compliance report", "seconds", "note"], report_rows, "lrl"))
    lines.append(
        "The generated events carry filler hashes, so the report's chain check stops at the "
        "first one; a full check of a real 1,000,000-event chain adds the projected time."
    )
    return "\n".join(lines)


def run_console(*, pg_url: str, quick: bool = False) -> str:
    return asyncio.run(_run(pg_url, quick))
