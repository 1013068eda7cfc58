"""One PostgreSQL writer's own audit chain: claimed, appended to without a shared lock, anchored.

A writer claims a chain with a session advisory lock (keyed by the schema and the chain
number) on a connection of its own, which then carries every append: an idle chain left by a
stopped or crashed process is taken over and continued, and a new chain is made only when
every existing one is busy, so there are as many chains as writers ever ran at once. The lock
ends with the session, so a crashed writer frees its chain with nothing to clean up.

A batch is one statement (advance this chain's head if it is where this writer left it,
insert the rows from arrays). Batches that change a secret, and one batch every
``anchor_interval`` seconds, also append an anchor to the global chain in the same
transaction, under the lock of the anchor chain's head row (row 0); a clean stop anchors what
is left. Only anchors take that lock, so writers do not wait for each other.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from strongroom.core.anchors import (
    ANCHOR_CHAIN,
    chain_base,
    has_changes,
    next_anchor,
)
from strongroom.core.audit import GENESIS_HASH, AuditEvent, ChainKey, details_json, epoch_switch
from strongroom.core.errors import ChainKeyStaleError, StoreUnavailableError
from strongroom.core.logging import get_logger
from strongroom.db.audit_key_check import behind
from strongroom.db.pg import STATEMENT_TIMEOUT

__all__ = ["ChainWriter", "Inside", "insert_anchor"]

#: Work done in a batch's transaction before it is appended (an edge site's journal head).
Inside = Callable[[Any], Awaitable[None]]

log = get_logger("strongroom.audit")
_APPEND = (
    "WITH head AS (UPDATE secrets_audit_chain SET last_seq = $2, last_hash = $3, key_epoch = $19 "
    "WHERE id = $18 AND last_seq = $1 "
    # The fence: once the anchor chain moved to a newer key epoch, an older key writes nothing.
    "AND (SELECT key_epoch FROM secrets_audit_chain WHERE id = 0) <= $19 RETURNING 1) "
    "INSERT INTO secrets_audit_log (id, action, resource_name, timestamp, result, actor_id, "
    "actor_ip, actor_user_agent, details, error_message, error_code, duration_ms, prev_hash, "
    "chain_hash) SELECT i, a, r, t, res, ai, ip, ua, d::jsonb, em, ec, dm, ph, ch FROM unnest("
    "$4::bigint[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], "
    "$10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::int[], "
    "$16::bytea[], $17::bytea[]) AS b(i, a, r, t, res, ai, ip, ua, d, em, ec, dm, ph, ch) "
    "WHERE EXISTS (SELECT 1 FROM head)"
)
_LOCK_HEAD = (
    "SELECT last_seq, last_hash, key_epoch FROM secrets_audit_chain WHERE id = $1 FOR UPDATE"
)
_ADD_ANCHOR = (
    "WITH head AS (UPDATE secrets_audit_chain SET last_seq = $1, last_hash = $9, "
    "key_epoch = $10 WHERE id = 0) "
    "INSERT INTO secrets_audit_anchors (seq, chain_id, first_seq, last_seq, chain_hash, "
    "changes, anchored_at, prev_hash, anchor_hash) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtext(current_schema()), $1::int)"
_HEAD = "SELECT last_seq, last_hash, key_epoch FROM secrets_audit_chain WHERE id = $1"


class _HeadMoved(Exception):
    """The chain's head was not where its writer left it (rolls the batch back)."""


@dataclass(frozen=True, slots=True)
class _Chained:
    params: list[Any]
    last: tuple[int, bytes]
    ids: list[int]
    rows: int  # the events given, and the key epoch switch before them if there is one


