"""Where the wrapped root key lives (core.root): beside the state, in the SQLite file or in
PostgreSQL, so every replica reads the same one. Each change is one transaction, so a crash
leaves the slots either as they were or as they were meant to be."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from strongroom.core.audit import ChainKey
from strongroom.core.config import Backend, Settings
from strongroom.core.errors import StoreUnavailableError
from strongroom.core.root import RootRecord, RootSlots
from strongroom.db.audit_key_epoch import move_anchor_chain_postgres, move_anchor_chain_sqlite
from strongroom.db.migrate import migrate_postgres, migrate_sqlite
from strongroom.db.pg import STATEMENT_TIMEOUT, check_schema, driver_errors

__all__ = ["promote_pending", "read_roots", "replace_with_seal", "stage_pending"]

#: (statement, parameters) pairs run in one transaction; ``?`` placeholders (numbered for
#: PostgreSQL when run there).
_Step = tuple[str, tuple[Any, ...]]
_UPSERT = (
    "INSERT INTO custody_root (slot, record) VALUES (?, ?) "
    "ON CONFLICT (slot) DO UPDATE SET record = excluded.record"
)


async def read_roots(settings: Settings) -> RootSlots:
    """The stored wrappings (none for the memory profile, or a store never replaced)."""
    if settings.backend is Backend.MEMORY and not settings.state_in_postgres:
        return RootSlots()
    rows = await _run(settings, [], read=True)
    found = {slot: RootRecord.from_json(text) for slot, text in rows}
    return RootSlots(found.get("current"), found.get("pending"))


async def stage_pending(settings: Settings, *, current: RootRecord, pending: RootRecord) -> None:
    """Keep ``pending`` beside ``current`` (written when there is none: a first replacement
    records the original master key's wrapping with it), in one transaction."""
    await _run(
        settings,
        [
            # Never over a current wrapping already there: it may be newer than the caller's.
            (
                "INSERT INTO custody_root (slot, record) VALUES ('current', ?) "
                "ON CONFLICT (slot) DO NOTHING",
                (current.to_json(),),
            ),
            (_UPSERT, ("pending", pending.to_json())),
        ],
    )


async def promote_pending(settings: Settings, pending: RootRecord, chain: ChainKey) -> None:
    """Make ``pending`` the current wrapping and drop the old one, and move the audit anchor
    chain to ``chain`` (the key ring ``pending`` holds), in one transaction; nothing happens
    when another process did it first (the pending slot no longer holds it)."""
    text = pending.to_json()
    await _run(
        settings,
        [
            (
                "DELETE FROM custody_root WHERE slot = 'current' AND EXISTS "
                "(SELECT 1 FROM custody_root WHERE slot = 'pending' AND record = ?)",
                (text,),
            ),
            (
                "UPDATE custody_root SET slot = 'current' WHERE slot = 'pending' AND record = ?",
                (text,),
            ),
        ],
        move=chain,
    )


async def replace_with_seal(
    settings: Settings, current: RootRecord, seal_record: str, chain: ChainKey
) -> None:
    """Under an HSM's or Key Vault key's custody, where the new master key is stored (wrapped)
    in the seal record itself: the new wrapping, the new seal record and the audit anchor
    chain's move to ``chain`` in one transaction, so a crash leaves the old or the new."""
    await _run(
        settings,
        [
            ("DELETE FROM custody_root", ()),
            ("INSERT INTO custody_root (slot, record) VALUES ('current', ?)", (current.to_json(),)),
            ("UPDATE custody_seal SET record = ? WHERE id = 1", (seal_record,)),
        ],
        move=chain,
    )


async def _run(
    settings: Settings,
    steps: Sequence[_Step],
    *,
    read: bool = False,
    move: ChainKey | None = None,
) -> list[Any]:
    """``steps`` in one transaction, then (in it) the anchor chain's move to ``move``."""
    if settings.state_in_postgres:
        return await _postgres(settings, steps, read, move)
    return await asyncio.to_thread(_sqlite, settings, steps, read, move)


def _sqlite(
    settings: Settings, steps: Sequence[_Step], read: bool, move: ChainKey | None
) -> list[Any]:
    path = settings.sqlite_path
    if read and not path.exists():
        return []
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
        try:
            migrate_sqlite(conn)
            if read:
                return conn.execute("SELECT slot, record FROM custody_root").fetchall()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in steps:
                    conn.execute(sql, params)
                if move is not None:
                    move_anchor_chain_sqlite(conn, move)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return []
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnavailableError("cannot use the root key record (sqlite3)") from exc


def _numbered(sql: str) -> str:
    parts = sql.split("?")
    return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, 1))


async def _postgres(
    settings: Settings, steps: Sequence[_Step], read: bool, move: ChainKey | None
) -> list[Any]:
    import asyncpg  # noqa: PLC0415 (see db.pg.driver_errors)

    schema = check_schema(settings.pg_schema)
    try:
        conn = await asyncpg.connect(settings.audit_dsn(), timeout=STATEMENT_TIMEOUT)
    except driver_errors() as exc:
        raise StoreUnavailableError(f"cannot reach PostgreSQL ({type(exc).__name__})") from exc
    try:
        await migrate_postgres(conn, schema)
        await conn.execute("SELECT set_config('search_path', $1, false)", schema)
        if read:
            rows = await conn.fetch("SELECT slot, record FROM custody_root")
            return [(row["slot"], row["record"]) for row in rows]
        async with conn.transaction():
            for sql, params in steps:
                await conn.execute(_numbered(sql), *params)
            if move is not None:
                await move_anchor_chain_postgres(conn, move)
        return []
    except asyncpg.PostgresError as exc:
        raise StoreUnavailableError(f"root key record: {type(exc).__name__}") from exc
    except driver_errors() as exc:
        raise StoreUnavailableError(f"root key record: {type(exc).__name__}") from exc
    finally:
        await conn.close()
