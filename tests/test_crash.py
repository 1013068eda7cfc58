"""A process killed mid-write loses nothing it acknowledged, and leaves a store that opens.

A child process writes from several concurrent tasks (so SQLite's group commit batches them)
and prints ``ok <name> <version> <n>`` only after each call has returned. The parent kills it
with SIGKILL in the middle of the stream, reopens the store, and reads back every acknowledged
version with the exact value the child wrote.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from strongroom import SecretsManager, Settings, Strongroom

pytestmark = [pytest.mark.slow, pytest.mark.stores("sqlite", "postgres")]

WRITERS = 8
MIN_ACKS = 50
RUN_SECONDS = 1.0
TIMEOUT = 30.0

# The child: WRITERS tasks, each creating one secret and then updating it forever.
CHILD = """
import asyncio, sys
from strongroom import SecretsManager, Settings, Strongroom

def value(name, n):
    return f"{name}:{n}:" + "x" * (n % 97)

async def writer(manager, index):
    name = f"crash-{index}"
    props = await manager.create_secret(name, value(name, 0))
    print("ok", name, props["version"], 0, flush=True)
    n = 1
    while True:
        props = await manager.update_secret(name, value(name, n))
        print("ok", name, props["version"], n, flush=True)
        n += 1

async def main():
    app = await Strongroom.open(Settings())
    manager = SecretsManager(app)
    await asyncio.gather(*(writer(manager, i) for i in range(int(sys.argv[1]))))

asyncio.run(main())
"""


def expected_value(name: str, n: int) -> str:
    return f"{name}:{n}:" + "x" * (n % 97)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``Settings()`` in a child equal to ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "DATABASE_"))}
    assert settings.master_key is not None
    env.update(
        STRONGROOM_BACKEND=settings.backend.value,
        STRONGROOM_HOME=str(settings.home),
        STRONGROOM_MASTER_KEY=settings.master_key.get_secret_value(),
        STRONGROOM_PG_SCHEMA=settings.pg_schema,
        LOG_LEVEL="ERROR",
    )
    if settings.database_url is not None:
        env["DATABASE_URL"] = settings.database_url.get_secret_value()
    return env


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


async def run_and_kill(settings: Settings, stderr_path: Path) -> list[tuple[str, str, int]]:
    """Run the child until it has acknowledged enough writes, SIGKILL it, and return every
    acknowledgement it printed (including any still in the pipe when it died)."""
    loop = asyncio.get_running_loop()
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(WRITERS),
            stdout=asyncio.subprocess.PIPE, stderr=stderr, env=child_env(settings),
        )  # fmt: skip
    assert proc.stdout is not None
    acks: list[tuple[str, str, int]] = []

    def record(line: bytes) -> None:
        # A line cut short by the kill was never acknowledged.
        if line.startswith(b"ok ") and line.endswith(b"\n"):
            _, name, version, n = line.decode().split()
            acks.append((name, version, int(n)))

    try:
        started = None
        hard_deadline = loop.time() + TIMEOUT
        while started is None or loop.time() < started + RUN_SECONDS or len(acks) < MIN_ACKS:
            line = await asyncio.wait_for(
                proc.stdout.readline(), timeout=max(0.1, hard_deadline - loop.time())
            )
            if not line:
                pytest.fail(f"the writer exited early:\n{_text(stderr_path)}")
            record(line)
            started = started if started is not None else loop.time()
        proc.send_signal(signal.SIGKILL)  # mid-stream: its writers are busy right now
        while line := await asyncio.wait_for(proc.stdout.readline(), timeout=TIMEOUT):
            record(line)
        assert await asyncio.wait_for(proc.wait(), timeout=TIMEOUT) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return acks


async def test_acknowledged_writes_survive_sigkill(
    store_settings: Settings, tmp_path: Path
) -> None:
    acks = await run_and_kill(store_settings, tmp_path / "child-stderr.log")
    assert len(acks) >= MIN_ACKS
    assert len({name for name, _, _ in acks}) == WRITERS  # every writer got going

    if store_settings.backend.value == "sqlite":
        with closing(sqlite3.connect(store_settings.sqlite_path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    async with await Strongroom.open(store_settings) as app:
        manager = SecretsManager(app)
        for name, version, n in acks:
            assert await manager.get_secret(name, version) == expected_value(name, n)
        for index in range(WRITERS):
            name = f"crash-{index}"
            stored = [v["version"] for v in reversed(await manager.get_secret_versions(name))]
            acked = [version for acked_name, version, _ in acks if acked_name == name]
            # Acknowledged versions are all there, in the order they were written; anything
            # after them was committed without its acknowledgement reaching us.
            assert stored[: len(acked)] == acked
            assert len(stored) <= len(acked) + 1
        # The store takes writes again.
        await manager.update_secret("crash-0", "after the crash")
        assert await manager.get_secret("crash-0") == "after the crash"
        await manager.create_secret("crash-new", "fresh")
        assert await manager.get_secret("crash-new") == "fresh"

    if store_settings.backend.value == "sqlite":
        with closing(sqlite3.connect(store_settings.sqlite_path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
