"""Audit events in PostgreSQL, safe with many writer processes.

Each process writes a hash chain of its own (see :mod:`strongroom.db.audit_pg_chain`), claimed
on its first batch and anchored now and then into the global chain, so writers never wait for
each other's commits; a batch costs one round trip whatever its size. Reads, retention and
verification use a pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import asyncpg

from strongroom.core.anchors import ANCHOR_CHAIN, CHAIN_SPAN, Anchor, chain_base, chain_of
from strongroom.core.audit import GENESIS_HASH, AuditEvent, ChainKey
from strongroom.core.edge_journal import JournalHead
from strongroom.core.errors import (
    ChainKeyStaleError,
    EdgeJournalStaleError,
    StoreUnavailableError,
    StrongroomError,
)
from strongroom.core.logging import get_logger
from strongroom.db.audit_pg_chain import ChainWriter, Inside
from strongroom.db.audit_sql import (
    ANCHOR_COVERING,
    ANCHORS,
    CHAIN_ANCHORS,
    CHAINS,
    CHANGE_ANCHORS,
    POSTGRES,
    SCAN,
    analysis_sql,
    count_sql,
    summary_sql,
    trail_sql,
)
from strongroom.db.audit_sqlite import anchor_from_row, event_from_row, link_from_row
from strongroom.db.audit_store import (
    ChainLink,
    ChainState,
    StoredEvent,
    StoreLocation,
    TrailFilter,
)
from strongroom.db.pg import check_schema, driver_errors, open_pool, pooled

__all__ = ["PostgresAuditStore"]

log = get_logger("strongroom.audit")
_FAILURES: tuple[type[BaseException], ...] = (StrongroomError, *driver_errors())
_PAGE = {"after": 0, "upto": 0, "batch": 0}
_SCAN = POSTGRES.compile(SCAN, _PAGE)[0]
_ANCHORS = POSTGRES.compile(ANCHORS, _PAGE)[0]
_CHANGE_ANCHORS = POSTGRES.compile(CHANGE_ANCHORS, _PAGE)[0]
_CHAIN_ANCHORS = POSTGRES.compile(CHAIN_ANCHORS, {"chain": 0, "after": 0, "upto": 0})[0]
_ANCHOR_COVERING = POSTGRES.compile(ANCHOR_COVERING, {"chain": 0, "position": 0})[0]
#: Seconds between the anchors of a writer that changes nothing (reads only).
ANCHOR_INTERVAL = 5.0


class PostgresAuditStore:
    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "strongroom",
        min_size: int = 1,
        max_size: int = 4,
        anchor_interval: float = ANCHOR_INTERVAL,
    ) -> None:
        self._dsn = dsn
        self.schema = check_schema(schema)
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._anchor_interval = anchor_interval
        self._writer: ChainWriter | None = None
        self._key: ChainKey | None = None
        self._writing = asyncio.Lock()

    @property
    def chain(self) -> int | None:
        """The writer chain this process holds (None before its first batch)."""
        return self._writer.chain if self._writer is not None else None

    async def open(self, *, migrate: bool = True) -> None:
        """``migrate=False``: a reader in another process (a chain-check worker)."""
        self._pool = await open_pool(
            self._dsn,
            self.schema,
            min_size=self._min,
            max_size=self._max,
            what="the PostgreSQL audit log",
            migrate=migrate,
        )

    def location(self) -> StoreLocation:
        return StoreLocation("postgres", self._dsn, self.schema)

    async def close(self) -> None:
        """Anchor this writer's chain and free it; a batch still in flight (the audit log
        waited for its writer first) has its connection dropped instead."""
        writer, self._writer = self._writer, None
        if writer is not None and (self._writing.locked() or self._key is None):
            writer.abort()
        elif writer is not None and self._key is not None:
            async with self._writing:
                try:
                    await writer.close(self._key)
                except (*driver_errors(), ChainKeyStaleError) as exc:  # type: ignore[misc]
                    # The last anchor is lost, not the events (with a stale key: a process
                    # holding the new one anchors the chain later).
                    log.warning("audit chain not anchored at close", error=type(exc).__name__)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _conn(self) -> AbstractAsyncContextManager[Any]:
        return pooled(self._pool, "the PostgreSQL audit log")

    async def append(self, events: list[AuditEvent], key: ChainKey) -> list[int]:
        """Append to this process's chain (claimed on the first batch)."""
        if not events:
            return []
        return await self._append(events, key, None)

    async def append_shipped(
        self,
        site: str,
        expected: JournalHead,
        new: JournalHead,
        events: list[AuditEvent],
        key: ChainKey,
    ) -> list[int]:
        """Onto this process's chain, in one transaction with the site's journal head (under
        its row lock): the head must still be ``expected``, and becomes ``new``."""

        async def site_head(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO edge_journal_heads (site, last_seq, last_hash, shipped, updated_at) "
                "VALUES ($1, 0, $2, 0, now()) ON CONFLICT (site) DO NOTHING",
                site,
                GENESIS_HASH,
            )
            row = await conn.fetchrow(
                "SELECT last_seq, last_hash FROM edge_journal_heads WHERE site = $1 FOR UPDATE",
                site,
            )
            if JournalHead(int(row["last_seq"]), bytes(row["last_hash"])) != expected:
                raise EdgeJournalStaleError("the site's journal head moved; ask for it again")
            await conn.execute(
                "UPDATE edge_journal_heads SET last_seq = $2, last_hash = $3, "
                "shipped = shipped + $4, updated_at = $5 WHERE site = $1",
                site, new.seq, new.hash, len(events), events[-1].timestamp,
            )  # fmt: skip

        return await self._append(events, key, site_head)

    async def _append(
        self, events: list[AuditEvent], key: ChainKey, inside: Inside | None
    ) -> list[int]:
        """A failed batch drops the chain's connection (unless strongroom refused it), so the
        next one starts from the head as stored."""
        if self._pool is None:
            raise StoreUnavailableError("the PostgreSQL audit log is closed")
        async with self._writing:
            self._key = key
            try:
                if self._writer is None:
                    self._writer = await ChainWriter.claim(
                        self._dsn, self.schema, key, interval=self._anchor_interval
                    )
                return await self._writer.append(events, key, inside=inside)
            except _FAILURES as exc:
                if isinstance(exc, StrongroomError) and not isinstance(exc, StoreUnavailableError):
                    raise  # refused by a rule (its transaction rolled back): the chain is fine
                writer, self._writer = self._writer, None
                if writer is not None:
                    writer.abort()
                if isinstance(exc, StrongroomError):
                    raise
                raise StoreUnavailableError(
                    f"the PostgreSQL audit log failed ({type(exc).__name__})"
                ) from exc

    async def edge_heads(self) -> dict[str, JournalHead]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT site, last_seq, last_hash FROM edge_journal_heads")
        return {r["site"]: JournalHead(int(r["last_seq"]), bytes(r["last_hash"])) for r in rows}

    async def trail(self, where: TrailFilter, limit: int, offset: int) -> list[StoredEvent]:
        sql, params = POSTGRES.compile(*trail_sql(where, limit, offset))
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *params)
        return [event_from_row(r, micros=False) for r in rows]

    async def count(self, where: TrailFilter) -> int:
        sql, params = POSTGRES.compile(*count_sql(where))
        async with self._conn() as conn:
            return int(await conn.fetchval(sql, *params))

    async def summary_groups(
        self, resource_name: str | None, since: datetime
    ) -> list[tuple[str, str | None, int, int]]:
        sql, params = POSTGRES.compile(
            summary_sql(POSTGRES, resource_name), {"since": since, "resource_name": resource_name}
        )
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *params)
        return [(r["dimension"], r["key"], int(r["events"]), int(r["failures"] or 0)) for r in rows]

    async def chain_state(self) -> ChainState:
        async with self._conn() as conn:
            r = await conn.fetchrow(
                "SELECT last_seq, last_hash, anchor_seq, anchor_hash FROM secrets_audit_chain "
                "WHERE id = 1"
            )
        return ChainState(r[0], bytes(r[1]), r[2], bytes(r[3]))

    async def chains(self) -> list[ChainState]:
        async with self._conn() as conn:
            rows = await conn.fetch(CHAINS)
        return [ChainState(r[1], bytes(r[2]), r[3], bytes(r[4]), r[0], r[5]) for r in rows]

    async def anchors(
        self, after_seq: int, up_to_seq: int, batch: int, *, changes_only: bool = False
    ) -> AsyncIterator[list[Anchor]]:
        sql = _CHANGE_ANCHORS if changes_only else _ANCHORS
        cursor = after_seq
        while cursor < up_to_seq:
            async with self._conn() as conn:
                rows = await conn.fetch(sql, cursor, up_to_seq, batch)
            if not rows:
                return
            yield [anchor_from_row(r, micros=False) for r in rows]
            cursor = rows[-1]["seq"]

    async def chain_anchors(self, chain: int, after: int, up_to: int) -> list[Anchor]:
        async with self._conn() as conn:
            rows = await conn.fetch(_CHAIN_ANCHORS, chain, after, up_to)
        return [anchor_from_row(r, micros=False) for r in rows]

    async def anchor_covering(self, event_id: int) -> int | None:
        chain = chain_of(event_id)
        async with self._conn() as conn:
            found = await conn.fetchval(_ANCHOR_COVERING, chain, event_id - chain_base(chain))
        return None if found is None else int(found)

    async def max_id(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM secrets_audit_log"))

    async def scan(
        self, after_id: int, up_to_id: int, batch: int
    ) -> AsyncIterator[list[StoredEvent]]:
        async for rows in self._rows(after_id, up_to_id, batch):
            yield [event_from_row(r, micros=False) for r in rows]

    async def scan_links(
        self, after_id: int, up_to_id: int, batch: int
    ) -> AsyncIterator[list[ChainLink]]:
        async for rows in self._rows(after_id, up_to_id, batch):
            yield [link_from_row(r, micros=False) for r in rows]

    async def _rows(self, after_id: int, up_to_id: int, batch: int) -> AsyncIterator[list[Any]]:
        """Rows with after_id < id <= up_to_id, ascending, ``batch`` at a time."""
        cursor = after_id
        while cursor < up_to_id:
            async with self._conn() as conn:
                rows = await conn.fetch(_SCAN, cursor, up_to_id, batch)
            if not rows:
                return
            yield rows
            cursor = rows[-1]["id"]

    async def prune(self, before: datetime) -> tuple[int, int]:
        """Each chain loses the prefix of events older than ``before`` (its head row keeps
        where it now starts), the anchor chain its prefix of older anchors. A chain's head row
        is updated last and committed at once: its writer waits only for that instant."""
        deleted = 0
        async with self._conn() as conn:
            for row in await conn.fetch("SELECT id FROM secrets_audit_chain WHERE id > 0"):
                deleted += await _prune_chain(conn, int(row["id"]), before)
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM secrets_audit_chain WHERE id = 0 FOR UPDATE")
                upto = await conn.fetchval(
                    "SELECT max(seq) FROM secrets_audit_anchors WHERE anchored_at < $1", before
                )
                if upto is not None:
                    last = await conn.fetchval(
                        "SELECT anchor_hash FROM secrets_audit_anchors WHERE seq = $1", upto
                    )
                    await conn.execute("DELETE FROM secrets_audit_anchors WHERE seq <= $1", upto)
                    await conn.execute(
                        "UPDATE secrets_audit_chain SET anchor_seq = $1, anchor_hash = $2 "
                        "WHERE id = $3",
                        upto, last, ANCHOR_CHAIN,
                    )  # fmt: skip
            anchor = await conn.fetchval(
                "SELECT coalesce(max((id - 1) * $1::bigint + anchor_seq), 0) "
                "FROM secrets_audit_chain WHERE id > 0 AND anchor_seq > 0",
                CHAIN_SPAN,
            )
        return deleted, int(anchor)

    async def analyse(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        sql, values = POSTGRES.compile(analysis_sql(POSTGRES, query, params), params)
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *values)
        return [dict(r) for r in rows]


async def _prune_chain(conn: Any, chain: int, before: datetime) -> int:
    base = chain_base(chain)
    async with conn.transaction():
        upto = await conn.fetchval(
            "SELECT max(id) FROM secrets_audit_log WHERE id > $1 AND id <= $2 "
            "AND timestamp < $3",
            base, base + CHAIN_SPAN, before,
        )  # fmt: skip
        if upto is None:
            return 0
        anchor_hash = await conn.fetchval(
            "SELECT chain_hash FROM secrets_audit_log WHERE id = $1", upto
        )
        status = await conn.execute(
            "DELETE FROM secrets_audit_log WHERE id > $1 AND id <= $2", base, upto
        )
        await conn.execute(
            "UPDATE secrets_audit_chain SET anchor_seq = $1, anchor_hash = $2 WHERE id = $3",
            upto - base, anchor_hash, chain,
        )  # fmt: skip
    return int(status.split()[-1])
