"""Checking the whole audit log: every writer chain, the anchor chain, and the checkpoints.

Each writer chain is walked from where retention left it start to its head row: every link,
every event's HMAC (which covers its id, hence its chain and position), no event missing,
none beyond the head. Every anchor that names a position of a chain must carry the hash the
walk found there. Then the anchor chain itself: gapless, every link and HMAC, each chain's
anchors covering consecutive ranges, none naming a chain or a position that is gone. A writer
that crashed leaves a tail no anchor covers: its own links and head row still check it, and
signed checkpoints (read first) catch a tail cut off behind everyone's back.

Events edges shipped carry their site's own chain in their details; a site's events may be
spread over several writer chains (whichever process took each shipment), so they are put
back in the site's order before its chain is followed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hmac import compare_digest
from typing import Any

from strongroom.core.anchors import (
    ANCHOR_CHAIN,
    CHAIN_SPAN,
    Anchor,
    anchor_link,
    chain_base,
    chain_name,
)
from strongroom.core.audit import GENESIS_HASH, ChainKey
from strongroom.core.checkpoint import ChainReach, Checkpoint, check_log, check_sequence
from strongroom.core.edge_journal import EdgeChains, JournalHead
from strongroom.db.audit_store import AuditStore, ChainState
from strongroom.services.audit.checkpoints import SinkContents
from strongroom.services.audit.log import ChainVerifier

__all__ = ["verify_log"]

Broken = tuple[int, str]


@dataclass(slots=True)
class _Tally:
    """What verified so far, over every chain."""

    checked: int = 0
    first_id: int | None = None
    last_id: int = 0
    reach: dict[str, ChainReach] = field(default_factory=dict)
    shipped: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def ship(self, details: dict[str, Any]) -> None:
        site = details.get("site")
        if isinstance(site, str):
            self.shipped.setdefault(site, []).append(details)

    def sites(self, heads: dict[str, JournalHead]) -> dict[str, dict[str, Any]]:
        """Each site's chain, followed in its own order."""
        edges = EdgeChains()
        for events in self.shipped.values():
            for details in sorted(events, key=_edge_order):
                edges.observe(details)
        return edges.report(heads)

    def add(self, chain: int, verifier: ChainVerifier) -> None:
        """Chains are added in order, so ids only grow; with nothing checked yet, the first
        chain's start stands (as ``last_id`` did when the log had one chain)."""
        if verifier.checked:
            self.last_id = verifier.last_id
            if self.first_id is None:
                self.first_id = verifier.first_id
        elif not self.checked and chain == 1:
            self.last_id = verifier.last_id
        self.checked += verifier.checked

    def report(self, broken: Broken | None = None) -> dict[str, Any]:
        return {
            "valid": broken is None,
            "checked": self.checked,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "broken_at": broken[0] if broken else None,
            "reason": broken[1] if broken else None,
        }


async def verify_log(
    store: AuditStore, key: ChainKey, contents: SinkContents | None, batch: int
) -> dict[str, Any]:
    """The verdict on the whole log (``contents``: the checkpoints, read before the heads)."""
    heads = {h.chain: h for h in await store.chains()}
    checkpoints = contents.checkpoints if contents is not None else []
    tally = _Tally()
    for chain in sorted(c for c in heads if c != ANCHOR_CHAIN):
        broken = await _walk_chain(store, key, heads[chain], checkpoints, batch, tally)
        if broken is not None:
            return tally.report(broken)
    broken = await _strays(store, heads, batch)
    if broken is None:
        broken = await _walk_anchors(store, key, heads, checkpoints, batch, tally)
    if broken is None and contents is not None:
        broken = _against_checkpoints(contents, tally)
    report = tally.report(broken)
    sites = tally.sites(await store.edge_heads())
    if sites:  # only at a centre that edges ship their journals to
        report["edge_chains"] = sites
    bad = next((site for site, chain in sites.items() if not chain["valid"]), None)
    if report["valid"] and bad is not None:
        report.update(valid=False, reason=f"edge journal of site {bad}: {sites[bad]['reason']}")
    return report


def _edge_order(details: dict[str, Any]) -> int:
    seq = details.get("edge_seq")
    return seq if isinstance(seq, int) else 0


def _watched(checkpoints: list[Checkpoint], name: str) -> frozenset[int]:
    return frozenset(h.seq for c in checkpoints for h in c.heads if h.chain == name)


