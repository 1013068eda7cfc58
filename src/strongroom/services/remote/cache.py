"""The remote profile's in-process cache of opaque values, kept fresh by the change feed.

A value is cached only while the feed is connected, for at most the TTL, and dropped as soon as
the feed reports a change to its secret (any kind: update, rotation, revocation, deletion...).
When the feed connection is lost nothing new is cached, and what is cached expires within its
TTL; on reconnect the feed resumes from the last event id, so no change is missed. Reads served
from the cache do not reach the server, so they are not in its audit trail (a TTL of 0 turns
the cache off and audits every read).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from strongroom.backends.base import name_key
from strongroom.client.transport import RemoteClient
from strongroom.core.errors import StrongroomError
from strongroom.core.logging import get_logger
from strongroom.core.models import SecretBundle

__all__ = ["FeedFollower", "ValueCache", "follower_for", "parse_sse", "stop_following"]

log = get_logger("strongroom.client.cache")

_RECONNECT_MIN, _RECONNECT_MAX = 0.05, 5.0
#: The feed's expiry notices (``services.events.feed.NOTICE_KINDS``): no change to a value.
_NOTICES = frozenset({"secret.near_expiry", "secret.expired"})


@dataclass(slots=True)
class _Entry:
    bundle: SecretBundle
    stored_at: float


@dataclass
class ValueCache:
    """Bounded LRU of (name, version) -> bundle, each for ``ttl`` seconds at most."""

    ttl: float
    max_entries: int
    clock: Callable[[], float] = time.monotonic
    _entries: OrderedDict[tuple[str, str | None], _Entry] = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0

    def get(self, name: str, version: str | None) -> SecretBundle | None:
        key = (name_key(name), version)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        if self.clock() - entry.stored_at >= self.ttl:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.bundle

    def put(self, name: str, version: str | None, bundle: SecretBundle) -> None:
        key = (name_key(name), version)
        self._entries[key] = _Entry(bundle, self.clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, name: str) -> None:
        """Forget every version of ``name``."""
        key = name_key(name)
        for cached in [k for k in self._entries if k[0] == key]:
            del self._entries[cached]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str, str]]:
    """Server-Sent Events from a line stream: (id, event, data) per event."""
    event_id: str | None = None
    kind, data = "message", list[str]()
    async for line in lines:
        if line == "":
            if data:
                yield event_id, kind, "\n".join(data)
            kind, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)


class FeedFollower:
    """Follows ``/v1/events/feed`` in the background and drops cached values it names."""

    def __init__(
        self,
        client: RemoteClient,
        cache: ValueCache,
        *,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        #: Called with each changed secret's name (``strongroom run --watch``).
        self.on_change = on_change
        self.last_id: str | None = None
        self.connected = asyncio.Event()
        self.events_seen = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.connected.clear()

    async def _run(self) -> None:
        delay = _RECONNECT_MIN
        while not self.client.closed:
            try:
                await self._follow()
                delay = _RECONNECT_MIN
            except (StrongroomError, OSError, ValueError) as exc:
                log.info("change feed lost", error=type(exc).__name__)
            except Exception as exc:  # anything else that ends the stream: reconnect
                log.info("change feed lost", error=type(exc).__name__)
            self.connected.clear()
            self.cache.clear()  # what happened while away is replayed, but be safe
            await asyncio.sleep(delay)
            delay = min(_RECONNECT_MAX, delay * 2)

    async def _follow(self) -> None:
        headers = {"Last-Event-ID": self.last_id} if self.last_id is not None else None
        async with self.client.stream("/v1/events/feed", headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                self.client.raise_for(response, "/v1/events/feed")
            self.connected.set()
            async for event_id, kind, data in parse_sse(response.aiter_lines()):
                name = json.loads(data).get("name")
                # An expiry notice changes nothing (each cached read checks the dates).
                if isinstance(name, str) and kind not in _NOTICES:
                    self.cache.drop(name)
                    if self.on_change is not None:
                        self.on_change(name)
                if event_id is not None:
                    self.last_id = event_id
                self.events_seen += 1


_followers: weakref.WeakKeyDictionary[RemoteClient, FeedFollower] = weakref.WeakKeyDictionary()


def follower_for(client: RemoteClient) -> FeedFollower | None:
    """The cache of ``client`` and the feed that keeps it fresh (None: caching is off)."""
    if client.config.cache_ttl <= 0:
        return None
    found = _followers.get(client)
    if found is None:
        cache = ValueCache(client.config.cache_ttl, client.config.cache_max_entries)
        found = _followers[client] = FeedFollower(client, cache)
    if not client.closed:
        found.start()
    return found


async def stop_following(client: RemoteClient) -> None:
    """End the feed of ``client`` (before the client closes)."""
    found = _followers.pop(client, None)
    if found is not None:
        await found.stop()