def _chain(
    events: list[AuditEvent], key: ChainKey, chain: int, head: tuple[int, bytes], epoch: int
) -> _Chained:
    """The batch linked after position ``head[0]`` of ``chain`` (at key epoch ``epoch``; an
    older one than ``key``'s is left with a switch event first): the statement's parameters."""
    base, (last_pos, prev) = chain_base(chain), head
    linking = [(epoch_switch(key, events[0].timestamp), key.at(epoch))] if epoch < key.epoch else []
    linking += [(event, key) for event in events]
    columns: list[list[Any]] = [[] for _ in range(14)]
    for offset, (event, by) in enumerate(linking, start=1):
        event_id = base + last_pos + offset
        link = by.link(prev, event, event_id)
        for column, value in zip(
            columns,
            (
                event_id, event.action.value, event.resource_name, event.timestamp,
                event.result.value, event.actor_id, event.actor_ip, event.actor_user_agent,
                details_json(event.details, ascii_only=True),
                event.error_message, event.error_code, event.duration_ms, prev, link,
            ),
            strict=True,
        ):  # fmt: skip
            column.append(value)
        prev = link
    new_pos = last_pos + len(linking)
    return _Chained(
        params=[last_pos, new_pos, prev, *columns, chain, key.epoch],
        last=(new_pos, prev),
        ids=list(range(base + new_pos - len(events) + 1, base + new_pos + 1)),
        rows=len(linking),
    )


