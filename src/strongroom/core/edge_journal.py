"""An edge's audit journal as it travels to the centre, and the centre's continuity rules
(pure: no I/O).

An edge chains its events under its own site key (HMAC), which the centre never holds. What the
centre can check is continuity: every batch starts right after the last event it stored for
that site, its first event links to that event's hash, and each event links to the one before.
A gap, a link that does not match, or a history that differs from what was shipped is refused
and alarmed; a batch the centre already holds (a retry whose answer was lost) is stale, never
stored twice. Stored events carry their site and edge links in their details, under the
centre's own chain, so ``audit verify`` can check each site's chain again later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strongroom.core.audit import GENESIS_HASH, AuditEvent
from strongroom.core.errors import EdgeJournalBrokenError, EdgeJournalStaleError

__all__ = [
    "EDGE_DETAIL_FIELDS",
    "MAX_BATCH",
    "EdgeChains",
    "JournalHead",
    "ShippedEvent",
    "accept",
    "edge_details",
]

#: Events one upload may carry.
MAX_BATCH = 500
#: Details the centre adds to a shipped event (an edge's own values for them are dropped).
EDGE_DETAIL_FIELDS = frozenset({"site", "edge_seq", "edge_prev", "edge_hash"})


@dataclass(frozen=True, slots=True)
class JournalHead:
    """The last edge event stored for a site: its position and chain hash (0 and zeros: none)."""

    seq: int = 0
    hash: bytes = GENESIS_HASH

    def to_dict(self) -> dict[str, Any]:
        return {"last_seq": self.seq, "last_hash": self.hash.hex()}


@dataclass(frozen=True, slots=True)
class ShippedEvent:
    """One event of an edge's chain: its position, links and content."""

    seq: int
    prev_hash: bytes
    chain_hash: bytes
    event: AuditEvent


def accept(
    head: JournalHead, after: JournalHead, events: Sequence[ShippedEvent]
) -> tuple[list[ShippedEvent], JournalHead]:
    """What of a batch to store, given the site's ``head`` and the batch's claimed starting
    point ``after``, and the head it leaves. Raises EdgeJournalBrokenError for a gap or a
    forged link, EdgeJournalStaleError for a batch entirely stored already."""
    if not events:
        raise EdgeJournalBrokenError("an edge journal batch holds no events")
    _check_links(after, events)
    last = events[-1]
    if after.seq > head.seq:
        raise EdgeJournalBrokenError(
            f"edge journal events {head.seq + 1}..{after.seq} are missing: the batch starts "
            f"after event {after.seq}, the centre holds up to {head.seq}"
        )
    if after.seq == head.seq:
        if after.hash != head.hash:
            raise EdgeJournalBrokenError(
                f"the batch does not link to edge journal event {head.seq} as the centre holds "
                "it (a forged or replaced history)"
            )
        return list(events), JournalHead(last.seq, last.chain_hash)
    # The batch starts before the head: a retry of events already stored.
    if last.seq <= head.seq:
        if last.seq == head.seq and last.chain_hash != head.hash:
            raise EdgeJournalBrokenError(
                f"edge journal event {head.seq} differs from the one the centre holds "
                "(a forged or replaced history)"
            )
        raise EdgeJournalStaleError(
            f"the centre already holds this site's journal up to event {head.seq}"
        )
    overlap = events[head.seq - after.seq - 1]
    if overlap.chain_hash != head.hash:
        raise EdgeJournalBrokenError(
            f"edge journal event {head.seq} differs from the one the centre holds "
            "(a forged or replaced history)"
        )
    return list(events[head.seq - after.seq :]), JournalHead(last.seq, last.chain_hash)


def _check_links(after: JournalHead, events: Sequence[ShippedEvent]) -> None:
    """Each event follows the one before it, by position and by link."""
    seq, prev = after.seq, after.hash
    for shipped in events:
        if shipped.seq != seq + 1:
            raise EdgeJournalBrokenError(
                f"edge journal events {seq + 1}..{shipped.seq - 1} are missing from the batch"
                if shipped.seq > seq + 1
                else f"edge journal event {shipped.seq} is out of order"
            )
        if shipped.prev_hash != prev:
            raise EdgeJournalBrokenError(
                f"edge journal event {shipped.seq} does not link to the event before it "
                "(removed, replaced or forged)"
            )
        seq, prev = shipped.seq, shipped.chain_hash


def edge_details(site: str, shipped: ShippedEvent) -> dict[str, Any]:
    """The event's own details, less any edge claim to the centre's fields, plus those."""
    details = {k: v for k, v in shipped.event.details.items() if k not in EDGE_DETAIL_FIELDS}
    details.update(
        site=site,
        edge_seq=shipped.seq,
        edge_prev=shipped.prev_hash.hex(),
        edge_hash=shipped.chain_hash.hex(),
    )
    return details


@dataclass
class _Chain:
    events: int = 0
    first_seq: int = 0
    last_seq: int = 0
    last_hash: str = ""
    broken: str | None = None


@dataclass
class EdgeChains:
    """Follows every site's chain through the centre's log (oldest first) for ``audit
    verify``: positions without gaps, each event linked to the one before. A log pruned at
    the centre starts a site's chain wherever its first kept event is."""

    chains: dict[str, _Chain] = field(default_factory=dict)

    def observe(self, details: dict[str, Any]) -> None:
        site = details.get("site")
        seq, prev, link = (
            details.get("edge_seq"),
            details.get("edge_prev"),
            details.get("edge_hash"),
        )
        if not isinstance(site, str) or not isinstance(seq, int) or isinstance(seq, bool):
            return
        chain = self.chains.setdefault(site, _Chain(first_seq=seq))
        if chain.broken is None and chain.events:
            if seq != chain.last_seq + 1:
                chain.broken = f"edge event {chain.last_seq + 1} is missing or out of order"
            elif prev != chain.last_hash:
                chain.broken = f"edge event {seq} does not link to the event before it"
        chain.events += 1
        chain.last_seq, chain.last_hash = seq, str(link)

    def report(self, heads: dict[str, JournalHead]) -> dict[str, dict[str, Any]]:
        """Per site: events seen, the range, and the first break (also against the head the
        centre keeps for the site, which must be the last event seen)."""
        found: dict[str, dict[str, Any]] = {}
        for site in sorted(set(self.chains) | set(heads)):
            chain = self.chains.get(site, _Chain())
            broken = chain.broken
            head = heads.get(site)
            if (
                broken is None
                and head is not None
                and head.seq
                and (head.seq, head.hash.hex()) != (chain.last_seq, chain.last_hash)
            ):
                broken = (
                    f"the site's journal head (event {head.seq}) does not match the last "
                    f"of its events in the log ({chain.last_seq})"
                )
            found[site] = {
                "valid": broken is None,
                "events": chain.events,
                "first_seq": chain.first_seq or None,
                "last_seq": chain.last_seq or None,
                "reason": broken,
            }
        return found
