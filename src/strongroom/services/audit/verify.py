"""Checking the whole audit log: every writer chain, the anchor chain, and the checkpoints.

Each writer chain is walked from where retention left it start to its head row: every link,
every event's HMAC (which covers its id, hence its chain and position), no event missing,
none beyond the head. Every anchor that names a position of a chain must carry the hash the
walk found there. Then the anchor chain itself: gapless, every link and HMAC, each chain's
anchors covering consecutive ranges, none naming a chain or a position that is gone. A writer
that crashed leaves a tail no anchor covers: its own links and head row still check it, and
signed checkpoints (read first) catch a tail cut off behind everyone's back.

A long log is checked in ranges by worker processes (see
:mod:`strongroom.services.audit.chain_workers`): each range is walked exactly as a single
pass walks its chain, and the ranges' findings are joined in order (``ChainVerifier.join``),
so the verdict is the single pass's. The report's ``processes`` says how many took part.

Events edges shipped carry their site's own chain in their details; a site's events may be
spread over several writer chains (whichever process took each shipment), so they are put
back in the site's order before its chain is followed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strongroom.core.anchors import (
    ANCHOR_CHAIN,
    CHAIN_SPAN,
    chain_base,
    chain_name,
)
from strongroom.core.audit import GENESIS_HASH, ChainKey
from strongroom.core.checkpoint import ChainReach, Checkpoint, check_log, check_sequence
from strongroom.core.edge_journal import EdgeChains, JournalHead
from strongroom.core.logging import get_logger
from strongroom.db.audit_store import AuditStore, ChainState
from strongroom.services.audit.anchor_check import walk_anchors
from strongroom.services.audit.chain_check import Broken, ChainVerifier, verdict
from strongroom.services.audit.chain_workers import (
    RangeJob,
    RangeResult,
    WorkersFailedError,
    check_in_workers,
    plan_ranges,
)

if TYPE_CHECKING:  # not imported at run time: worker processes start faster without it
    from strongroom.services.audit.checkpoints import SinkContents

__all__ = ["PARALLEL_FROM", "Walked", "verify_log", "walk_range"]

log = get_logger("strongroom.audit")
#: Logs with fewer events are checked in this process alone: a worker costs a Python start,
#: its imports and a connection (about half a second on two busy cores), which a range of
#: fewer events would not win back.
PARALLEL_FROM = 200_000


@dataclass(slots=True)
class _Tally:
    """What verified so far, over every chain."""

    checked: int = 0
    first_id: int | None = None
    last_id: int = 0
    reach: dict[str, ChainReach] = field(default_factory=dict)
    shipped: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    processes: int = 1  # 1: this process alone; else the workers that checked the ranges

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
        answer = verdict(self.checked, self.first_id, self.last_id, broken)
        answer["processes"] = self.processes
        return answer


async def verify_log(
    store: AuditStore,
    key: ChainKey,
    contents: SinkContents | None,
    batch: int,
    *,
    parallel_from: int = PARALLEL_FROM,
    workers: int | None = None,
) -> dict[str, Any]:
    """The verdict on the whole log (``contents``: the checkpoints, read before the heads).
    From ``parallel_from`` events on, the writer chains are checked in ``workers`` processes
    (default: one per CPU) where the store can be read from another process."""
    heads = {h.chain: h for h in await store.chains()}
    checkpoints = contents.checkpoints if contents is not None else []
    tally = _Tally()
    parts: dict[int, list[RangeResult]] | None = None
    jobs = _plan(store, key, heads, checkpoints, batch, parallel_from, workers)
    if jobs:
        try:
            parts = await check_in_workers(jobs, batch)
            tally.processes = len(jobs)
        except WorkersFailedError as exc:  # the same check, in this process alone
            log.warning("audit chain checked in one process", reason=str(exc))
    for chain in sorted(c for c in heads if c != ANCHOR_CHAIN):
        chain_parts = None if parts is None else parts.get(chain, [])
        broken = await _walk_chain(store, key, heads[chain], checkpoints, batch, tally, chain_parts)
        if broken is not None:
            return tally.report(broken)
    broken = await _strays(store, heads, batch)
    if broken is None:
        watch = _watched(checkpoints, chain_name(ANCHOR_CHAIN))
        broken = await walk_anchors(store, key, heads, watch, batch, tally.reach)
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


def _plan(
    store: AuditStore,
    key: ChainKey,
    heads: dict[int, ChainState],
    checkpoints: list[Checkpoint],
    batch: int,
    parallel_from: int,
    workers: int | None,
) -> list[list[RangeJob]]:
    """Each worker's ranges; nothing when the log is short, the machine has one CPU, or no
    other process can read the store (a memory database)."""
    chains = [heads[c] for c in sorted(heads) if c != ANCHOR_CHAIN]
    count = workers if workers is not None else os.cpu_count() or 1
    location = store.location()
    if sum(h.last_seq - h.anchor_seq for h in chains) < parallel_from or count < 2:
        return []
    if location is None:
        return []
    watches = {h.chain: _watched(checkpoints, chain_name(h.chain)) for h in chains}
    return plan_ranges(location, key, chains, watches, batch, count)


@dataclass(slots=True)
class Walked:
    """A range walked: its first break, and the shipped edge events it verified."""

    broken: Broken | None
    shipped: list[dict[str, Any]]


async def walk_range(
    store: AuditStore, head: ChainState, verifier: ChainVerifier, after: int, upper: int, batch: int
) -> Walked:
    """Check the events of ``head``'s chain with after < id <= upper: each link, each HMAC,
    none beyond the head, and every anchor naming one of them (the single pass and each
    worker's range alike)."""
    last_id = chain_base(head.chain) + head.last_seq
    walked = Walked(None, [])
    async for rows in store.scan_links(after, upper, batch):
        hashes: dict[int, bytes] = {}
        broken: Broken | None = None
        check = verifier.check_link
        for event_id, prev_hash, chain_hash, body, details in rows:  # ChainLink, unpacked once
            if event_id > last_id:
                broken = (event_id, "event is beyond the chain head")
                break
            broken = check(event_id, prev_hash, chain_hash, body, details)
            if broken is not None:
                break
            hashes[event_id] = chain_hash
            if "site" in details:
                walked.shipped.append(details)
        if hashes:
            mismatch = await _against_anchors(store, head, min(hashes) - 1, max(hashes), hashes)
            broken = mismatch or broken
        if broken is not None:
            walked.broken = broken
            break
    return walked


async def _walk_chain(
    store: AuditStore,
    key: ChainKey,
    head: ChainState,
    checkpoints: list[Checkpoint],
    batch: int,
    tally: _Tally,
    parts: list[RangeResult] | None,
) -> Broken | None:
    """One writer chain, walked here or joined from the workers' ranges (``parts``)."""
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
    if parts is None:
        walked = await walk_range(store, head, verifier, start, base + CHAIN_SPAN, batch)
        broken, shipped = walked.broken, walked.shipped
    else:
        shipped = []
        for part in parts:
            broken = verifier.join(part.span)
            shipped.extend(part.shipped)
            if broken is not None:
                break
    for details in shipped:
        tally.ship(details)
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


def _against_checkpoints(contents: SinkContents, tally: _Tally) -> Broken | None:
    """The first contradiction between the verified log and the checkpoints, if any."""
    if contents.problems:
        return tally.last_id, f"a checkpoint was tampered with ({contents.problems[0]})"
    problem = check_sequence(contents.checkpoints)
    if problem is not None:
        return tally.last_id, problem
    return check_log(contents.checkpoints, tally.reach)
