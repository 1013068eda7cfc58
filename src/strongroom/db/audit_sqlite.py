"""Audit events in SQLite: the embedded profile's file, or a private in-memory database.

Appends go through the file's shared writer thread (group-committed with everything else
written to the file); the chain head is read and advanced inside that transaction, so appends
from several processes on one file still form one chain. Queries run in a worker thread on a
read connection (WAL readers never block the writer).
"""

from __future__ import annotations

import functools
import json
import json.scanner
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from strongroom.core.anchors import (
    ANCHOR_CHAIN,
    Anchor,
    chain_base,
    chain_of,
)
from strongroom.core.audit import (
    AuditEvent,
    ChainKey,
    canonical_columns,
)
from strongroom.core.errors import EdgeJournalStaleError
from strongroom.db.audit_sql import (
    ANCHOR_COVERING,
    ANCHORS,
    CHAIN_ANCHORS,
    CHAINS,
    CHANGE_ANCHORS,
    SCAN,
    SQLITE,
    TIME_COLUMNS,
    analysis_sql,
    as_datetime_params,
    count_sql,
    summary_sql,
    trail_sql,
)
from strongroom.db.audit_sqlite_chain import INSERT_ANCHOR, anchor_row, chain_rows
from strongroom.db.audit_store import (
    ChainLink,
    ChainState,
    StoredEvent,
    StoreLocation,
    TrailFilter,
)
from strongroom.db.rows import from_micros, to_micros
from strongroom.db.sqlite_db import SqliteDatabase

if TYPE_CHECKING:
    from strongroom.core.edge_journal import JournalHead

__all__ = [
    "INSERT_ANCHOR",
    "SqliteAuditStore",
    "anchor_from_row",
    "anchor_row",
    "event_from_row",
]

T = TypeVar("T")
_SCAN = SQLITE.compile(SCAN, {"after": 0, "upto": 0, "batch": 0})[0]
_PAGE = {"after": 0, "upto": 0, "batch": 0}
_ANCHORS = SQLITE.compile(ANCHORS, _PAGE)[0]
_CHANGE_ANCHORS = SQLITE.compile(CHANGE_ANCHORS, _PAGE)[0]
_CHAIN_ANCHORS = SQLITE.compile(CHAIN_ANCHORS, {"chain": 0, "after": 0, "upto": 0})[0]
_ANCHOR_COVERING = SQLITE.compile(ANCHOR_COVERING, {"chain": 0, "position": 0})[0]


def _fetch(sql: str, params: Any, conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def event_from_row(row: Any, *, micros: bool) -> StoredEvent:
    details = row["details"]
    if isinstance(details, str):
        details = json.loads(details)
    timestamp = from_micros(row["timestamp"]) if micros else row["timestamp"]
    return StoredEvent(
        id=row["id"],
        event=AuditEvent.stored(row, details if details is not None else {}, timestamp),
        prev_hash=bytes(row["prev_hash"]),
        chain_hash=bytes(row["chain_hash"]),
    )


_DECODER = json.JSONDecoder()
_SCAN_ONCE = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]  # C where it exists


