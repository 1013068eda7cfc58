"""The cache's bookkeeping: entries in LRU order with an index by name, and the remote reads
in flight, so a change to a name drops both at once. No I/O, no policy: ``CachedStore`` decides
what may be stored and served."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from strongroom.core.models import SecretBundle, VersionProperties
from strongroom.db.cache_invalidation import Generation

__all__ = ["CacheEntries", "CacheKey", "Entry", "Flight", "FlightKey", "caller_copy", "is_revoked"]

#: (what was read, name key, version or None for the current one)
CacheKey = tuple[str, str, str | None]
#: A cache key and the generations its remote read started under.
FlightKey = tuple[CacheKey, Generation | None]


@dataclass(slots=True)
class Entry:
    result: SecretBundle | VersionProperties
    generation: Generation | None  # None: no shared generations (single process)
    filled_at: float  # when the remote call that produced it started


class Flight:
    """One remote read shared by the concurrent readers of a key; a change to the name while
    it runs makes it ``valid = False`` (its answer is returned, not cached)."""

    __slots__ = ("name_key", "valid")

    def __init__(self, key: str) -> None:
        self.name_key = key
        self.valid = True


class CacheEntries:
    """At most ``max_entries`` entries, none kept longer than ``keep_seconds`` (swept at most
    once per that period, so plaintext is not kept longer than it can be used)."""

    def __init__(self, max_entries: int, keep_seconds: float, now: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self.keep_seconds = keep_seconds
        self.items: OrderedDict[CacheKey, Entry] = OrderedDict()
        self.flights: dict[FlightKey, tuple[Flight, asyncio.Future[Any]]] = {}
        self._by_name: dict[str, set[CacheKey]] = {}
        self._now = now
        self._swept_at = now()

    def store(self, key: CacheKey, entry: Entry) -> None:
        self._sweep()
        self.items[key] = entry
        self.items.move_to_end(key)
        self._by_name.setdefault(key[1], set()).add(key)
        while len(self.items) > self.max_entries:
            oldest, _ = self.items.popitem(last=False)
            self._unindex(oldest)

    def _sweep(self) -> None:
        now = self._now()
        if now - self._swept_at < self.keep_seconds:
            return
        self._swept_at = now
        for key in [k for k, e in self.items.items() if now - e.filled_at > self.keep_seconds]:
            self.forget(key)

    def forget(self, key: CacheKey) -> None:
        if self.items.pop(key, None) is not None:
            self._unindex(key)

    def _unindex(self, key: CacheKey) -> None:
        keys = self._by_name.get(key[1])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_name[key[1]]

    def drop_name(self, key: str) -> None:
        """Every entry of the name, and every read of it in flight (answered, not cached)."""
        for cached in self._by_name.pop(key, ()):
            self.items.pop(cached, None)
        for flight_key, (flight, _task) in list(self.flights.items()):
            if flight.name_key == key:
                flight.valid = False
                del self.flights[flight_key]

    def drop_all(self) -> None:
        self.items.clear()
        self._by_name.clear()
        for flight, _task in self.flights.values():
            flight.valid = False
        self.flights.clear()

    def landed(self, flight_key: FlightKey, flight: Flight, task: Any) -> None:
        """A remote read ended: it no longer takes new readers."""
        running = self.flights.get(flight_key)
        if running is not None and running[0] is flight:
            del self.flights[flight_key]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every reader was cancelled


R = TypeVar("R", SecretBundle, VersionProperties)


def is_revoked(result: SecretBundle | VersionProperties) -> bool:
    props = result.properties if isinstance(result, SecretBundle) else result
    return props.revoked_at is not None


def caller_copy(result: R) -> R:
    """What a caller gets: its own properties (tags are a mutable dict) around the same opaque
    value object."""
    if isinstance(result, SecretBundle):
        props = result.properties
        return SecretBundle(replace(props, tags=dict(props.tags)), result.value)
    return replace(result, tags=dict(result.tags))
