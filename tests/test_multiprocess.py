"""Several processes on one PostgreSQL store: concurrent versions, and key rotation while others
read and write. Each child prints ``ready``, waits for a line on stdin, then works and prints
what it did; the parent checks every reported write against the store afterwards."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import pytest

from helpers_settings import PG_URL, make_settings
from strongroom import SecretsManager, Settings, Strongroom

pytestmark = pytest.mark.slow

TIMEOUT = 30.0

_PRELUDE = """
import asyncio, sys
from strongroom import SecretsManager, Settings, Strongroom

async def wait_for_go():
    print("ready", flush=True)
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
"""

# Ten concurrent update_secret calls on one secret.
UPDATER = (
    _PRELUDE
    + """
async def main(name, tag):
    async with await Strongroom.open(Settings()) as app:
        manager = SecretsManager(app)
        await wait_for_go()

        async def one(i):
            value = f"{tag}-{i}"
            props = await manager.update_secret(name, value)
            print("ok", props["version"], value, flush=True)

        await asyncio.gather(*(one(i) for i in range(10)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""
)

# Rotates the master key a few times.
ROTATOR = (
    _PRELUDE
    + """
async def main(times):
    async with await Strongroom.open(Settings()) as app:
        manager = SecretsManager(app)
        await wait_for_go()
        for _ in range(times):
            result = await manager.rotate_master_key()
            print("rotated", result["key_version"], result["rewrapped"], flush=True)

asyncio.run(main(int(sys.argv[1])))
"""
)

# Reads every secret over and over, updating one secret per pass, until told to stop; any
# failure or wrong value is printed, never raised, so that the reading goes on.
READER = (
    _PRELUDE
    + """
async def main(count, writes):
    async with await Strongroom.open(Settings()) as app:
        manager = SecretsManager(app)
        await wait_for_go()
        loop = asyncio.get_running_loop()
        stop = loop.run_in_executor(None, sys.stdin.readline)
        expected = {f"rot-{i}": f"initial-{i}" for i in range(count)}
        passes = reads = 0
        while not stop.done():
            for name, value in expected.items():
                try:
                    got = await manager.get_secret(name)
                except Exception as exc:
                    print("error read", name, type(exc).__name__, exc, flush=True)
                    continue
                reads += 1
                if got != value:
                    print("error value", name, flush=True)
            if passes < writes:
                name = f"rot-{passes % count}"
                value = f"reader-{passes}"
                try:
                    props = await manager.update_secret(name, value)
                except Exception as exc:
                    print("error write", name, type(exc).__name__, exc, flush=True)
                else:
                    expected[name] = value
                    print("ok", name, props["version"], value, flush=True)
            passes += 1
            print("pass", passes, flush=True)
        await stop
        print("reads", reads, flush=True)

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""
)


@pytest.fixture
def settings(pg_schema: str, tmp_path: Path) -> Settings:
    return make_settings("postgres", tmp_path, schema=pg_schema)


class Child:
    """A child process speaking the ready / go / output-lines protocol above."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, settings: Settings, script: str, *args: object) -> Child:
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
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, *map(str, args),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        child = cls(proc)
        await child.read_until("ready")
        return child

    async def readline(self) -> str | None:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout=TIMEOUT)
        if not raw:
            return None
        line = raw.decode().rstrip("\n")
        self.lines.append(line)
        return line

    async def read_until(self, prefix: str) -> None:
        while (line := await self.readline()) is not None:
            if line.startswith(prefix):
                return
        pytest.fail(f"the child ended before printing {prefix!r}: {self.lines}")

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finish(self) -> list[str]:
        """Every line the child printed, once it has exited successfully."""
        while await self.readline() is not None:
            pass
        code = await asyncio.wait_for(self.proc.wait(), timeout=TIMEOUT)
        assert code == 0, "\n".join(self.lines)
        return self.lines

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def _kill_all(children: Iterable[Child]) -> None:
    for child in children:
        await child.kill()


def _writes(lines: list[str]) -> list[list[str]]:
    return [line.split()[1:] for line in lines if line.startswith("ok ")]


async def test_two_processes_updating_one_secret_lose_no_version(settings: Settings) -> None:
    async with await Strongroom.open(settings) as app:
        first = await SecretsManager(app).create_secret("shared", "initial")

    children: list[Child] = []
    try:
        for tag in ("alpha", "beta"):
            children.append(await Child.start(settings, UPDATER, "shared", tag))
        for child in children:  # both are connected before either starts writing
            await child.send("go")
        outputs = [await child.finish() for child in children]
    finally:
        await _kill_all(children)

    written = {version: value for lines in outputs for version, value in _writes(lines)}
    assert len(written) == 20
    assert sorted(written.values()) == sorted(
        f"{t}-{i}" for t in ("alpha", "beta") for i in range(10)
    )

    async with await Strongroom.open(settings) as app:
        manager = SecretsManager(app)
        versions = await manager.get_secret_versions("shared")
        assert len(versions) == 21
        assert {v["version"] for v in versions} == {first["version"], *written}
        assert sum(v["current"] for v in versions) == 1
        assert await manager.get_secret("shared", first["version"]) == "initial"
        for version, value in written.items():
            assert await manager.get_secret("shared", version) == value
        # The current version is the last one written, whichever process wrote it.
        assert await manager.get_secret("shared") == written[versions[0]["version"]]


async def test_key_rotation_in_one_process_while_another_reads_and_writes(
    settings: Settings,
) -> None:
    count = 300  # with a second version each: more than one re-wrap batch of 500
    async with await Strongroom.open(settings) as app:
        manager = SecretsManager(app)
        for start in range(0, count, 50):
            await asyncio.gather(
                *(
                    manager.create_secret(f"rot-{i}", f"initial-{i}")
                    for i in range(start, min(count, start + 50))
                )
            )
        await asyncio.gather(
            *(manager.update_secret(f"rot-{i}", f"initial-{i}") for i in range(count))
        )

    children: list[Child] = []
    try:
        reader = await Child.start(settings, READER, count, 10)
        children.append(reader)
        rotator = await Child.start(settings, ROTATOR, 3)
        children.append(rotator)
        await reader.send("go")
        await reader.read_until("pass")  # the reader has its keyring loaded and is busy
        await rotator.send("go")
        rotations = await rotator.finish()
        await reader.send("stop")
        reads = await reader.finish()
    finally:
        await _kill_all(children)

    assert [line for line in reads if line.startswith("error")] == []
    total_reads = int(next(line for line in reads if line.startswith("reads ")).split()[1])
    assert total_reads >= count
    rotated = [line.split() for line in rotations if line.startswith("rotated")]
    assert [int(r[1]) for r in rotated] == [2, 3, 4]
    assert all(int(r[2]) >= 2 * count for r in rotated)  # every version was re-wrapped
    writes = _writes(reads)
    assert writes  # the reader wrote too

    async with await Strongroom.open(settings) as app:
        manager = SecretsManager(app)
        for name, version, value in writes:
            assert await manager.get_secret(name, version) == value
        expected = {f"rot-{i}": f"initial-{i}" for i in range(count)}
        expected.update({name: value for name, _, value in writes})
        for name, value in expected.items():
            assert await manager.get_secret(name) == value

    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.pg_schema})
    try:
        keyring = await conn.fetch("SELECT version FROM secret_keyring")
        kek_versions = await conn.fetch("SELECT DISTINCT kek_version FROM secret_versions")
    finally:
        await conn.close()
    assert [r["version"] for r in keyring] == [4]
    assert [r["kek_version"] for r in kek_versions] == [4]
