"""Schema migrations for SQLite and PostgreSQL: one numbered file per step and dialect.

A small runner rather than Alembic: the stores talk to sqlite3 and asyncpg directly (no ORM
engine to hang Alembic on), and the two dialects need only plain DDL files kept side by side.
Each step runs in one transaction with its bookkeeping row; concurrent starters serialise on a
lock (``BEGIN IMMEDIATE`` in SQLite, an advisory lock in PostgreSQL).

Some steps add row MACs, which only code holding the master key can compute: such a step runs
with a *hook* that MACs the rows already there, in the step's own transaction, so a store never
holds rows without MACs once the step is recorded. A runner without the hook applies the step
only while its tables are empty, and otherwise stops there for a store that has it.
"""

from __future__ import annotations

import importlib
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    # Only for the annotation: importing asyncpg costs every SQLite-only process (the CLI's
    # start-up among them) about 10 ms.
    import asyncpg

__all__ = [
    "NEEDS_KEY",
    "SCHEMA_NAME",
    "Migration",
    "PostgresHooks",
    "SqliteHooks",
    "deferred_hook",
    "migrate_postgres",
    "migrate_sqlite",
    "migrations",
    "statements",
]

Dialect = Literal["sqlite", "postgres"]
_LOCK_ID = 0x5354524F4E47  # "STRONG": advisory lock key for migrations
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Steps that MAC existing rows, and the tables whose rows they MAC.
NEEDS_KEY: dict[int, tuple[str, ...]] = {
    10: ("secrets",),
    11: ("strongroom_tokens", "strongroom_policies", "strongroom_identity_policies"),
}
SqliteHooks = Mapping[int, Callable[[sqlite3.Connection], None]]


def deferred_hook(module: str, name: str, *args: Any) -> Callable[[sqlite3.Connection], None]:
    """The hook ``module.name(*args)`` makes, with ``module`` imported only when its step runs:
    most starts find every step applied, and a command's start-up should not pay for it."""

    def run(conn: sqlite3.Connection) -> None:
        hook: Callable[[sqlite3.Connection], None] = getattr(importlib.import_module(module), name)(
            *args
        )
        hook(conn)

    return run


PostgresHooks = Mapping[int, Callable[[Any], Awaitable[None]]]


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sql: str


def migrations(dialect: Dialect) -> list[Migration]:
    found = []
    for entry in _files():
        stem, _, suffix = entry.name.partition(".")
        if suffix != f"{dialect}.sql":
            continue
        number, _, name = stem.partition("_")
        found.append(Migration(int(number), name, entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.number)


def _files() -> list[Any]:
    """The migration files: a directory beside this module, or the package's resources when
    installed some other way (importlib.resources costs a command's start-up about 5 ms)."""
    folder = Path(__file__).with_name("migrations")
    if folder.is_dir():
        return sorted(folder.iterdir())
    from importlib import resources  # noqa: PLC0415

    return list(resources.files("strongroom.db.migrations").iterdir())


@cache
def _numbers(dialect: Dialect) -> frozenset[int]:
    """The numbers of the steps this code knows for ``dialect`` (file names only)."""
    suffix = f".{dialect}.sql"
    return frozenset(int(e.name.partition("_")[0]) for e in _files() if e.name.endswith(suffix))


def _sqlite_applied(conn: sqlite3.Connection) -> set[int]:
    """The steps recorded in this database, read without a lock (none: no table yet)."""
    try:
        return {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}
    except sqlite3.OperationalError:  # no such table: a new database
        return set()


def statements(script: str) -> list[str]:
    """Split a script into statements (SQLite's own notion of a complete statement)."""
    found, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            found.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        found.append(buffer.strip())
    return found


def _sqlite_rows(conn: sqlite3.Connection, tables: tuple[str, ...]) -> bool:
    return any(
        conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None  # noqa: S608
        for table in tables  # fixed names from NEEDS_KEY
    )


def migrate_sqlite(conn: sqlite3.Connection, hooks: SqliteHooks | None = None) -> list[int]:
    """Apply pending steps on a connection in autocommit mode; returns the numbers applied."""
    applied: list[int] = []
    if _sqlite_applied(conn) >= _numbers("sqlite"):
        # Every step is there already (steps are only ever added): nothing to take the write
        # lock for. A process that only reads a secret opens several stores on one file.
        return applied
    hooks = hooks or {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        done = {row[0] for row in conn.execute("SELECT number FROM schema_migrations")}
        for step in migrations("sqlite"):
            if step.number in done:
                continue
            hook = hooks.get(step.number)
            tables = NEEDS_KEY.get(step.number, ())
            if hook is None and tables and _sqlite_rows(conn, tables):
                break  # rows to MAC: left for a store that holds the master key
            for statement in statements(step.sql):
                conn.execute(statement)
            if hook is not None:
                hook(conn)
            conn.execute(
                "INSERT INTO schema_migrations (number, name, applied_at) VALUES (?, ?, ?)",
                (step.number, step.name, time.time_ns() // 1000),
            )
            applied.append(step.number)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


async def migrate_postgres(
    conn: asyncpg.Connection, schema: str, hooks: PostgresHooks | None = None
) -> list[int]:
    """Apply pending steps inside ``schema`` (created if missing)."""
    applied: list[int] = []
    hooks = hooks or {}
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        quoted = await conn.fetchval("SELECT quote_ident($1)", schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(f"SET LOCAL search_path TO {quoted}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        done = {r["number"] for r in await conn.fetch("SELECT number FROM schema_migrations")}
        for step in migrations("postgres"):
            if step.number in done:
                continue
            hook = hooks.get(step.number)
            tables = NEEDS_KEY.get(step.number, ())
            if hook is None and tables and await _postgres_rows(conn, tables):
                break  # rows to MAC: left for a store that holds the master key
            await conn.execute(step.sql)
            if hook is not None:
                await hook(conn)
            await conn.execute(
                "INSERT INTO schema_migrations (number, name, applied_at) VALUES ($1, $2, now())",
                step.number,
                step.name,
            )
            applied.append(step.number)
    return applied


async def _postgres_rows(conn: asyncpg.Connection, tables: tuple[str, ...]) -> bool:
    for table in tables:  # fixed names from NEEDS_KEY
        if await conn.fetchval(f"SELECT 1 FROM {table} LIMIT 1") is not None:  # noqa: S608
            return True
    return False
