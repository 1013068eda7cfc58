"""Checking an audit chain one stored event at a time (pure; the caller does the reading).

A chain may be checked in ranges, in several processes (services.audit.chain_workers): each
range's verifier starts ``inside`` the chain, taking its first event's position, link and key
epoch as found, and the verifier of the whole chain ``join``s the ranges' spans in order,
checking each range's first event against the range before. Every event's position, link and
HMAC is then checked exactly once, with the verdict a single pass gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strongroom.core.audit import (
    EPOCH_CHECK_FIELD,
    EPOCH_FIELD,
    GENESIS_HASH,
    ChainKey,
    canonical,
    switched_epoch,
)
from strongroom.db.audit_store import StoredEvent

__all__ = ["Broken", "ChainVerifier", "Span", "verdict"]

Broken = tuple[int, str]
_FORGED = "event content does not match its hash (modified or forged)"


@dataclass(frozen=True, slots=True)
class Span:
    """What a verifier found over one range of a chain (as it travels back from a worker):
    its first event's id and stored link to the event before (``start``) and the key epoch
    that event was linked under, how many events it verified, the last one's id and hash and
    the epoch reached, the watched hashes seen, and its first break."""

    start: tuple[int, bytes] | None
    start_epoch: int | None
    checked: int
    last: tuple[int, bytes] | None
    end_epoch: int | None
    seen: dict[int, bytes]
    broken: Broken | None


class ChainVerifier:
    """Checks a chain event by event, moving to a newer key epoch where a valid switch event
    says so (core.audit.ChainKey)."""

    def __init__(
        self,
        key: ChainKey,
        anchor_seq: int,
        anchor_hash: bytes,
        *,
        watch: frozenset[int] = frozenset(),
        epoch: int | None = 0,
    ) -> None:
        self.key = key
        #: The key epoch reached; None where retention cut the chain's start off (the first
        #: event left says which of the keys it was linked under).
        self.epoch = epoch
        self._by = key.at(epoch) if epoch is not None else key
        self.expected_id = anchor_seq + 1
        self.expected_prev = anchor_hash
        self.checked = 0
        self.first_id: int | None = None
        self.last_id = anchor_seq
        #: Hashes seen at the positions in ``watch`` (those checkpoints name).
        self.watch = watch
        self.seen: dict[int, bytes] = {}
        #: A range's first event (id, stored link) and its epoch, taken as found: ``join``
        #: checks them against the range before.
        self.start: tuple[int, bytes] | None = None
        self.start_epoch: int | None = None
        self._inside = False

    @classmethod
    def inside(cls, key: ChainKey, *, watch: frozenset[int] = frozenset()) -> ChainVerifier:
        """A verifier for a range that starts inside a chain (see the module's docstring)."""
        verifier = cls(key, 0, GENESIS_HASH, watch=watch, epoch=None)
        verifier._inside = True
        return verifier

    def check(self, stored: StoredEvent) -> Broken | None:
        """None if ``stored`` extends the chain, else (id, reason) of the first break."""
        body = canonical(stored.event, stored.id)
        return self.check_link(
            stored.id, stored.prev_hash, stored.chain_hash, body, stored.event.details
        )

    def check_link(
        self,
        event_id: int,
        prev_hash: bytes,
        chain_hash: bytes,
        body: bytes,
        details: dict[str, Any] | None = None,
    ) -> Broken | None:
        """``check`` of an event given as the bytes its hash covers (a row read as a
        db.audit_store.ChainLink) and its details (where a key epoch switch shows)."""
        if self._inside:
            self._inside = False
            self.start = (event_id, prev_hash)
            self.expected_id, self.expected_prev = event_id, prev_hash
        if event_id != self.expected_id or prev_hash != self.expected_prev:
            return self._misplaced(event_id)
        if self.epoch is None:
            self._find_epoch(body, chain_hash)
            self.start_epoch = self.epoch
        if self._by.mac(self.expected_prev, body) != chain_hash:
            return event_id, _FORGED
        if details and (EPOCH_FIELD in details or EPOCH_CHECK_FIELD in details):
            moved = switched_epoch(self.key, details, self.epoch or 0)
            if isinstance(moved, str):
                return event_id, moved
            if moved is not None:
                self.epoch, self._by = moved, self.key.at(moved)
        self.expected_id, self.expected_prev = event_id + 1, chain_hash
        if event_id in self.watch:
            self.seen[event_id] = chain_hash
        self.checked += 1
        self.first_id = event_id if self.first_id is None else self.first_id
        self.last_id = event_id
        return None

    def _misplaced(self, event_id: int) -> Broken:
        """Why an event is not where the chain expects it, or not linked to the event before."""
        if event_id > self.expected_id:
            return self.expected_id, f"events {self.expected_id}..{event_id - 1} are missing"
        if event_id < self.expected_id:
            return event_id, "event id out of order"
        return event_id, "link to the previous event is broken (event removed or replaced)"

    def _find_epoch(self, body: bytes, chain_hash: bytes) -> None:
        for epoch in range(self.key.epoch + 1):
            if self.key.at(epoch).mac(self.expected_prev, body) == chain_hash:
                self.epoch, self._by = epoch, self.key.at(epoch)
                return
        self.epoch = self.key.epoch  # none matches: the check reports the event

    def span(self, broken: Broken | None) -> Span:
        """This range's findings, for the verifier of the whole chain to ``join``."""
        last = (self.last_id, self.expected_prev) if self.checked else None
        return Span(
            self.start, self.start_epoch, self.checked, last, self.epoch, dict(self.seen), broken
        )

    def join(self, span: Span) -> Broken | None:
        """Continue this chain with the next range's findings. Its first event must come
        next, link to the last one verified here and be linked under the epoch reached here
        (checked before the range's own break, as a single pass meets them: a pass with this
        epoch's key finds another epoch's link forged); then the range's count, end, epoch and
        break become this chain's."""
        if span.start is not None:
            event_id, prev_hash = span.start
            if event_id != self.expected_id or prev_hash != self.expected_prev:
                return self._misplaced(event_id)
            if self.epoch is not None and span.start_epoch not in (None, self.epoch):
                return event_id, _FORGED
        if span.last is not None and span.start is not None:
            self.checked += span.checked
            self.first_id = span.start[0] if self.first_id is None else self.first_id
            self.last_id, last_hash = span.last
            self.expected_id, self.expected_prev = self.last_id + 1, last_hash
            self.seen.update(span.seen)
            if span.end_epoch is not None:
                self.epoch, self._by = span.end_epoch, self.key.at(span.end_epoch)
        return span.broken

    def report(self, broken: Broken | None = None) -> dict[str, Any]:
        return verdict(self.checked, self.first_id, self.last_id, broken)


def verdict(
    checked: int, first_id: int | None, last_id: int, broken: Broken | None
) -> dict[str, Any]:
    """A chain check's answer: valid or where and why it broke, and what was checked."""
    return {
        "valid": broken is None,
        "checked": checked,
        "first_id": first_id,
        "last_id": last_id,
        "broken_at": broken[0] if broken else None,
        "reason": broken[1] if broken else None,
    }
