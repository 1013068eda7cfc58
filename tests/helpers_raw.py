"""Raw access to a store's database, as an attacker with write access to it has: plain SQL
through sqlite3 or asyncpg, around strongroom. SQL is written with ``?`` placeholders and
turned into ``$n`` for PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from contextlib import closing
from typing import Any

import asyncpg

from helpers_settings import PG_URL
from strongroom import Settings

__all__ = ["past_read_window", "raw_execute", "raw_fetch"]


def _pg(sql: str) -> str:
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _m: f"${next(counter)}", sql)


async def past_read_window(settings: Settings) -> None:
    """Wait out the stores' read window: a change made outside this process (another worker,
    or SQL around strongroom) reaches its reads once a row fetched before it has aged out."""
    if settings.backend.value in ("sqlite", "postgres"):
        await asyncio.sleep(settings.read_window_seconds * 1.5)


async def raw_fetch(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if settings.backend.value == "sqlite":
        with closing(sqlite3.connect(settings.sqlite_path)) as conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    pg = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.pg_schema})
    try:
        return [tuple(r) for r in await pg.fetch(_pg(sql), *params)]
    finally:
        await pg.close()


async def raw_execute(settings: Settings, *statements: tuple[str, tuple[Any, ...]] | str) -> None:
    """Run ``statements`` (SQL, or (SQL, params)) in one transaction, then wait out the read
    window: the next read sees the rows as written."""
    steps = [(s, ()) if isinstance(s, str) else s for s in statements]
    if settings.backend.value == "sqlite":
        with closing(sqlite3.connect(settings.sqlite_path)) as conn, conn:
            for sql, params in steps:
                conn.execute(sql, params)
    else:
        pg = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.pg_schema})
        try:
            async with pg.transaction():
                for sql, params in steps:
                    await pg.execute(_pg(sql), *params)
        finally:
            await pg.close()
    await past_read_window(settings)
