"""The audit store stops answering (PostgreSQL audit behind a proxy that freezes every byte)
or turns read-only (the SQLite file made immutable): every call is refused with 503 within the
audit timeout (twice it at worst: the batch in flight and its own), none hangs, none serves a
value, and the same process serves again once the store is back.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from conftest import Figures, size
from harness import (
    CAP,
    FreezableProxy,
    Service,
    Tally,
    admin_token,
    drop_schema_of,
    service_env,
    timed,
)
from helpers_settings import PG_URL

TIMEOUT = 1.0  # STRONGROOM_AUDIT_TIMEOUT_SECONDS in these scenarios
SECRETS = 4


def via(proxy: FreezableProxy, dsn: str) -> str:
    parts = urlsplit(dsn)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


@asynccontextmanager
async def running(env: dict[str, str], tmp_path: Path) -> AsyncIterator[tuple[Service, str]]:
    token = await admin_token(env)
    service = Service(env, log_dir=tmp_path)
    try:
        await service.start()
        yield service, token
    finally:
        service.stop()
        await drop_schema_of(env)


async def outage(
    service: Service, token: str, calls: int, broken: Callable[[bool], None]
) -> tuple[Tally, float, float | None, int]:
    """(answers while broken, slowest refusal, recovery seconds, values served while broken)."""
    tally = Tally()
    slowest, served = 0.0, 0
    async with httpx.AsyncClient(
        base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=CAP
    ) as c:
        for i in range(SECRETS):
            made = await c.post("/v1/secrets", json={"name": f"ad-{i}", "value": "v"})
            assert made.status_code == 201, made.text
        broken(True)
        try:
            for n in range(calls):
                started = time.monotonic()
                read = await timed(tally, c.get(f"/v1/secrets/ad-{n % SECRETS}"))
                slowest = max(slowest, time.monotonic() - started)
                served += read is not None and read.status_code == 200
        finally:
            broken(False)
        cut, recovered = time.monotonic(), None
        while time.monotonic() - cut < CAP:
            if (await c.get("/v1/secrets/ad-0")).status_code == 200:
                recovered = time.monotonic() - cut
                break
            await asyncio.sleep(0.05)
        ready = (await c.get("/readyz")).status_code
        assert ready == 200
    return tally, slowest, recovered, served


def report(
    figures: Figures, scenario: str, store: str, calls: int,
    result: tuple[Tally, float, float | None, int],
) -> None:  # fmt: skip
    tally, slowest, recovered, served = result
    figures.add(scenario, store, "calls / refused with 503", f"{tally.total} / {tally.count(503)}",
                "all 503", tally.count(503) == calls)  # fmt: skip
    figures.add(scenario, store, "hung / 500 / values served", f"{tally.hung} / "
                f"{tally.server_errors} / {served}", "0 / 0 / 0",
                tally.hung == tally.server_errors == served == 0)  # fmt: skip
    figures.add(scenario, store, "slowest refusal (s)", slowest, f"<= {2 * TIMEOUT:g} s + 0.5",
                slowest <= 2 * TIMEOUT + 0.5)  # fmt: skip
    figures.add(scenario, store, "recovery without restart (s)", recovered or -1.0, "",
                recovered is not None)  # fmt: skip
    assert tally.count(503) == calls, tally.statuses
    assert (tally.hung, tally.server_errors, served) == (0, 0, 0)
    assert recovered is not None


async def test_a_frozen_postgresql_audit_store_fails_calls_within_the_timeout(
    tmp_path: Path, figures: Figures, postgres_available: None
) -> None:
    host, port = urlsplit(PG_URL).hostname or "127.0.0.1", urlsplit(PG_URL).port or 5432
    proxy = FreezableProxy(host, port)
    await proxy.start()
    calls = size(5, 30)
    try:
        env = service_env("postgres", tmp_path / "home",
                          STRONGROOM_AUDIT_TIMEOUT_SECONDS=str(TIMEOUT))  # fmt: skip
        env["STRONGROOM_AUDIT_DATABASE_URL"] = via(proxy, env["DATABASE_URL"])
        async with running(env, tmp_path) as (service, token):

            def freeze(on: bool) -> None:
                proxy.frozen = on

            result = await outage(service, token, calls, freeze)
            assert "Traceback" not in service.log(), service.log()[-3000:]
    finally:
        await proxy.stop()
    report(figures, "audit store frozen (no answer)", "postgres", calls, result)


async def test_a_read_only_sqlite_audit_store_fails_calls_within_the_timeout(
    tmp_path: Path, figures: Figures
) -> None:
    calls = size(5, 30)
    env = service_env("sqlite", tmp_path / "home", STRONGROOM_AUDIT_TIMEOUT_SECONDS=str(TIMEOUT))
    db = Path(env["STRONGROOM_HOME"]) / "strongroom.db"
    files = [str(db), f"{db}-wal"]

    def immutable(on: bool) -> None:
        subprocess.run(["chattr", "+i" if on else "-i", *files], check=True, timeout=CAP)

    async with running(env, tmp_path) as (service, token):
        try:
            result = await outage(service, token, calls, immutable)
        finally:
            await asyncio.to_thread(immutable, False)
        assert "Traceback" not in service.log(), service.log()[-3000:]
    report(figures, "audit store read-only (chattr +i)", "sqlite", calls, result)