def _details_of(text: str) -> Any:
    """``json.loads(text)``, in a fraction of its time on the chain check's hot path: the
    decoder's scanner called directly when the text is one JSON value with nothing around
    it (as stored); anything else goes through the full decode, which parses or raises
    exactly as ``json.loads`` does."""
    if text == "{}":
        return {}
    try:
        value, end = _SCAN_ONCE(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    return value if end == len(text) else _DECODER.decode(text)


def link_from_row(row: Any, *, micros: bool) -> ChainLink:
    """A row as the chain check reads it: the bytes its hash covers, built from the columns
    as stored (the same bytes ``canonical`` makes of ``event_from_row``'s event). Columns
    are unpacked by position (``EVENT_COLUMNS``' order): this runs once per event checked."""
    (seq, action, resource, moment, result, actor, ip, agent, details, message, code,
     duration, prev_hash, chain_hash) = row  # fmt: skip
    if isinstance(details, str):
        details = _details_of(details)
    if details is None:
        details = {}
    if not micros:  # core.audit.micros_of, inline (a call per event costs)
        moment = int(moment.timestamp()) * 1_000_000 + moment.microsecond
    body = canonical_columns(
        seq, action, resource, moment, result, actor, ip, agent, details, message, code,
        duration,
    )  # fmt: skip
    return ChainLink(seq, bytes(prev_hash), bytes(chain_hash), body, details)


def anchor_from_row(row: Any, *, micros: bool) -> Anchor:
    when: datetime = from_micros(row["anchored_at"]) if micros else row["anchored_at"]  # type: ignore[assignment]
    return Anchor(
        seq=row["seq"], chain=row["chain_id"], first=row["first_seq"], last=row["last_seq"],
        chain_hash=bytes(row["chain_hash"]), changes=bool(row["changes"]), anchored_at=when,
        prev_hash=bytes(row["prev_hash"]), anchor_hash=bytes(row["anchor_hash"]),
    )  # fmt: skip


def _prune_anchors(conn: sqlite3.Connection, before: int | None) -> None:
    """Drop the anchor chain's prefix of anchors older than ``before``; row 0 keeps where it
    now starts, as a chain's head row does."""
    upto = conn.execute(
        "SELECT max(seq) FROM secrets_audit_anchors WHERE anchored_at < ?", (before,)
    ).fetchone()[0]
    if upto is None:
        return
    last = conn.execute(
        "SELECT anchor_hash FROM secrets_audit_anchors WHERE seq = ?", (upto,)
    ).fetchone()[0]
    conn.execute("DELETE FROM secrets_audit_anchors WHERE seq <= ?", (upto,))
    conn.execute(
        "UPDATE secrets_audit_chain SET anchor_seq = ?, anchor_hash = ? WHERE id = ?",
        (upto, last, ANCHOR_CHAIN),
    )


class SqliteAuditStore:
    def __init__(self, db: SqliteDatabase, *, sync: bool = True) -> None:
        """``sync=False`` commits audit-only groups without fsync (see SqliteWriter.submit)."""
        self.db = db
        self._sync = sync
        self.backend = "memory" if db.in_memory else "sqlite"

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    def location(self) -> StoreLocation | None:
        if self.db.path is None:
            return None
        return StoreLocation("sqlite", str(self.db.path))

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.db.read(fn)

    # -- the protocol ----------------------------------------------------------------------

    async def append(self, events: list[AuditEvent], key: ChainKey) -> list[int]:
        if not events:
            return []
        return await self.db.write(lambda conn: chain_rows(conn, events, key), sync=self._sync)

    async def append_taking(self, take: Callable[[], list[AuditEvent]], key: ChainKey) -> list[int]:
        """Append what ``take()`` hands over once the file is this writer's: events that
        arrive while another process commits join this commit rather than the next."""

        def job(conn: sqlite3.Connection) -> list[int]:
            events = take()
            return chain_rows(conn, events, key) if events else []

        return await self.db.write(job, sync=self._sync)

    def append_now(self, events: list[AuditEvent], key: ChainKey) -> list[int] | None:
        """Commit ``events`` at once on the caller's thread, when that needs no fsync and the
        file is free; None otherwise (:meth:`append` queues them)."""
        if self._sync or not events:
            return None
        done = self.db.write_now(lambda conn: chain_rows(conn, events, key))
        return None if done is None else done[0]

    async def append_shipped(
        self,
        site: str,
        expected: JournalHead,
        new: JournalHead,
        events: list[AuditEvent],
        key: ChainKey,
    ) -> list[int]:
        from strongroom.core.edge_journal import JournalHead  # noqa: PLC0415 (edge hubs only)

        def job(conn: sqlite3.Connection) -> list[int]:
            row = conn.execute(
                "SELECT last_seq, last_hash FROM edge_journal_heads WHERE site = ?", (site,)
            ).fetchone()
            current = JournalHead(row[0], bytes(row[1])) if row else JournalHead()
            if current != expected:
                raise EdgeJournalStaleError("the site's journal head moved; ask for it again")
            ids = chain_rows(conn, events, key)
            conn.execute(
                "INSERT INTO edge_journal_heads (site, last_seq, last_hash, shipped, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (site) DO UPDATE SET "
                "last_seq = excluded.last_seq, last_hash = excluded.last_hash, "
                "shipped = edge_journal_heads.shipped + excluded.shipped, "
                "updated_at = excluded.updated_at",
                (site, new.seq, new.hash, len(events), to_micros(events[-1].timestamp)),
            )
            return ids

        return await self.db.write(job)

    async def edge_heads(self) -> dict[str, JournalHead]:
        from strongroom.core.edge_journal import JournalHead  # noqa: PLC0415 (edge hubs only)

        rows = await self._read(
            lambda c: c.execute(
                "SELECT site, last_seq, last_hash FROM edge_journal_heads"
            ).fetchall()
        )
        return {r[0]: JournalHead(int(r[1]), bytes(r[2])) for r in rows}

    async def trail(self, where: TrailFilter, limit: int, offset: int) -> list[StoredEvent]:
        sql, params = SQLITE.compile(*trail_sql(where, limit, offset))
        values = [to_micros(v) if isinstance(v, datetime) else v for v in params]
        rows = await self._read(lambda c: c.execute(sql, values).fetchall())
        return [event_from_row(r, micros=True) for r in rows]

    async def count(self, where: TrailFilter) -> int:
        sql, params = SQLITE.compile(*count_sql(where))
        values = [to_micros(v) if isinstance(v, datetime) else v for v in params]
        rows = await self._read(lambda c: c.execute(sql, values).fetchall())
        return int(rows[0]["n"])

    async def summary_groups(
        self, resource_name: str | None, since: datetime
    ) -> list[tuple[str, str | None, int, int]]:
        sql, params = SQLITE.compile(
            summary_sql(SQLITE, resource_name),
            {"since": to_micros(since), "resource_name": resource_name},
        )
        rows = await self._read(lambda c: c.execute(sql, params).fetchall())
        return [(r["dimension"], r["key"], int(r["events"]), int(r["failures"] or 0)) for r in rows]

    async def chain_state(self) -> ChainState:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT last_seq, last_hash, anchor_seq, anchor_hash FROM secrets_audit_chain "
                "WHERE id = 1"
            ).fetchall()
        )
        r = rows[0]
        return ChainState(r[0], bytes(r[1]), r[2], bytes(r[3]))

    async def chains(self) -> list[ChainState]:
        rows = await self._read(lambda c: c.execute(CHAINS).fetchall())
        return [ChainState(r[1], bytes(r[2]), r[3], bytes(r[4]), r[0], r[5]) for r in rows]

    async def anchors(
        self, after_seq: int, up_to_seq: int, batch: int, *, changes_only: bool = False
    ) -> AsyncIterator[list[Anchor]]:
        sql = _CHANGE_ANCHORS if changes_only else _ANCHORS
        cursor = after_seq
        while cursor < up_to_seq:
            rows = await self._read(functools.partial(_fetch, sql, (cursor, up_to_seq, batch)))
            if not rows:
                return
            yield [anchor_from_row(r, micros=True) for r in rows]
            cursor = rows[-1]["seq"]

    async def chain_anchors(self, chain: int, after: int, up_to: int) -> list[Anchor]:
        rows = await self._read(functools.partial(_fetch, _CHAIN_ANCHORS, (chain, after, up_to)))
        return [anchor_from_row(r, micros=True) for r in rows]

    async def anchor_covering(self, event_id: int) -> int | None:
        chain, position = chain_of(event_id), event_id - chain_base(chain_of(event_id))
        rows = await self._read(functools.partial(_fetch, _ANCHOR_COVERING, (chain, position)))
        return None if rows[0][0] is None else int(rows[0][0])

    async def max_id(self) -> int:
        rows = await self._read(
            lambda c: c.execute("SELECT coalesce(max(id), 0) FROM secrets_audit_log").fetchall()
        )
        return int(rows[0][0])

    async def scan(
        self, after_id: int, up_to_id: int, batch: int
    ) -> AsyncIterator[list[StoredEvent]]:
        async for rows in self._rows(after_id, up_to_id, batch):
            yield [event_from_row(r, micros=True) for r in rows]

    async def scan_links(
        self, after_id: int, up_to_id: int, batch: int
    ) -> AsyncIterator[list[ChainLink]]:
        async for rows in self._rows(after_id, up_to_id, batch):
            yield [link_from_row(r, micros=True) for r in rows]

    async def _rows(self, after_id: int, up_to_id: int, batch: int) -> AsyncIterator[list[Any]]:
        """Rows with after_id < id <= up_to_id, ascending, ``batch`` at a time."""
        cursor = after_id
        while cursor < up_to_id:
            rows = await self._read(functools.partial(_fetch, _SCAN, (cursor, up_to_id, batch)))
            if not rows:
                return
            yield rows
            cursor = rows[-1]["id"]

    async def prune(self, before: datetime) -> tuple[int, int]:
        def job(conn: sqlite3.Connection) -> tuple[int, int]:
            # Prune a prefix of the chain: everything up to the last event older than `before`.
            _prune_anchors(conn, to_micros(before))
            row = conn.execute(
                "SELECT max(id) FROM secrets_audit_log WHERE timestamp < ?", (to_micros(before),)
            ).fetchone()
            upto = row[0]
            if upto is None:
                anchor = conn.execute(
                    "SELECT anchor_seq FROM secrets_audit_chain WHERE id = 1"
                ).fetchone()
                return 0, int(anchor[0])
            anchor_hash = conn.execute(
                "SELECT chain_hash FROM secrets_audit_log WHERE id = ?", (upto,)
            ).fetchone()[0]
            deleted = conn.execute("DELETE FROM secrets_audit_log WHERE id <= ?", (upto,)).rowcount
            conn.execute(
                "UPDATE secrets_audit_chain SET anchor_seq = ?, anchor_hash = ? WHERE id = 1",
                (upto, anchor_hash),
            )
            return deleted, upto

        return await self.db.write(job)

    async def analyse(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        sql, values = SQLITE.compile(
            analysis_sql(SQLITE, query, params), as_datetime_params(params, to_micros)
        )
        rows = await self._read(lambda c: c.execute(sql, values).fetchall())
        return [
            {k: from_micros(r[k]) if k in TIME_COLUMNS else r[k] for k in r.keys()}  # noqa: SIM118
            for r in rows
        ]
