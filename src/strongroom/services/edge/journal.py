"""The edge's side of its audit journal: ship it to the centre, in order, exactly once.

The journal is the edge's own audit log (hash-chained under the site key, every read recorded
before it is answered). While the upstream is reachable the shipper asks the centre for the
site's head, checks that its own chain holds the same event there (the same history), verifies
each batch against the site key before it leaves, and sends the events after the head. The
centre stores a batch and its new head in one transaction, so a batch whose answer was lost is
found stored on the next round and never sent twice; a kill at any point loses nothing, since
the journal is durable and the head is the centre's.

A journal that fails to verify here, or a history the centre does not recognise, stops shipping
(retrying cannot help): the reason is in the status, the log, and the alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom.client.transport import RemoteClient
from strongroom.core.audit import ChainKey
from strongroom.core.edge_journal import MAX_BATCH, JournalHead
from strongroom.core.errors import (
    EdgeJournalBrokenError,
    EdgeJournalStaleError,
    PermissionDeniedError,
    StrongroomError,
    TamperedError,
)
from strongroom.core.logging import get_logger
from strongroom.db.audit_store import AuditStore, StoredEvent
from strongroom.services.audit.log import ChainVerifier

__all__ = ["JournalShipper", "wire_event"]

log = get_logger("strongroom.edge")

#: A batch's body stays under the centre's default request limit (256 KiB).
_MAX_BODY = 192 * 1024
_RETRY_MIN, _RETRY_MAX = 0.2, 10.0


def wire_event(stored: StoredEvent) -> dict[str, Any]:
    """One journal event as it travels: its position, links and fields (never a value:
    audit events hold none)."""
    doc = stored.event.to_dict()
    doc["timestamp"] = stored.event.timestamp.isoformat()
    return {
        "seq": stored.id,
        "prev_hash": stored.prev_hash.hex(),
        "chain_hash": stored.chain_hash.hex(),
        **doc,
    }


@dataclass
class _Saved:
    """The last head the centre confirmed, kept across restarts for the status."""

    path: Path

    def load(self) -> int:
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            return int(json.loads(self.path.read_text("utf-8"))["shipped_seq"])
        return 0

    def save(self, seq: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps({"shipped_seq": seq}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)


class JournalShipper:
    """Ships ``store``'s events (chained under ``key``) through ``client`` while ``online``."""

    def __init__(
        self,
        client: RemoteClient,
        store: AuditStore,
        key: ChainKey,
        saved: Path,
        online: asyncio.Event,
        *,
        poll: float = 0.5,
        on_broken: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.key = key
        self.online = online
        self.poll = poll
        self.on_broken = on_broken
        self._saved = _Saved(saved)
        #: The centre's head for this site, as last confirmed (persisted).
        self.shipped_seq = self._saved.load()
        #: The local journal's last event, as last looked at.
        self.local_seq = 0
        #: Events the centre stored from this process.
        self.shipped_total = 0
        #: Why shipping stopped for good (a broken journal or history), or None.
        self.stopped: str | None = None
        #: Why the last round failed (cleared by a round that succeeds).
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def unshipped(self) -> int:
        return max(0, self.local_seq - self.shipped_seq)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> None:
        """Look at the local journal's length (for the status, offline too)."""
        self.local_seq = (await self.store.chain_state()).last_seq

    async def _run(self) -> None:
        delay = _RETRY_MIN
        while self.stopped is None:
            try:
                await self.refresh()
                if self.online.is_set() and self.local_seq > self.shipped_seq:
                    await self.ship()
                self.last_error = None
                delay = _RETRY_MIN
                await asyncio.sleep(self.poll)
            except asyncio.CancelledError:
                raise
            except (EdgeJournalBrokenError, TamperedError) as exc:
                self._stop(str(exc))
            except PermissionDeniedError:
                self.last_error = "the site's credential lacks edge-sync on * at the upstream"
                log.warning("edge journal refused", error=self.last_error)
                await asyncio.sleep(_RETRY_MAX)
            except Exception as exc:  # the link or the upstream: retried, nothing is lost
                self.last_error = exc.code if isinstance(exc, StrongroomError) else "unreachable"
                await asyncio.sleep(delay)
                delay = min(_RETRY_MAX, delay * 2)

    def _stop(self, reason: str) -> None:
        self.stopped = reason
        log.critical("edge journal shipping stopped", error=reason)
        if self.on_broken is not None:
            self.on_broken(reason)

    async def ship(self) -> int:
        """One round: every event after the centre's head, in batches; the events stored."""
        answer = await self.client.request("GET", "/v1/edge/journal")
        head = JournalHead(int(answer["last_seq"]), bytes.fromhex(str(answer["last_hash"])))
        self._confirmed(head.seq)
        state = await self.store.chain_state()
        self.local_seq = state.last_seq
        await self._same_history(head, state.anchor_seq, state.anchor_hash)
        verifier = ChainVerifier(self.key, head.seq, head.hash)
        stored = 0
        after = head
        async for rows in self.store.scan(head.seq, state.last_seq, MAX_BATCH):
            for event in rows:
                broken = verifier.check(event)
                if broken is not None:
                    raise TamperedError(
                        f"the edge's audit journal fails to verify at event {broken[0]} "
                        f"({broken[1]}); it is not shipped"
                    )
            for chunk in _chunks([wire_event(r) for r in rows]):
                body = {"after_seq": after.seq, "after_hash": after.hash.hex(), "events": chunk}
                try:
                    reply = await self.client.request("POST", "/v1/edge/journal", json=body)
                except EdgeJournalStaleError:
                    return stored  # stored by an earlier round: the next one asks again
                after = JournalHead(int(chunk[-1]["seq"]), bytes.fromhex(chunk[-1]["chain_hash"]))
                stored += int(reply["stored"])
                self.shipped_total += int(reply["stored"])
                self._confirmed(int(reply["last_seq"]))
        return stored

    async def _same_history(self, head: JournalHead, anchor_seq: int, anchor: bytes) -> None:
        """The centre's head must be an event of this journal, with the same hash."""
        if head.seq == 0:
            return
        mine: bytes | None = None
        if head.seq == anchor_seq:
            mine = anchor
        elif head.seq > anchor_seq:
            async for rows in self.store.scan(head.seq - 1, head.seq, 1):
                mine = rows[0].chain_hash if rows else None
        if mine is None or mine != head.hash:
            raise EdgeJournalBrokenError(
                f"the upstream holds this site's journal up to event {head.seq}, which this "
                "edge's journal does not hold as shipped (replaced, restored or pruned): "
                "shipping stops"
            )

    def _confirmed(self, seq: int) -> None:
        if seq != self.shipped_seq:
            self.shipped_seq = seq
            self._saved.save(seq)

    def status(self) -> dict[str, Any]:
        return {
            "journal_unshipped": self.unshipped,
            "journal_shipped_seq": self.shipped_seq,
            "journal_shipped_total": self.shipped_total,
            "journal_error": self.stopped or self.last_error,
        }


def _chunks(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Events in order, cut so that no body passes the size limit."""
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for doc in events:
        length = len(json.dumps(doc, separators=(",", ":"))) + 1
        if chunks[-1] and size + length > _MAX_BODY:
            chunks.append([])
            size = 0
        chunks[-1].append(doc)
        size += length
    return [c for c in chunks if c]
