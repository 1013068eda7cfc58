"""Checking the anchor chain: gapless, every link and HMAC under its key epoch, each writer
chain's anchors covering consecutive ranges, none naming a chain or a position that is gone,
key anchors stepping to newer epochs (see services.audit.verify for the whole log)."""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.core.anchors import ANCHOR_CHAIN, Anchor, anchor_link, chain_base, chain_name
from strongroom.core.audit import GENESIS_HASH, ChainKey, epoch_step
from strongroom.core.checkpoint import ChainReach
from strongroom.db.audit_store import AuditStore, ChainState
from strongroom.services.audit.chain_check import Broken

__all__ = ["walk_anchors"]


@dataclass(slots=True)
class _AnchorWalk:
    key: ChainKey
    heads: dict[int, ChainState]
    expected_seq: int
    prev: bytes
    watch: frozenset[int]
    seen: dict[int, bytes] = field(default_factory=dict)
    reached: dict[int, int] = field(default_factory=dict)  # chain -> last position anchored
    #: The key epoch reached; None where retention cut the chain's start off.
    epoch: int | None = 0
    #: The ring as at ``epoch`` (what the next anchor is linked under).
    by: ChainKey | None = None

    def check(self, anchor: Anchor) -> str | None:
        problem = self._linked(anchor)
        if problem is None:
            key_anchor = anchor.chain == ANCHOR_CHAIN
            problem = self._key_anchor(anchor) if key_anchor else self._covers(anchor)
        if problem is None:
            self.expected_seq, self.prev = anchor.seq + 1, anchor.anchor_hash
            if anchor.seq in self.watch:
                self.seen[anchor.seq] = anchor.anchor_hash
        return problem

    def _linked(self, anchor: Anchor) -> str | None:
        if anchor.seq != self.expected_seq:
            if anchor.seq > self.expected_seq:
                return f"anchors {self.expected_seq}..{anchor.seq - 1} are missing"
            return "anchor out of order"
        if anchor.prev_hash != self.prev:
            return "link to the previous anchor is broken (anchor removed or replaced)"
        if self.epoch is None:
            self.epoch = self._first_epoch(anchor)
        if self.by is None or self.by.epoch != self.epoch:
            self.by = self.key.at(self.epoch)
        if anchor_link(self.by, self.prev, anchor) != anchor.anchor_hash:
            return "anchor content does not match its hash (modified or forged)"
        return None

    def _covers(self, anchor: Anchor) -> str | None:
        """A writer chain's anchor: a range that follows the last one of its chain."""
        head = self.heads.get(anchor.chain)
        if head is None:
            return f"anchor names writer chain {anchor.chain}, which is gone"
        if anchor.last > head.last_seq:
            return (
                f"anchor says writer chain {anchor.chain} reached {anchor.last}, but its head "
                f"is at {head.last_seq}: events were cut off"
            )
        before = self.reached.get(anchor.chain)
        if before is not None and anchor.first != before + 1:
            return f"anchors of writer chain {anchor.chain} do not follow each other"
        if anchor.last < anchor.first - 1 or (
            anchor.last == 0 and anchor.chain_hash != GENESIS_HASH
        ):
            return "anchor covers no valid range"
        if anchor.last and anchor.last == head.anchor_seq and anchor.chain_hash != head.anchor_hash:
            return f"anchor {anchor.seq} does not match where retention left its chain"
        self.reached[anchor.chain] = anchor.last
        return None

    def _first_epoch(self, anchor: Anchor) -> int:
        """Where retention cut the start off, the first anchor left says which key it was
        linked under (the newest when none: its check then reports it)."""
        return next(
            (e for e in range(self.key.epoch + 1)
             if anchor_link(self.key.at(e), self.prev, anchor) == anchor.anchor_hash),
            self.key.epoch,
        )  # fmt: skip

    def _key_anchor(self, anchor: Anchor) -> str | None:
        """A key anchor (core.anchors.key_anchor): a step to a newer epoch whose key it names."""
        current = self.epoch or 0
        if anchor.last != 0:
            return f"key anchor from epoch {current} to {anchor.first} is not a step forward"
        problem = epoch_step(self.key, current, anchor.first, anchor.chain_hash, "key anchor")
        if problem is None:
            self.epoch = anchor.first
        return problem


async def walk_anchors(
    store: AuditStore,
    key: ChainKey,
    heads: dict[int, ChainState],
    watch: frozenset[int],
    batch: int,
    reach: dict[str, ChainReach],
) -> Broken | None:
    """The anchor chain's first break; else how far it reached goes into ``reach``."""
    head = heads.get(ANCHOR_CHAIN)
    if head is None:
        return 0, "the anchor chain's head row is gone"
    walk = _AnchorWalk(
        key,
        heads,
        head.anchor_seq + 1,
        head.anchor_hash if head.anchor_seq else GENESIS_HASH,
        watch,
        epoch=None if head.anchor_seq else 0,
    )
    async for anchors in store.anchors(head.anchor_seq, 2**63 - 1, batch):
        for anchor in anchors:
            if anchor.seq > head.last_seq:
                return _at(anchor, heads, "anchor is beyond the anchor chain's head")
            problem = walk.check(anchor)
            if problem is not None:
                return _at(anchor, heads, f"anchor {anchor.seq}: {problem}")
    if walk.expected_seq - 1 < head.last_seq:
        return 0, f"anchors {walk.expected_seq}..{head.last_seq} are missing"
    if head.last_seq and walk.prev != head.last_hash:
        return 0, "the anchor chain's head does not match"
    reached = walk.epoch if walk.epoch is not None else head.key_epoch
    if reached != head.key_epoch or head.key_epoch != key.epoch:
        return 0, (
            f"the anchor chain reached key epoch {reached} (its head says {head.key_epoch}), "
            f"but the current key is epoch {key.epoch}: anchors made under a replaced master "
            "key, or the newest ones removed"
        )
    if not head.anchor_seq:  # nothing pruned: every chain but the first was registered
        for chain in heads:
            if chain > 1 and chain not in walk.reached:
                return chain_base(chain) + 1, f"writer chain {chain} is not in the anchor chain"
    reach[chain_name(ANCHOR_CHAIN)] = ChainReach(
        head.anchor_seq, head.anchor_hash, walk.expected_seq - 1, walk.seen
    )
    return None


def _at(anchor: Anchor, heads: dict[int, ChainState], reason: str) -> Broken:
    """A broken anchor is reported at the last event it names, or at the first event cut off
    when it names events beyond its chain's head."""
    head = heads.get(anchor.chain)
    if anchor.chain == ANCHOR_CHAIN or head is None:
        return chain_base(max(anchor.chain, 1)) + anchor.last, reason
    return chain_base(anchor.chain) + min(anchor.last, head.last_seq + 1), reason
