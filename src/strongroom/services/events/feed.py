"""The change feed: every committed change to a secret, in order, resumable by event id.

The feed is read from the audit trail, which every replica and worker of the service writes to
the same database. Each writer appends to a chain of its own, and every batch that changes a
secret is anchored into the global anchor chain as it is committed: the anchors' order is the
order of the changes, whichever process made them. An event's id is its audit row's id; a
client that reconnects with the last id it saw gets every change after it (from the anchor
that covers that id on). One poller per process follows new anchors (only while someone
listens) and fans their changes out; each listener replays what it missed first, then follows
the poller.

An event is handed out no sooner than ``hold_seconds`` after this process first saw it: the
stores' read window (:mod:`strongroom.backends.recent_rows`), so a client that re-reads a
secret because the feed named it reaches a worker whose row is at least as new as the change,
whichever worker answers. (Without the hold, a remote client's cache or an edge replica could
keep the version the change replaced until the next change.)
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strongroom.core.anchors import ANCHOR_CHAIN, chain_base
from strongroom.core.audit import AuditAction, AuditResult
from strongroom.core.errors import ConfigurationError
from strongroom.core.logging import get_logger
from strongroom.db.audit_store import AuditStore, StoredEvent

__all__ = [
    "FEED_KINDS",
    "NOTICE_KINDS",
    "ChangeFeed",
    "FeedEvent",
    "FeedOverflow",
    "feed_event",
    "feed_for",
]

log = get_logger("strongroom.feed")

#: Audited actions that change a secret, as feed event kinds.
FEED_KINDS: dict[AuditAction, str] = {
    AuditAction.CREATE: "secret.created",
    AuditAction.UPDATE: "secret.updated",
    AuditAction.DELETE: "secret.deleted",
    AuditAction.RECOVER: "secret.recovered",
    AuditAction.PURGE: "secret.purged",
    AuditAction.ROTATE: "secret.rotated",
    AuditAction.REVOKE: "secret.revoked",
}
#: Expiry notices (``AuditAction.EXPIRY``, by their ``operation``): on the feed, yet no change.
NOTICE_KINDS = frozenset({"secret.near_expiry", "secret.expired"})
#: Bookkeeping of a rotation schedule (configure, force, a worker's claim or release): audited
#: as UPDATE of the secret, but its value and properties stay as they were.
_SCHEDULE_PREFIX = "rotation."
#: The revocation steps that revoke (``execute``; rows from before steps were named carry
#: none): a request, its approval and break-glass reviews are audited as REVOKE too.
_REVOKED = frozenset({"execute", None})
_POLL_SECONDS = 0.02
_END = 2**63 - 1
_BATCH = 500
_QUEUE = 10_000


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One change: its id (resume point), kind, secret and version; never a value."""

    id: int
    kind: str
    name: str
    version: str | None
    at: datetime
    anchor: int = 0  # the anchor that covers it: where it stands in the feed's order

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "name": self.name, "version": self.version,
            "at": self.at.isoformat(),
        }  # fmt: skip


@dataclass(slots=True)
class _Listener:
    overflowed: bool = False


class FeedOverflow(Exception):
    """A listener fell too far behind; it ends, and its client resumes from its last id."""


def feed_event(stored: StoredEvent, anchor: int = 0) -> FeedEvent | None:
    """The feed's view of an audit row: successful changes to a named secret only."""
    event = stored.event
    details = event.details if isinstance(event.details, dict) else {}
    operation = details.get("operation")
    kind = FEED_KINDS.get(event.action)
    if event.action is AuditAction.EXPIRY and operation in ("near_expiry", "expired"):
        kind = f"secret.{operation}"
    if kind is None or event.result is AuditResult.FAILURE or not event.resource_name:
        return None
    if event.action is AuditAction.UPDATE and str(operation).startswith(_SCHEDULE_PREFIX):
        return None
    if event.action is AuditAction.REVOKE and operation not in _REVOKED:
        return None  # a request waiting for approval, or a break-glass review: nothing revoked
    version = details.get("version")
    return FeedEvent(
        id=stored.id,
        kind=kind,
        name=event.resource_name,
        version=version if isinstance(version, str) else None,
        at=event.timestamp,
        anchor=anchor,
    )


