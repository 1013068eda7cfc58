"""Writer chains and the global anchor chain of the audit log (pure: no I/O).

Each writer process appends to a hash chain of its own (no lock shared with other writers).
Chain ``c`` owns the ids ``(c - 1) * CHAIN_SPAN + 1 ...``: an id names its chain and its
position, and the HMAC of every event covers its id, so an event moved to another chain or
position no longer verifies. Chain 1 is the log's first chain (the only one on SQLite, and the
whole log before writer chains existed), so its ids are its positions.

Writers *anchor* their chains into one global chain (chain 0): an anchor says "chain ``c``
covered positions ``first..last`` and its event at ``last`` had hash ``h``", and is itself
HMAC-chained to the previous anchor. Anchors are written under one lock, but only now and then
(every few seconds, when a writer stops) and with every batch that changes a secret, so their
order is the order in which changes were committed: the change feed follows it.

When the master key is replaced, the anchor chain moves to the new audit chain key with a
*key anchor* (``key_anchor``: chain 0, which no writer chain is), linked under the key it
leaves and naming the new key by its check value; the anchors after it use the new key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from strongroom.core.audit import AuditAction, AuditEvent, AuditResult, ChainKey

__all__ = [
    "ANCHOR_CHAIN",
    "CHAIN_SPAN",
    "CHANGE_ACTIONS",
    "MAIN_WRITER",
    "Anchor",
    "anchor_link",
    "chain_base",
    "chain_name",
    "chain_of",
    "has_changes",
    "key_anchor",
    "next_anchor",
]

#: Ids a writer chain owns: chain c holds ids (c - 1) * CHAIN_SPAN + 1 .. c * CHAIN_SPAN.
CHAIN_SPAN = 10**12
#: The head row of the global anchor chain.
ANCHOR_CHAIN = 0
#: The first writer chain (its ids are its positions).
MAIN_WRITER = 1

#: Audited actions that change a secret (and the expiry notices, which the change feed carries
#: too): a batch holding one is anchored as it is committed.
CHANGE_ACTIONS = frozenset(
    {
        AuditAction.CREATE, AuditAction.UPDATE, AuditAction.DELETE, AuditAction.RECOVER,
        AuditAction.PURGE, AuditAction.ROTATE, AuditAction.REVOKE, AuditAction.EXPIRY,
    }
)  # fmt: skip


def chain_base(chain: int) -> int:
    """The id before chain ``chain``'s first event."""
    return (chain - 1) * CHAIN_SPAN


def chain_of(event_id: int) -> int:
    return (event_id - 1) // CHAIN_SPAN + 1


def chain_name(chain: int) -> str:
    """The name checkpoints give a chain (``main`` is chain 1, as before writer chains)."""
    if chain == ANCHOR_CHAIN:
        return "anchors"
    return "main" if chain == MAIN_WRITER else f"writer-{chain}"


def has_changes(events: list[AuditEvent]) -> bool:
    """Whether a batch changes a secret (what the change feed carries)."""
    return any(
        e.action in CHANGE_ACTIONS and e.result is not AuditResult.FAILURE and e.resource_name
        for e in events
    )


@dataclass(frozen=True, slots=True)
class Anchor:
    """One link of the global chain: writer chain ``chain`` covered ``first..last`` (its
    positions), ending with ``chain_hash``; ``changes`` when that range changed a secret."""

    seq: int
    chain: int
    first: int
    last: int
    chain_hash: bytes
    changes: bool
    anchored_at: datetime
    prev_hash: bytes = b""
    anchor_hash: bytes = b""


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def anchor_link(key: ChainKey, previous: bytes, anchor: Anchor) -> bytes:
    """The anchor's hash. The encoding starts with a string where an event's starts with its
    id, so an anchor's bytes can never be taken for an event's."""
    when = anchor.anchored_at.astimezone(UTC)
    body = _ENCODER.encode(
        [
            "anchor", anchor.seq, anchor.chain, anchor.first, anchor.last,
            anchor.chain_hash.hex(), anchor.changes,
            int(when.timestamp()) * 1_000_000 + when.microsecond,
        ]
    )  # fmt: skip
    return key.mac(previous, body.encode("ascii"))


def next_anchor(
    key: ChainKey,
    head: tuple[int, bytes],
    chain: int,
    covered: tuple[int, int, bytes],
    *,
    changes: bool,
    at: datetime,
) -> Anchor:
    """The anchor after the anchor chain's ``head`` (seq, hash) for ``chain``'s positions
    ``covered`` (first, last, hash at last); ``at`` is the time of the last event covered."""
    seq, previous = head
    first, last, chain_hash = covered
    draft = Anchor(seq + 1, chain, first, last, chain_hash, changes, at.astimezone(UTC))
    return Anchor(
        draft.seq, chain, first, last, chain_hash, changes, draft.anchored_at, previous,
        anchor_link(key, previous, draft),
    )  # fmt: skip


def key_anchor(key: ChainKey, head: tuple[int, bytes], from_epoch: int, *, at: datetime) -> Anchor:
    """The anchor that moves the anchor chain from ``from_epoch`` to ``key``'s epoch: linked
    under the key it leaves (``first``: the new epoch; ``chain_hash``: its key's check)."""
    return next_anchor(
        key.at(from_epoch), head, ANCHOR_CHAIN, (key.epoch, 0, key.check(key.epoch)),
        changes=False, at=at,
    )  # fmt: skip
