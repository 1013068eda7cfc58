"""Access changes take effect in every process at once: a revoked token, a changed policy or
binding is never served from another worker's or replica's cache of verified tokens.

Each change bumps the generation ``~access`` in the shared state database (the counters of
:mod:`strongroom.db.cache_invalidation`; no secret name can contain ``~``). On PostgreSQL the
bump also NOTIFYs every process, whose LISTEN connection drops its cache on arrival; while that
connection is down, and always on SQLite, a cached token is trusted only while the counter,
read back (microseconds in SQLite, one indexed read in PostgreSQL), is unchanged.

The counter is read back at most once per :data:`RECHECK_SECONDS` (10 ms): under load that is
one read for many requests instead of one each, and another process's change still takes
effect here within those 10 ms. This process's own changes take effect at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from strongroom.db.cache_invalidation import ALL_NAMES

if TYPE_CHECKING:
    from strongroom.db.cache_invalidation import CacheGenerations

__all__ = ["ACCESS_KEY", "RECHECK_SECONDS", "AccessInvalidation"]

ACCESS_KEY = "~access"
#: How long the counter read back last is trusted: the bound on another process's access
#: change reaching this one when no notification carries it.
RECHECK_SECONDS = 0.010


class AccessInvalidation:
    """What a cached principal was filled under (its *epoch*), and the signal that ends it."""

    def __init__(
        self,
        generations: CacheGenerations | None = None,
        *,
        recheck_seconds: float = RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._generations = generations
        self._local = 0  # bumped by this process's changes and by every notification
        self._recheck = recheck_seconds
        self._clock = clock
        self._shared: object = None  # the counter as read back last ...
        self._read_at = -math.inf  # ... and when (never yet)

    async def open(self) -> None:
        if self._generations is not None:
            await self._generations.open()
            self._generations.add_listener(self._notified)

    async def close(self) -> None:
        if self._generations is not None:
            self._generations.remove_listener(self._notified)
            await self._generations.close()

    @property
    def pushed(self) -> bool:
        """True while other processes' changes arrive as notifications (PostgreSQL LISTEN)."""
        return bool(getattr(self._generations, "listening", False))

    async def epoch(self) -> object:
        """Equal to a cached entry's epoch only while nothing changed since it was filled."""
        if self._generations is None or self.pushed:
            return self._local
        now = self._clock()
        if now - self._read_at >= self._recheck:
            self._shared = await self._generations.current(ACCESS_KEY)
            self._read_at = now
        return (self._local, self._shared)

    @property
    def shared_key(self) -> str | None:
        """The generation a store bumps in the transaction of an access change (None: this
        process alone holds the state, as the memory profile does)."""
        return ACCESS_KEY if self._generations is not None else None

    def committed(self) -> None:
        """A change whose generation bump committed with it: this process's cache drops now
        (the others at the notification or at their next generation check)."""
        self._local += 1

    async def changed(self) -> None:
        """Announce a committed change (this process's cache drops at once; others at the
        notification or at their next generation check)."""
        self._local += 1
        if self._generations is not None:
            await self._generations.bump(ACCESS_KEY)

    def _notified(self, name_key: str) -> None:
        if name_key in (ACCESS_KEY, ALL_NAMES):
            self._local += 1
