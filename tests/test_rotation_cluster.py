"""Two scheduler processes on one PostgreSQL database: every due secret is rotated exactly once.

Each child opens its own Strongroom (same master key), prints ``ready``, waits for a line on
stdin (the start barrier: the parent releases both at once), runs one ``run_check`` and prints
what it rotated. The parent then counts versions and ROTATE events of every secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from helpers_settings import make_settings
from strongroom import (
    ManualClock,
    RotationConfig,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    Settings,
    Strongroom,
)
from strongroom.core.clock import system_clock

pytestmark = pytest.mark.slow

COUNT = 200
TIMEOUT = 30.0

SCHEDULER = """
import asyncio, json, sys
import strongroom.services.rotation.secrets_rotation
from strongroom import SecretsRotation, Settings, Strongroom

async def main(batch):
    if batch:
        strongroom.services.rotation.secrets_rotation.CLAIM_BATCH = batch
    async with await Strongroom.open(Settings()) as app:
        rotation = SecretsRotation(app)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        result = await rotation.run_check()
        print("result", json.dumps(result), flush=True)

asyncio.run(main(int(sys.argv[1])))
"""


@pytest.fixture
def settings(pg_schema: str, tmp_path: Path) -> Settings:
    return make_settings("postgres", tmp_path, schema=pg_schema)


async def start_scheduler(settings: Settings, batch: int) -> asyncio.subprocess.Process:
    assert settings.master_key is not None
    assert settings.database_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    env.update(
        STRONGROOM_BACKEND="postgres",
        DATABASE_URL=settings.database_url.get_secret_value(),
        STRONGROOM_PG_SCHEMA=settings.pg_schema,
        STRONGROOM_MASTER_KEY=settings.master_key.get_secret_value(),
        STRONGROOM_HOME=str(settings.home),
        LOG_LEVEL="ERROR",
    )
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCHEDULER, str(batch),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip


async def read_line(proc: asyncio.subprocess.Process, prefix: str) -> str:
    assert proc.stdout is not None
    while raw := await asyncio.wait_for(proc.stdout.readline(), timeout=TIMEOUT):
        line = raw.decode().rstrip("\n")
        if line.startswith(prefix):
            return line
    assert proc.stderr is not None
    error = (await proc.stderr.read()).decode()
    pytest.fail(f"a scheduler ended before printing {prefix!r}: {error}")


async def seed(settings: Settings, names: list[str]) -> None:
    """Secrets created 100 days ago with a 90-day generator policy: all due now."""
    clock = ManualClock(system_clock() - timedelta(days=100))
    async with await Strongroom.open(settings, clock=clock) as app:
        manager, rotation = SecretsManager(app), SecretsRotation(app)
        for start in range(0, len(names), 50):
            batch = names[start : start + 50]
            await asyncio.gather(*(manager.create_secret(n, f"initial-{n}") for n in batch))
            await asyncio.gather(
                *(
                    rotation.register_secret(RotationConfig(name=n, generator="password"))
                    for n in batch
                )
            )


@pytest.mark.parametrize("batch", [0, 7], ids=["one-claim", "claims-of-7"])
async def test_two_schedulers_rotate_each_due_secret_exactly_once(
    settings: Settings, batch: int
) -> None:
    names = [f"cluster-{i:03d}" for i in range(COUNT)]
    await seed(settings, names)

    procs = [await start_scheduler(settings, batch) for _ in range(2)]
    try:
        for proc in procs:  # both connected before either starts
            await read_line(proc, "ready")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        await asyncio.gather(*(proc.stdin.drain() for proc in procs if proc.stdin))
        results = [json.loads((await read_line(p, "result")).split(" ", 1)[1]) for p in procs]
        for proc in procs:
            assert await asyncio.wait_for(proc.wait(), timeout=TIMEOUT) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    first, second = (set(r["rotated"]) for r in results)
    assert [r["failed"] for r in results] == [[], []]
    assert first.isdisjoint(second)
    assert first | second == set(names)
    assert len(results[0]["rotated"]) + len(results[1]["rotated"]) == COUNT

    async with await Strongroom.open(settings) as app:
        manager, audit = SecretsManager(app), SecretsAudit(app)
        versions = await asyncio.gather(*(manager.get_secret_versions(n) for n in names))
        assert {n: len(v) for n, v in zip(names, versions, strict=True)} == dict.fromkeys(names, 2)
        events = await audit.get_audit_trail(action="ROTATE", limit=10 * COUNT)
        assert all(e["result"] == "SUCCESS" for e in events)
        per_secret = dict.fromkeys(names, 0)
        for event in events:
            per_secret[event["resource_name"]] += 1
        assert per_secret == dict.fromkeys(names, 1)
        rotated_versions = {e["details"]["version"] for e in events}
        assert rotated_versions == {v[0]["version"] for v in versions}
        for name in names[:5]:
            assert await manager.get_secret(name) != f"initial-{name}"
