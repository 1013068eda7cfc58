"""get_secret and update_secret through ``SecretsManager`` on the sqlite and postgres stores.

Each store gets a fresh home: a temporary ``STRONGROOM_HOME`` for sqlite, a schema of its own
(``bench_<random>``, dropped afterwards) for postgres. 100 secrets with 64-character values are
created first and then read or updated round-robin.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from bench.bench_crypto import ENVELOPE_OPEN, ENVELOPE_SEAL
from bench.harness import AsyncOp, Goal, ResultRow, run_async
from strongroom import Backend, SecretsManager, Settings, Strongroom

__all__ = ["BACKENDS", "GOALS", "PG_URL", "StoreRun", "run_store"]

PG_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgres")
SECRET_COUNT = 100
_UPDATE_VALUES = 256

_SQLITE_READ_GOAL = Goal(">=20,000/s p99<2ms", min_ops_per_s=20_000, max_p99_ms=2.0)
#: (store, operation, tasks) -> the goal printed beside that result.
GOALS: dict[tuple[str, str, int], Goal] = {
    ("sqlite", "get_secret", 1): _SQLITE_READ_GOAL,
    ("sqlite", "get_secret", 32): _SQLITE_READ_GOAL,
    ("postgres", "get_secret", 32): Goal(">=5,000/s", min_ops_per_s=5_000),
}


@dataclass
class StoreRun:
    backend: str
    rows: list[ResultRow] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


def _value() -> str:
    return secrets.token_urlsafe(48)  # 64 characters, 64 bytes of UTF-8


async def _postgres_info(pg_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(pg_url, timeout=5)
    try:
        return {
            "server_version": await conn.fetchval("SHOW server_version"),
            "synchronous_commit": await conn.fetchval("SHOW synchronous_commit"),
            "fsync": await conn.fetchval("SHOW fsync"),
        }
    finally:
        await conn.close()


async def _drop_schema(pg_url: str, schema: str) -> None:
    conn = await asyncpg.connect(pg_url, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@asynccontextmanager
async def open_manager(
    backend: str, *, pg_url: str = PG_URL
) -> AsyncIterator[tuple[SecretsManager, dict[str, Any]]]:
    """A manager over a fresh, empty store of this kind; everything is removed afterwards."""
    master_key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    schema = f"bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as home:
        settings = Settings(
            STRONGROOM_BACKEND=Backend(backend),
            STRONGROOM_HOME=Path(home),
            DATABASE_URL=SecretStr(pg_url),
            STRONGROOM_PG_SCHEMA=schema,
            STRONGROOM_MASTER_KEY=SecretStr(master_key),
        )
        info: dict[str, Any] = {"backend": backend}
        if backend == "sqlite":
            info["path"] = str(settings.sqlite_path)
        if backend == "postgres":
            info |= await _postgres_info(pg_url)
            info |= {
                "schema": schema,
                "pool_min": settings.pg_pool_min,
                "pool_max": max(settings.pg_pool_min, settings.pg_pool_max),
            }
        try:
            # The store alone: the audit section measures what auditing adds on top.
            app = await Strongroom.open(settings, audit=False)
            info["audit"] = "off"
            try:
                yield SecretsManager(app), info
            finally:
                await app.close()
        finally:
            if backend == "postgres":
                await _drop_schema(pg_url, schema)


async def _seed(manager: SecretsManager, names: Sequence[str]) -> list[str]:
    values = [_value() for _ in names]
    await asyncio.gather(
        *(
            manager.create_secret(name, value, metadata={"owner": "bench"})
            for name, value in zip(names, values, strict=True)
        )
    )
    read = await asyncio.gather(*(manager.get_secret(name) for name in names))
    if read != values:
        raise RuntimeError(f"{manager!r}: get_secret did not return the values just created")
    return values


async def run_store(
    backend: str,
    *,
    references: dict[str, float],
    tasks: Sequence[int],
    seconds: float,
    warmup_seconds: float,
    rounds: int = 5,
    pg_url: str = PG_URL,
) -> StoreRun:
    """Measure get_secret, then update_secret, with each task count in ``tasks``.

    ``references`` maps a crypto reference label to its ops/s from the same run: reads are
    compared with ``Envelope.open``, writes with ``Envelope.seal``.
    """
    run = StoreRun(backend)
    if backend == "postgres":
        try:
            await (await asyncpg.connect(pg_url, timeout=5)).close()
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            run.skipped = f"PostgreSQL not reachable ({type(exc).__name__}: {exc})"
            return run

    async with open_manager(backend, pg_url=pg_url) as (manager, info):
        run.info = info
        names = [f"bench-{k:03d}" for k in range(SECRET_COUNT)]
        await _seed(manager, names)
        new_values = [_value() for _ in range(_UPDATE_VALUES)]

        async def get_secret(i: int) -> object:
            return await manager.get_secret(names[i % SECRET_COUNT])

        async def update_secret(i: int) -> object:
            return await manager.update_secret(
                names[i % SECRET_COUNT], new_values[i % _UPDATE_VALUES]
            )

        plan: list[tuple[str, AsyncOp, str]] = [
            ("get_secret", get_secret, ENVELOPE_OPEN),
            ("update_secret", update_secret, ENVELOPE_SEAL),
        ]
        for operation, op, reference in plan:
            for concurrency in tasks:
                m = await run_async(
                    op,
                    label=f"{backend} {operation}",
                    concurrency=concurrency,
                    seconds=seconds,
                    warmup_seconds=warmup_seconds,
                    rounds=rounds,
                )
                ref = references.get(reference)
                run.rows.append(
                    ResultRow(
                        backend,
                        operation,
                        m,
                        reference=reference if ref else None,
                        ratio=m.ops_per_s / ref if ref else None,
                        goal=GOALS.get((backend, operation, concurrency)),
                    )
                )
    return run