class ChainWriter:
    """This process's chain: its connection, number, head, key epoch and what is anchored."""

    def __init__(
        self,
        conn: Any,
        chain: int,
        head: tuple[int, bytes],
        anchored: int,
        interval: float,
        epoch: int = 0,
    ) -> None:
        self.conn = conn
        self.chain = chain
        self.head = head
        self.epoch = epoch  # the key epoch the chain's head is at
        self.anchored = anchored  # the last position an anchor covers
        self.interval = interval
        self._anchor_due = time.monotonic() + interval
        self._last_at: datetime | None = None

    @classmethod
    async def claim(cls, dsn: str, schema: str, key: ChainKey, *, interval: float) -> ChainWriter:
        """Open a connection and take an idle chain, or make a new one."""
        import asyncpg  # noqa: PLC0415 (imported on first use, as in strongroom.db.pg)

        conn = await asyncpg.connect(
            dsn,
            timeout=STATEMENT_TIMEOUT,
            command_timeout=STATEMENT_TIMEOUT,
            server_settings={"search_path": schema},
        )
        try:
            chain = await cls._take(conn, key)
            row = await conn.fetchrow(_HEAD, chain)
            anchored = await conn.fetchval(
                "SELECT coalesce(max(last_seq), 0) FROM secrets_audit_anchors WHERE chain_id = $1",
                chain,
            )
        except BaseException:
            await conn.close()
            raise
        if row is None:
            raise StoreUnavailableError("the claimed audit chain has no head row")
        head = (row["last_seq"], bytes(row["last_hash"]))
        return cls(conn, chain, head, anchored, interval, row["key_epoch"])

    @staticmethod
    async def _take(conn: Any, key: ChainKey) -> int:
        for row in await conn.fetch("SELECT id FROM secrets_audit_chain WHERE id > 0 ORDER BY id"):
            if await conn.fetchval(_TRY_LOCK, row["id"]):
                return int(row["id"])
        # Every chain is busy: a new one, registered in the global chain as it is made (so a
        # whole writer chain removed later is missed by the anchors that name it).
        async with conn.transaction():
            await conn.fetchrow(_LOCK_HEAD, ANCHOR_CHAIN)  # one new chain at a time
            chain = int(await conn.fetchval("SELECT max(id) + 1 FROM secrets_audit_chain"))
            if not await conn.fetchval(_TRY_LOCK, chain):
                raise StoreUnavailableError("cannot claim a new audit chain (its lock is held)")
            await conn.execute(
                "INSERT INTO secrets_audit_chain (id, last_seq, last_hash, anchor_seq, "
                "anchor_hash, key_epoch) VALUES ($1, 0, $2, 0, $2, $3)",
                chain,
                GENESIS_HASH,
                key.epoch,
            )
            await _link_anchor(
                conn, key, chain, (1, 0, GENESIS_HASH), changes=False, at=datetime.now(UTC)
            )
        return chain

    async def append(
        self, events: list[AuditEvent], key: ChainKey, *, inside: Inside | None = None
    ) -> list[int]:
        """Chain and commit ``events``. Only this writer moves its chain's head, so a head that
        moved anyway was changed behind strongroom's back: that is logged critically, and the
        batch is chained after the head as stored (verification and checkpoints show the
        rewrite; refusing every write from then on would only turn tampering into an outage).
        A key older than the anchor chain's epoch writes nothing (ChainKeyStaleError)."""
        if self.epoch > key.epoch:
            raise ChainKeyStaleError(self.epoch, key.epoch)
        for _attempt in range(2):
            chained = _chain(events, key, self.chain, self.head, self.epoch)
            if await self._write(chained, events, key, inside):
                self.head, self.epoch = chained.last, key.epoch
                self._last_at = events[-1].timestamp
                return chained.ids
            fence = await self.conn.fetchval(
                "SELECT key_epoch FROM secrets_audit_chain WHERE id = $1", ANCHOR_CHAIN
            )
            if fence is not None and fence > key.epoch:
                raise ChainKeyStaleError(fence, key.epoch)
            log.critical("audit chain head moved under its writer", chain=self.chain)
            row = await self.conn.fetchrow(_HEAD, self.chain)
            if row is None:
                break
            self.head, self.epoch = (row["last_seq"], bytes(row["last_hash"])), row["key_epoch"]
            self.anchored = min(self.anchored, self.head[0])
        raise StoreUnavailableError("the audit chain's head moved under its writer")

    async def _write(
        self, chained: _Chained, events: list[AuditEvent], key: ChainKey, inside: Inside | None
    ) -> bool:
        """One batch in one statement, or in a transaction when there is work ``inside``, an
        anchor is due, the batch changes a secret or moves the chain to a new key epoch.
        False if the head was not where this writer left it (nothing written)."""
        inserted = f"INSERT 0 {chained.rows}"
        switched = chained.rows > len(events)
        changes = has_changes(events)
        anchor = changes or switched or time.monotonic() >= self._anchor_due
        if inside is None and not anchor:
            return bool(await self.conn.execute(_APPEND, *chained.params) == inserted)
        try:
            async with self.conn.transaction():
                if inside is not None:
                    await inside(self.conn)
                if await self.conn.execute(_APPEND, *chained.params) != inserted:
                    raise _HeadMoved
                if anchor:
                    await self._anchor(key, chained.last, changes=changes, at=events[-1].timestamp)
        except _HeadMoved:
            return False
        return True

    async def _anchor(
        self, key: ChainKey, last: tuple[int, bytes], *, changes: bool, at: datetime
    ) -> None:
        """Anchor positions after the last anchored one up to ``last`` (inside a transaction)."""
        # A chain's first anchor may cover events from before anchors existed (a migrated
        # log): marked as changes, so the feed reads that range once rather than skip it.
        changes = changes or self.anchored == 0
        covered = (self.anchored + 1, *last)
        await _link_anchor(self.conn, key, self.chain, covered, changes=changes, at=at)
        self.anchored = last[0]
        self._anchor_due = time.monotonic() + self.interval

    async def close(self, key: ChainKey) -> None:
        """Anchor what is not anchored yet, then end the session (which frees the chain)."""
        try:
            if self.anchored < self.head[0] and self._last_at is not None:
                async with self.conn.transaction():
                    await self._anchor(key, self.head, changes=False, at=self._last_at)
        finally:
            await self.conn.close()

    def abort(self) -> None:
        """Drop the connection at once (after a failure: the next batch claims again)."""
        self.conn.terminate()


async def _link_anchor(
    conn: Any,
    key: ChainKey,
    chain: int,
    covered: tuple[int, int, bytes],
    *,
    changes: bool,
    at: datetime,
) -> None:
    """Append an anchor for ``chain``'s ``covered`` positions under the anchor chain's head
    lock (inside a transaction); an anchor chain at a newer key epoch refuses this key."""
    head = await conn.fetchrow(_LOCK_HEAD, ANCHOR_CHAIN)
    if head["key_epoch"] > key.epoch:
        raise ChainKeyStaleError(head["key_epoch"], key.epoch)
    last = (head["last_seq"], bytes(head["last_hash"]))
    if head["key_epoch"] < key.epoch:
        behind(head["key_epoch"], key.epoch)
    anchor = next_anchor(key, last, chain, covered, changes=changes, at=at)
    await insert_anchor(conn, anchor, key.epoch)


async def insert_anchor(conn: Any, anchor: Any, epoch: int) -> None:
    await conn.execute(
        _ADD_ANCHOR, anchor.seq, anchor.chain, anchor.first, anchor.last, anchor.chain_hash,
        anchor.changes, anchor.anchored_at, anchor.prev_hash, anchor.anchor_hash, epoch,
    )  # fmt: skip