async def _walk_chain(
    store: AuditStore,
    key: ChainKey,
    head: ChainState,
    checkpoints: list[Checkpoint],
    batch: int,
    tally: _Tally,
) -> Broken | None:
    base = chain_base(head.chain)
    start = base + head.anchor_seq
    verifier = ChainVerifier(
        key,
        start,
        head.anchor_hash if head.anchor_seq else GENESIS_HASH,
        watch=_watched(checkpoints, chain_name(head.chain)),
        epoch=None if head.anchor_seq else 0,
    )
    last_id = base + head.last_seq
    broken: Broken | None = None
    async for rows in store.scan_links(start, base + CHAIN_SPAN, batch):
        hashes: dict[int, bytes] = {}
        for link in rows:
            if link.id > last_id:
                broken = (link.id, "event is beyond the chain head")
                break
            broken = verifier.check_link(
                link.id, link.prev_hash, link.chain_hash, link.body, link.details
            )
            if broken is not None:
                break
            hashes[link.id] = link.chain_hash
            if "site" in link.details:
                tally.ship(link.details)
        if hashes:
            mismatch = await _against_anchors(store, head, min(hashes) - 1, max(hashes), hashes)
            broken = mismatch or broken
        if broken is not None:
            break
    if broken is None and verifier.last_id < last_id:
        first = verifier.last_id + 1
        broken = (first, f"events {first}..{last_id} are missing")
    if broken is None and head.last_seq and verifier.expected_prev != head.last_hash:
        broken = (verifier.last_id, "chain head does not match")
    reached = verifier.epoch if verifier.epoch is not None else head.key_epoch
    if broken is None and reached != head.key_epoch:
        broken = (
            verifier.last_id,
            f"chain head says key epoch {head.key_epoch}, the chain {reached}",
        )
    tally.add(head.chain, verifier)
    tally.reach[chain_name(head.chain)] = ChainReach(
        start, head.anchor_hash, verifier.last_id, verifier.seen
    )
    return broken


async def _against_anchors(
    store: AuditStore, head: ChainState, after: int, up_to: int, hashes: dict[int, bytes]
) -> Broken | None:
    """The first anchor naming one of these verified events with another hash."""
    base = chain_base(head.chain)
    for anchor in await store.chain_anchors(head.chain, after - base, up_to - base):
        found = hashes.get(base + anchor.last)
        if found is not None and found != anchor.chain_hash:
            return (
                base + anchor.last,
                f"anchor {anchor.seq} recorded another hash for event {base + anchor.last}: "
                "the anchor or the chain was rewritten",
            )
    return None


async def _strays(store: AuditStore, heads: dict[int, ChainState], batch: int) -> Broken | None:
    """Events in the id range of no chain (a head row removed, or rows made up)."""
    top = max((c for c in heads if c != ANCHOR_CHAIN), default=0)
    for chain in [c for c in range(1, top + 1) if c not in heads] + [top + 1]:
        upper = chain_base(chain) + CHAIN_SPAN if chain <= top else 2**63 - 1
        async for rows in store.scan(chain_base(chain), upper, 1):
            return rows[0].id, "event belongs to no writer chain (its head row is gone)"
    return None


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
        if anchor_link(self.key.at(self.epoch), self.prev, anchor) != anchor.anchor_hash:
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
        if anchor.last != 0 or not current < anchor.first <= self.key.epoch:
            return f"key anchor from epoch {current} to {anchor.first} is not a step forward"
        if not compare_digest(anchor.chain_hash, self.key.check(anchor.first)):
            return f"key anchor names another key than epoch {anchor.first}'s"
        self.epoch = anchor.first
        return None


async def _walk_anchors(
    store: AuditStore,
    key: ChainKey,
    heads: dict[int, ChainState],
    checkpoints: list[Checkpoint],
    batch: int,
    tally: _Tally,
) -> Broken | None:
    head = heads.get(ANCHOR_CHAIN)
    if head is None:
        return 0, "the anchor chain's head row is gone"
    walk = _AnchorWalk(
        key,
        heads,
        head.anchor_seq + 1,
        head.anchor_hash if head.anchor_seq else GENESIS_HASH,
        _watched(checkpoints, chain_name(ANCHOR_CHAIN)),
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
    tally.reach[chain_name(ANCHOR_CHAIN)] = ChainReach(
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


def _against_checkpoints(contents: SinkContents, tally: _Tally) -> Broken | None:
    """The first contradiction between the verified log and the checkpoints, if any."""
    if contents.problems:
        return tally.last_id, f"a checkpoint was tampered with ({contents.problems[0]})"
    problem = check_sequence(contents.checkpoints)
    if problem is not None:
        return tally.last_id, problem
    return check_log(contents.checkpoints, tally.reach)
