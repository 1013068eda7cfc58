"""Where the seal record lives: beside the state (the SQLite file, or PostgreSQL), so every
replica of a cluster reads the same one. It holds no key and no share (core.unseal)."""

from __future__ import annotations

import asyncio
import sqlite3

from strongroom.core.config import Settings
from strongroom.core.errors import CustodyError, StoreUnavailableError
from strongroom.core.unseal import SealRecord
from strongroom.db.migrate import migrate_postgres, migrate_sqlite
from strongroom.db.pg import STATEMENT_TIMEOUT, check_schema, driver_errors

__all__ = ["read_seal", "write_seal"]

_SELECT = "SELECT record FROM custody_seal WHERE id = 1"


async def read_seal(settings: Settings) -> SealRecord | None:
    """The store's seal record, or None when custody was never initialised."""
    text = await _run(settings, None)
    return SealRecord.from_json(text) if text is not None else None


async def write_seal(settings: Settings, record: SealRecord) -> None:
    """Record how the store is sealed; CustodyError if it already was."""
    await _run(settings, record)


async def _run(settings: Settings, record: SealRecord | None) -> str | None:
    if settings.state_in_postgres:
        return await _postgres(settings, record)
    return await asyncio.to_thread(_sqlite, settings, record)


def _sqlite(settings: Settings, record: SealRecord | None) -> str | None:
    path = settings.sqlite_path
    if record is None and not path.exists():
        return None
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            migrate_sqlite(conn)
            if record is not None:
                try:
                    conn.execute(
                        "INSERT INTO custody_seal (id, record) VALUES (1, ?)", (record.to_json(),)
                    )
                except sqlite3.IntegrityError:
                    raise _already() from None
                return None
            row = conn.execute(_SELECT).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise StoreUnavailableError("cannot read the seal record (sqlite3)") from exc
    except sqlite3.Error as exc:
        raise StoreUnavailableError("cannot read the seal record (sqlite3)") from exc
    return None if row is None else str(row[0])


async def _postgres(settings: Settings, record: SealRecord | None) -> str | None:
    import asyncpg  # noqa: PLC0415 (see db.pg.driver_errors)

    schema = check_schema(settings.pg_schema)
    try:
        conn = await asyncpg.connect(settings.audit_dsn(), timeout=STATEMENT_TIMEOUT)
    except driver_errors() as exc:
        raise StoreUnavailableError(f"cannot reach PostgreSQL ({type(exc).__name__})") from exc
    try:
        await migrate_postgres(conn, schema)
        await conn.execute("SELECT set_config('search_path', $1, false)", schema)
        if record is not None:
            try:
                await conn.execute(
                    "INSERT INTO custody_seal (id, record) VALUES (1, $1)", record.to_json()
                )
            except asyncpg.UniqueViolationError:
                raise _already() from None
            return None
        value = await conn.fetchval(_SELECT)
    except asyncpg.UndefinedTableError:
        return None
    except driver_errors() as exc:
        raise StoreUnavailableError(f"seal record: {type(exc).__name__}") from exc
    finally:
        await conn.close()
    return None if value is None else str(value)


def _already() -> CustodyError:
    return CustodyError("custody is already initialised for this store: it has its share set")