class ChangeFeed:
    """The feed of one wiring's audit store."""

    def __init__(
        self, store: AuditStore, *, poll_seconds: float = _POLL_SECONDS, hold_seconds: float = 0.0
    ) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.hold_seconds = hold_seconds
        self.position = 0
        self._listeners: dict[asyncio.Queue[FeedEvent], _Listener] = {}
        self._task: asyncio.Task[None] | None = None

    async def _anchor_head(self) -> int:
        for state in await self.store.chains():
            if state.chain == ANCHOR_CHAIN:
                return state.last_seq
        return 0

    async def _changes(
        self, after_seq: int, up_to_seq: int, after_id: int = 0
    ) -> AsyncIterator[FeedEvent]:
        """The changes anchored by anchors after_seq < seq <= up_to_seq, in feed order (in the
        first of them, only events after ``after_id``)."""
        async for anchors in self.store.anchors(after_seq, up_to_seq, _BATCH, changes_only=True):
            for anchor in anchors:
                base = chain_base(anchor.chain)
                start = max(base + anchor.first - 1, after_id if anchor.seq == after_seq + 1 else 0)
                async for batch in self.store.scan(start, base + anchor.last, _BATCH):
                    for stored in batch:
                        found = feed_event(stored, anchor.seq)
                        if found is not None:
                            yield found

    async def _hold(self) -> None:
        """Wait out the read window after changes were seen (see the module documentation)."""
        if self.hold_seconds > 0:
            await asyncio.sleep(self.hold_seconds)

    async def _start(self) -> None:
        if self._task is None or self._task.done():
            head = await self._anchor_head()
            await self._hold()  # what a listener replays up to head was seen a window ago
            if self._task is None or self._task.done():
                self.position = head
                self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self._listeners:
            try:
                newest = await self._anchor_head()
                if newest > self.position:
                    seen = [found async for found in self._changes(self.position, newest)]
                    if seen:
                        await self._hold()
                    for found in seen:
                        self._publish(found)
                    self.position = newest
            except Exception as exc:  # the store is down: listeners wait, the loop retries
                log.warning("change feed cannot read the trail", error=type(exc).__name__)
            await asyncio.sleep(self.poll_seconds)

    def _publish(self, event: FeedEvent) -> None:
        for queue, listener in list(self._listeners.items()):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                listener.overflowed = True  # it ends once drained; its client resumes
                del self._listeners[queue]

    async def follow(
        self, after_id: int | None, *, heartbeat: float = 15.0
    ) -> AsyncIterator[FeedEvent | None]:
        """Events after ``after_id`` (None: from now on), replayed from the trail and then
        live; ``None`` is yielded after ``heartbeat`` seconds of silence (a keep-alive).
        Raises FeedOverflow when the listener fell too far behind."""
        queue: asyncio.Queue[FeedEvent] = asyncio.Queue(_QUEUE)
        listener = _Listener()
        await self._start()
        self._listeners[queue] = listener
        try:
            upper = self.position
            last = (upper, _END)
            if after_id is not None:
                # Ids start at 1: anything lower asks for the whole feed kept so far.
                covering = await self.store.anchor_covering(after_id) if after_id > 0 else 1
                if covering is not None and covering <= upper:
                    async for found in self._changes(covering - 1, upper, after_id):
                        yield found
                elif covering is not None:  # anchored since the poller last looked
                    last = (covering, after_id)
            while True:
                if listener.overflowed and queue.empty():
                    raise FeedOverflow
                try:
                    item = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    yield None
                    continue
                if (item.anchor, item.id) > last:
                    last = (item.anchor, item.id)
                    yield item
        finally:
            self._listeners.pop(queue, None)


_feeds: weakref.WeakKeyDictionary[Any, ChangeFeed] = weakref.WeakKeyDictionary()


def feed_for(app: Any) -> ChangeFeed:
    """The change feed of a wiring (one per wiring and process)."""
    found = _feeds.get(app)
    if found is None:
        if app.audit.store is None:
            raise ConfigurationError("the change feed reads the audit trail, which is off")
        found = _feeds[app] = ChangeFeed(
            app.audit.store, hold_seconds=app.settings.read_window_seconds
        )
    return found
