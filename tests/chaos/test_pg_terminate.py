"""PostgreSQL backends terminated under load (``pg_terminate_backend`` on every connection of
the service, found by its application name), again and again.

Writers and readers keep going throughout. Every request is answered: none hangs, none is a
500, a failure is a 503 with Retry-After, and the service recovers by itself (no restart): the
time from each termination to the next successful answer is measured.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx

from conftest import Figures, size
from harness import (
    Service,
    Tally,
    admin_token,
    application_name,
    drop_schema_of,
    run_until,
    service_env,
    terminate_backends,
    timed,
)
from harness import wait_for as wait_until

WRITERS, READERS, SECRETS = 4, 6, 8


async def test_terminated_backends_are_503s_and_recover_without_restart(
    tmp_path: Path, figures: Figures, postgres_available: None
) -> None:
    rounds = size(3, 10)
    env = service_env("postgres", tmp_path / "home")
    name = application_name(env)
    token = await admin_token(env)
    tally = Tally()
    recoveries: list[float] = []
    terminated = 0
    service = Service(env)
    try:
        await service.start()
        limits = httpx.Limits(max_connections=WRITERS + READERS)
        async with httpx.AsyncClient(
            base_url=service.url, headers={"Authorization": f"Bearer {token}"},
            timeout=30, limits=limits,
        ) as client:  # fmt: skip
            for i in range(SECRETS):
                made = await client.post("/v1/secrets", json={"name": f"pg-{i}", "value": "v"})
                assert made.status_code == 201, made.text
            stop = asyncio.Event()
            counter = iter(range(10**9))

            async def write() -> None:
                target = f"/v1/secrets/pg-{next(counter) % SECRETS}"
                await timed(tally, client.put(target, json={"value": secrets.token_hex(8)}))

            async def read() -> None:
                await timed(tally, client.get(f"/v1/secrets/pg-{next(counter) % SECRETS}"))

            loader = asyncio.create_task(run_until(stop, [write] * WRITERS + [read] * READERS))
            for _ in range(rounds):
                served = tally.count(200, 201)
                await wait_until(lambda s=served: tally.count(200, 201) >= s + 50, "answers")
                terminated += await terminate_backends(name)
                cut = time.monotonic()
                await wait_until(lambda c=cut: tally.last_success > c, "recovery")
                recoveries.append(tally.last_success - cut)
            stop.set()
            await asyncio.wait_for(loader, 60)
    finally:
        service.stop()
        await drop_schema_of(env)
    log = service.log()
    tracebacks = log.count("Traceback")
    unexpected = tally.total - tally.count(200, 201, 503)
    report(figures, rounds, terminated, tally, max(recoveries), tracebacks)
    assert terminated >= rounds
    assert (tally.hung, tally.server_errors, tally.no_retry_after, unexpected) == (0, 0, 0, 0)
    assert tally.errors == 0  # the service itself never dropped a connection
    assert tracebacks == 0, log[-3000:]


def report(
    figures: Figures, rounds: int, terminated: int, tally: Tally, slowest: float, tracebacks: int
) -> None:
    scenario = "PostgreSQL backends terminated under load"
    unexpected = tally.total - tally.count(200, 201, 503)
    rows = [
        ("terminations (backends)", f"{rounds} ({terminated})", ">= 10 (make chaos)", True),
        ("requests / 503 answers", f"{tally.total} / {tally.count(503)}", "", True),
        ("hung requests", tally.hung, "0", tally.hung == 0),
        ("500 answers", tally.server_errors, "0", tally.server_errors == 0),
        ("503 without Retry-After", tally.no_retry_after, "0", tally.no_retry_after == 0),
        ("answers other than 200/201/503", unexpected, "0", unexpected == 0),
        ("recovery without restart, slowest (s)", slowest, "<= 1 s", slowest <= 1.0),
        ("tracebacks in the server log", tracebacks, "0", tracebacks == 0),
    ]
    for figure, value, target, ok in rows:
        figures.add(scenario, "postgres", figure, value, target, ok)
