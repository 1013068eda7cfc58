"""The change feed: every committed change to a secret, in order, resumable by event id.

The feed is read from the audit trail, which every replica and worker of the service writes to
the same database: an event's id is its audit row's id, so a client that reconnects with the
last id it saw gets every change after it, whichever process made the change. One poller per
process reads new rows (only while someone listens) and fans them out; each listener replays
what it missed from the trail first, then follows the poller.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strongroom.core.audit import AuditAction, AuditResult
from strongroom.core.errors import ConfigurationError
from strongroom.core.logging import get_logger
from strongroom.db.audit_store import AuditStore, StoredEvent

__all__ = ["FEED_KINDS", "ChangeFeed", "FeedEvent", "FeedOverflow", "feed_event", "feed_for"]

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
_POLL_SECONDS = 0.02
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


def feed_event(stored: StoredEvent) -> FeedEvent | None:
    """The feed's view of an audit row: successful changes to a named secret only."""
    event = stored.event
    kind = FEED_KINDS.get(event.action)
    if kind is None or event.result is AuditResult.FAILURE or not event.resource_name:
        return None
    version = event.details.get("version") if isinstance(event.details, dict) else None
    return FeedEvent(
        id=stored.id,
        kind=kind,
        name=event.resource_name,
        version=version if isinstance(version, str) else None,
        at=event.timestamp,
    )


class ChangeFeed:
    """The feed of one wiring's audit store."""

    def __init__(self, store: AuditStore, *, poll_seconds: float = _POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self.position = 0
        self._listeners: dict[asyncio.Queue[FeedEvent], _Listener] = {}
        self._task: asyncio.Task[None] | None = None

    async def _start(self) -> None:
        if self._task is None or self._task.done():
            self.position = await self.store.max_id()
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self._listeners:
            try:
                newest = await self.store.max_id()
                if newest > self.position:
                    async for batch in self.store.scan(self.position, newest, _BATCH):
                        for stored in batch:
                            found = feed_event(stored)
                            if found is not None:
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
            last = self.position if after_id is None else after_id
            upper = self.position
            if last < upper:
                async for batch in self.store.scan(last, upper, _BATCH):
                    for stored in batch:
                        found = feed_event(stored)
                        if found is not None:
                            yield found
                last = upper
            while True:
                if listener.overflowed and queue.empty():
                    raise FeedOverflow
                try:
                    item = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    yield None
                    continue
                if item.id > last:
                    last = item.id
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
        found = _feeds[app] = ChangeFeed(app.audit.store)
    return found
