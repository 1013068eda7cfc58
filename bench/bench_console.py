"""``python -m bench --only console``: the console's pages and a 90-day compliance report over
10,000 secrets and 1,000,000 audit events in PostgreSQL.

The events follow the audit query benchmark's mix (30 days, 200 actors, 2% failures), here
spread over the 10,000 secrets, and form a real chain: each is linked with the chain key as a
writer links it and copied in (bench.chain_data; not timed). So the report's chain check reads
and checks every one of them, as it would in production, and the report is timed end to end;
the chain check alone is also timed, in one process and in worker processes. Pages are timed
in process through the ASGI app (the guard, the session, the queries and the template: server
time, no network).
"""

from __future__ import annotations

import asyncio
import os
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

from bench.bench_audit import _drop_schema, _pg_reachable, _settings
from bench.chain_data import append_real_chain
from bench.harness import render_table
from strongroom import SecretsAudit, SecretsManager, SecretType, Settings, Strongroom
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


async def _populate(settings: Settings, pg_url: str, secrets_n: int, events: int) -> None:
    """The secrets through the API; then, with every writer closed, the events as a real
    chain after theirs."""
    app = await Strongroom.open(settings)
    try:
        manager = SecretsManager(app)
        gate = asyncio.Semaphore(32)
        types = list(SecretType)

        async def one(i: int) -> None:
            async with gate:
                await manager.create_secret(
                    f"secret-{i:04d}", secrets.token_hex(12), types[i % len(types)],
                    {"team": f"t{i % 20}"},
                )  # fmt: skip

        await asyncio.gather(*(one(i) for i in range(1, secrets_n + 1)))
        key, until = app.audit.key, app.clock() - timedelta(minutes=1)
    finally:
        await app.close()
    conn = await asyncpg.connect(pg_url, server_settings={"search_path": settings.pg_schema})
    try:
        await conn.execute("SET synchronous_commit = off")
        await append_real_chain(conn, key, events, until=until, days=DAYS, secrets_n=secrets_n,
                                actors=ACTORS, failures=FAILURES)  # fmt: skip
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


async def _chain_checks(app: Strongroom) -> dict[str, Any]:
    """The chain check alone over the whole log: in this process, then in worker processes
    (one per CPU, even below the usual threshold); each must find it valid and count every
    event."""
    audit = SecretsAudit(app)
    found: dict[str, Any] = {}
    for label, options in (
        ("one process", {"parallel_from": 2**62}),
        ("workers", {"parallel_from": 1}),
    ):
        started = time.perf_counter()
        report = await audit.verify_integrity(**options)
        found[label] = (time.perf_counter() - started, report["processes"])
        if not report["valid"]:
            raise RuntimeError(f"the bench's chain did not verify: {report['reason']}")
        found["checked"] = report["checked"]
    return found


async def _run(pg_url: str, quick: bool) -> str:
    reason = await _pg_reachable(pg_url)
    if reason:
        return f"console: SKIPPED - {reason}"
    secrets_n, events = (1_000, 100_000) if quick else (SECRETS, EVENTS)
    rounds = 5 if quick else 20
    schema = f"bench_console_{secrets.token_hex(4)}"
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as home:
        settings = _settings("postgres", Path(home), schema, pg_url)
        try:
            started = time.perf_counter()
            await _populate(settings, pg_url, secrets_n, events)
            made = time.perf_counter() - started
            app = await Strongroom.open(settings)
            try:
                rows = await _pages(app, rounds)
                timings = await _report(app)
                checks = await _chain_checks(app)
            finally:
                await app.close()
        finally:
            await _drop_schema(pg_url, schema)
    load = max(load, os.getloadavg()[0])
    return _table(secrets_n, events, made, rounds, rows, timings, checks, load)


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
    integrity = data["integrity"]
    if not integrity["valid"]:
        raise RuntimeError(f"the report found the bench's chain broken: {integrity['reason']}")
    timings["checked"], timings["processes"] = integrity["checked"], integrity["processes"]
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
    checks: dict[str, Any],
    load: float,
) -> str:
    total_pdf = timings["collect"] + timings["pdf"]
    lines = [
        f"console: {secrets_n:,} secrets, {events:,} audit events over {DAYS} days in a real "
        f"chain (PostgreSQL, made in {made:.0f} s); {rounds} requests per page, server time; "
        f"load average {load:.2f}",
        render_table(["page", "p50 ms", "p95 ms", f"p95 <= {PAGE_GOAL_MS:.0f} ms"], rows, "lrrl"),
        "",
    ]
    checked = int(checks["checked"])
    one, (workers, processes) = checks["one process"][0], checks["workers"]
    processes_text = (
        "1 process" if timings["processes"] == 1 else (f"{timings['processes']:.0f} processes")
    )
    report_rows = [
        [f"collect (queries, threat rules, chain check of {timings['checked']:,.0f} events "
         f"in {processes_text})", f"{timings['collect']:.2f}", ""],
        ["render + sign JSON", f"{timings['json']:.2f}", f"{timings['json_bytes']:,.0f} bytes"],
        ["render + sign PDF", f"{timings['pdf']:.2f}", f"{timings['pdf_bytes']:,.0f} bytes"],
        ["90-day report, PDF, total", f"{total_pdf:.2f}",
         "PASS" if total_pdf <= REPORT_GOAL_S else "MISS"],
        ["chain check alone, 1 process", f"{one:.2f}", f"{checked / one:,.0f} events/s"],
        [f"chain check alone, in {processes} worker processes", f"{workers:.2f}",
         f"{checked / workers:,.0f} events/s"],
    ]  # fmt: skip
    lines.append(render_table(["compliance report", "seconds", "note"], report_rows, "lrl"))
    return "\n".join(lines)


def run_console(*, pg_url: str, quick: bool = False) -> str:
    return asyncio.run(_run(pg_url, quick))
