"""Rotation workers against a real server (part of ``python -m bench --only remote``).

N secrets are made due, their schedules left to workers (built-in generator); then one worker,
and afterwards two, claim and rotate all of them over HTTPS (concurrency 4 each, 4 claimed at a
time, so two workers share the work). ops/s is rotations per second of wall time from the first
claim to the last submission; p50/p99 are one rotation's submission (the server verifies,
writes the version, audits ROTATE). The ratio row is two workers against one on the same server.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ResultRow, summarize
from strongroom import Settings
from strongroom.client.transport import RemoteClient, RemoteConfig
from strongroom.services.remote.worker import RotationWorker, WorkerOptions

__all__ = ["run_workers"]

DUE, DUE_QUICK = 200, 50


class _TimedWorker(RotationWorker):
    """A worker that records how long each rotation's submission took."""

    latencies: list[int]

    async def _rotate(self, item: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic_ns()
        outcome = await super()._rotate(item)
        self.latencies.append(time.monotonic_ns() - started)
        return outcome


async def _make_due(admin: httpx.AsyncClient, prefix: str, count: int) -> None:
    gate = asyncio.Semaphore(16)

    async def one(name: str) -> None:
        async with gate:
            created = await admin.post("/v1/secrets", json={"name": name, "value": "v1"})
            created.raise_for_status()
            schedule = {"generator": "password", "worker": True, "grace_period_hours": 0}
            (await admin.put(f"/v1/rotation/{name}", json=schedule)).raise_for_status()
            (await admin.post(f"/v1/rotation/{name}/force")).raise_for_status()

    await asyncio.gather(*(one(f"{prefix}-{i:04d}") for i in range(count)))


async def _drain(settings: Settings, workers: int, prefix: str, count: int) -> Any:
    """Run ``workers`` workers until ``count`` rotations are done; the measurement."""
    clients = [RemoteClient(RemoteConfig.from_settings(settings)) for _ in range(workers)]
    options = WorkerOptions(generated=True, name_glob=f"{prefix}-*", concurrency=4, wait_seconds=0)
    pool = [_TimedWorker(client, options) for client in clients]
    for worker in pool:
        worker.latencies = []
    started = time.monotonic_ns()

    async def run(worker: _TimedWorker) -> None:
        while sum(w.rotated + w.failed for w in pool) < count:
            if not await worker.run_once():
                await asyncio.sleep(0.01)  # the other worker holds the rest

    try:
        await asyncio.gather(*(run(w) for w in pool))
    finally:
        for client in clients:
            await client.close()
    elapsed = time.monotonic_ns() - started
    latencies = [ns for w in pool for ns in w.latencies]
    failed = sum(w.failed for w in pool)
    m = summarize(f"{workers} worker(s)", workers * options.concurrency, latencies, elapsed)
    return m, failed


async def run_workers(
    addr: str, token: str, ca: Path, home: Path, *, quick: bool
) -> list[ResultRow]:
    """Rows: one worker, then two, draining N due rotations each."""
    count = DUE_QUICK if quick else DUE
    settings = Settings(
        STRONGROOM_ADDR=addr, STRONGROOM_TOKEN=token, STRONGROOM_CACERT=ca,
        STRONGROOM_HOME=home, STRONGROOM_CACHE_TTL_SECONDS=0,
    )  # type: ignore[call-arg]  # fmt: skip
    verify = ssl.create_default_context(cafile=str(ca))
    headers = {"Authorization": f"Bearer {token}"}
    rows: list[ResultRow] = []
    one: Any = None
    async with httpx.AsyncClient(base_url=addr, verify=verify, headers=headers) as admin:
        for workers in (1, 2):
            prefix = f"bench-wk{workers}"
            await _make_due(admin, prefix, count)
            m, failed = await _drain(settings, workers, prefix, count)
            note = f"{count} due, concurrency 4 each" + (f", {failed} failed" if failed else "")
            ratio = None if one is None else m.ops_per_s / one.ops_per_s
            rows.append(
                ResultRow("remote", f"rotation workers: {workers} draining {count} due", m,
                          reference="1 worker" if one else None, ratio=ratio, note=note)
            )  # fmt: skip
            one = one or m
    return rows
