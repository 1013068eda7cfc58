"""The audit store protocol: append chained events, query them, and analyse them in SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from strongroom.core.anchors import Anchor
from strongroom.core.audit import AuditAction, AuditEvent, AuditResult, ChainKey

if TYPE_CHECKING:
    from strongroom.core.edge_journal import JournalHead

__all__ = [
    "AuditStore",
    "ChainLink",
    "ChainState",
    "StoreLocation",
    "StoredEvent",
    "TrailFilter",
]


class ChainLink(NamedTuple):
    """One event as the chain check needs it: position, hashes, the bytes its hash covers,
    and its details (shipped edge events are followed in their site's chain). A named tuple,
    not a frozen dataclass: one is made per event checked, and a frozen dataclass's
    ``__init__`` cost as much as the HMAC."""

    id: int
    prev_hash: bytes
    chain_hash: bytes
    body: bytes
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where another process opens the same audit log to read it (a chain-check worker).
    ``address`` (a PostgreSQL URL or a SQLite file) may hold a database password: it is
    never shown, and travels to a worker only over its stdin pipe."""

    backend: str
    address: str = field(repr=False)
    schema: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: its chain position (``id``) and hashes."""

    id: int
    event: AuditEvent
    prev_hash: bytes
    chain_hash: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.event.to_dict()}


@dataclass(frozen=True, slots=True)
class ChainState:
    """One chain's head row: how far it reached, and where retention pruning left it start.
    Positions count within the chain (chain 1's positions are its ids)."""

    last_seq: int
    last_hash: bytes
    anchor_seq: int
    anchor_hash: bytes
    chain: int = 1
    #: The audit chain key epoch the chain reached (core.audit.ChainKey).
    key_epoch: int = 0


@dataclass(frozen=True, slots=True)
class TrailFilter:
    resource_name: str | None = None
    action: AuditAction | None = None
    actor_id: str | None = None
    result: AuditResult | None = None
    actor_ip: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditStore(Protocol):
    """Where audit events live: SQLite (file or memory) or PostgreSQL."""

    backend: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, events: list[AuditEvent], key: ChainKey) -> list[int]:
        """Chain and commit ``events`` in one transaction; their ids, in order."""
        ...

    async def append_shipped(
        self,
        site: str,
        expected: JournalHead,
        new: JournalHead,
        events: list[AuditEvent],
        key: ChainKey,
    ) -> list[int]:
        """Append events an edge shipped, in one transaction with its site's journal head:
        only if the head is still ``expected`` (else EdgeJournalStaleError), then ``new``."""
        ...

    async def edge_heads(self) -> dict[str, JournalHead]:
        """Every site's journal head as stored at this centre."""
        ...

    async def trail(self, where: TrailFilter, limit: int, offset: int) -> list[StoredEvent]: ...

    async def count(self, where: TrailFilter) -> int: ...

    async def summary_groups(
        self, resource_name: str | None, since: datetime
    ) -> list[tuple[str, str | None, int, int]]:
        """(dimension, key, events, failures) for dimensions action, result, actor, ip, day."""
        ...

    def location(self) -> StoreLocation | None:
        """Where another process can read this log (None: nowhere, e.g. a memory database)."""
        ...

    async def chain_state(self) -> ChainState:
        """The head of chain 1 (the log's first chain)."""
        ...

    async def chains(self) -> list[ChainState]:
        """Every chain's head, the anchor chain (0) first."""
        ...

    def anchors(
        self, after_seq: int, up_to_seq: int, batch: int, *, changes_only: bool = False
    ) -> AsyncIterator[list[Anchor]]:
        """Anchors with after_seq < seq <= up_to_seq, ascending, in batches."""
        ...

    async def chain_anchors(self, chain: int, after: int, up_to: int) -> list[Anchor]:
        """The anchors of one writer chain ending at positions after < last <= up_to."""
        ...

    async def anchor_covering(self, event_id: int) -> int | None:
        """The first anchor that covers an event (None: not anchored yet)."""
        ...

    async def max_id(self) -> int:
        """The highest id in the table (0 if empty), chained or not."""
        ...

    def scan(self, after_id: int, up_to_id: int, batch: int) -> AsyncIterator[list[StoredEvent]]:
        """Events with after_id < id <= up_to_id, ascending, in batches."""
        ...

    def scan_links(
        self, after_id: int, up_to_id: int, batch: int
    ) -> AsyncIterator[list[ChainLink]]:
        """``scan``, as the chain check reads it (core.audit.canonical_columns)."""
        ...

    async def prune(self, before: datetime) -> tuple[int, int]:
        """Delete events older than ``before`` (whole chain prefix); (deleted, new anchor id)."""
        ...

    async def analyse(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Run one of the named threat-analysis queries of :mod:`strongroom.db.audit_sql`."""
        ...
