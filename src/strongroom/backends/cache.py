"""A read-through cache in front of a remote secret store (Azure Key Vault).

Key Vault throttles a vault at about 4,000 GETs per 10 seconds and asks clients to cache.
:class:`CachedStore` wraps any :class:`~strongroom.backends.base.SecretStore` and keeps, per
process, the answers of ``get_version`` and ``get_properties`` for ``ttl_seconds`` in an LRU of
at most ``max_entries``. Values stay the store's :class:`~strongroom.core.models.SecretValue`
objects: never pickled, copied or turned into text.

Correctness rules, in order of importance:

* A change made through strongroom (write, property update, delete, recover, purge, key
  rotation, revocation) drops this process's entries for the name and increments the name's
  generation in the shared state database (:mod:`strongroom.db.cache_invalidation`) before it
  returns, also when the remote call failed (it may have been applied). A cached entry is
  served only while the generations it was filled under are unchanged, so once a change has
  returned no process serves what it replaced, whatever happens to notifications.
* A change is refused before it reaches the remote store when its generation cannot be
  incremented (the state database is down): the other processes could not be told, so the
  store would diverge from their caches. If the increment after the change fails (the
  database went away during it), the change raises StoreUnavailableError saying so.
* A revoked version is never cached, so never served from the cache or stale.
* When the remote store cannot answer a read (StoreUnavailableError, or RateLimitedError once
  the SDK's own Retry-After retries are spent), an entry at most ``ttl_seconds +
  stale_seconds`` old may answer instead, but only if its generations could be read and are
  unchanged. A generation that cannot be read proves nothing: the entry may have been revoked
  in another process, so the read fails rather than risk serving it. Writes are never absorbed.
* Concurrent misses of one key share one remote call (started under the same generations).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar, cast

from strongroom.backends.base import (
    KeyRotationResult,
    RewrapProgress,
    SecretStore,
    WriteMode,
    name_key,
)
from strongroom.backends.cache_entries import (
    CacheEntries,
    CacheKey,
    Entry,
    Flight,
    FlightKey,
    caller_copy,
    is_revoked,
)
from strongroom.core.errors import (
    ConfigurationError,
    RateLimitedError,
    StoreUnavailableError,
    StrongroomError,
)
from strongroom.core.logging import get_logger
from strongroom.core.metrics import Metrics
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    VersionProperties,
)
from strongroom.db.cache_invalidation import ALL_NAMES, CacheGenerations, Generation

__all__ = ["CachedStore"]

log = get_logger("strongroom.cache")

T = TypeVar("T")
R = TypeVar("R", SecretBundle, VersionProperties)

_BUNDLE = "bundle"
_PROPERTIES = "properties"

#: What a remote store raises when it cannot answer now: the cases a stale entry may cover.
_UNAVAILABLE = (StoreUnavailableError, RateLimitedError)
#: Pauses before retrying a generation increment that failed after the change was applied.
_BROADCAST_RETRIES = (0.05, 0.2, 0.5)


class CachedStore:
    """``inner`` with a per-process read-through cache; see the module documentation.

    ``generations`` is the state database's change counters, shared by every process of the
    deployment; ``None`` (the memory profile, or one process) invalidates this process only.
    The cache opens and closes ``generations`` with ``inner``.
    """

    def __init__(
        self,
        inner: SecretStore,
        *,
        ttl_seconds: float,
        max_entries: int,
        stale_seconds: float,
        generations: CacheGenerations | None = None,
        metrics: Metrics | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl_seconds > 0:
            raise ConfigurationError("the cache TTL must be more than 0 seconds")
        if max_entries < 1:
            raise ConfigurationError("the cache must hold at least one entry")
        if not stale_seconds >= 0:
            raise ConfigurationError("the cache's stale period cannot be negative")
        self.inner = inner
        self.backend = inner.backend
        self.ttl_seconds = float(ttl_seconds)
        self.max_entries = max_entries
        self.stale_seconds = float(stale_seconds)
        self.generations = generations
        self._metrics = metrics
        self._now = now
        self._entries = CacheEntries(max_entries, ttl_seconds + stale_seconds, now)
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        await self.inner.open()
        if self.generations is None:
            return
        try:
            await self.generations.open()
        except BaseException:
            await self.inner.close()
            raise
        self.generations.add_listener(self._on_remote_change)

    async def close(self) -> None:
        try:
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)
            if self.generations is not None:
                self.generations.remove_listener(self._on_remote_change)
                await self.generations.close()
        finally:
            self._entries.drop_all()
            await self.inner.close()

    # -- introspection (tests, diagnostics) -----------------------------------------------

    @property
    def entry_count(self) -> int:
        return len(self._entries.items)

    def is_cached(self, name: str, version: str | None = None, *, properties: bool = False) -> bool:
        """Whether this process holds an entry for the read (fresh, stale or superseded)."""
        kind = _PROPERTIES if properties else _BUNDLE
        return (kind, name_key(name), version or None) in self._entries.items

    # -- cached reads ---------------------------------------------------------------------

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        return await self._read(
            _BUNDLE, name, version, lambda: self.inner.get_version(name, version)
        )

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        return await self._read(
            _PROPERTIES, name, version, lambda: self.inner.get_properties(name, version)
        )

    async def _read(
        self, kind: str, name: str, version: str | None, fetch: Callable[[], Awaitable[R]]
    ) -> R:
        key: CacheKey = (kind, name_key(name), version or None)
        verified, generation = await self._generation(key[1])
        entry = self._entries.items.get(key)
        if entry is not None and verified and entry.generation != generation:
            self._entries.forget(key)  # superseded by a change in some process
            entry = None
        if entry is not None and verified and self._now() - entry.filled_at < self.ttl_seconds:
            self._entries.items.move_to_end(key)
            self._inc("cache_hits_total")
            return caller_copy(cast(R, entry.result))
        self._inc("cache_misses_total")
        try:
            if not verified:
                # Nothing to check a later hit against: ask the store, cache nothing.
                return await fetch()
            return caller_copy(await self._shared_fetch(key, generation, fetch))
        except _UNAVAILABLE:
            stale = await self._stale(key)
            if stale is None:
                raise
            self._inc("cache_stale_served_total")
            return caller_copy(cast(R, stale))
        except StrongroomError:
            self._entries.forget(key)  # not found, deleted, disabled...: what was cached is over
            raise

    async def _generation(self, key: str) -> tuple[bool, Generation | None]:
        """(whether the generations could be read, what they are)."""
        if self.generations is None:
            return True, None
        try:
            return True, await self.generations.current(key)
        except StoreUnavailableError:
            return False, None

    async def _shared_fetch(
        self, key: CacheKey, generation: Generation | None, fetch: Callable[[], Awaitable[R]]
    ) -> R:
        """Join the remote read of ``key`` started under the same generations, or start one.
        A reader that saw a newer generation never joins an older read."""
        flight_key: FlightKey = (key, generation)
        running = self._entries.flights.get(flight_key)
        if running is None:
            flight = Flight(key[1])
            task = asyncio.ensure_future(self._fill(key, generation, fetch, flight))
            running = self._entries.flights[flight_key] = (flight, task)
            task.add_done_callback(functools.partial(self._entries.landed, flight_key, flight))
        return cast(R, await asyncio.shield(running[1]))

    async def _fill(
        self,
        key: CacheKey,
        generation: Generation | None,
        fetch: Callable[[], Awaitable[R]],
        flight: Flight,
    ) -> R:
        started = self._now()
        result = await fetch()
        if flight.valid and not is_revoked(result):
            self._entries.store(key, Entry(result, generation, started))
        return result

    async def _stale(self, key: CacheKey) -> SecretBundle | VersionProperties | None:
        """The entry for ``key`` if it may stand in for a remote store that cannot answer."""
        if self.stale_seconds <= 0:
            return None
        entry = self._entries.items.get(key)
        if entry is None or is_revoked(entry.result):
            return None
        if self._now() - entry.filled_at > self.ttl_seconds + self.stale_seconds:
            self._entries.forget(key)
            return None
        # Checked now, after the failure: a change attempted meanwhile (even one that failed
        # against the same outage) bumped the generation, and its outcome is unknown.
        verified, generation = await self._generation(key[1])
        if not verified or self._entries.items.get(key) is not entry:
            return None
        if entry.generation != generation:
            return None
        return entry.result

    def _drop(self, key: str) -> None:
        if key == ALL_NAMES:
            self._entries.drop_all()
        else:
            self._entries.drop_name(key)
        self._inc("cache_invalidations_total")

    def _on_remote_change(self, key: str) -> None:
        """A notification from another process (PostgreSQL): drop early, check anyway."""
        self._drop(key)

    # -- changes --------------------------------------------------------------------------

    async def _change(self, key: str, change: Callable[[], Awaitable[T]]) -> T:
        """Run a change of ``key`` (a name key, or ALL_NAMES): announced before it reaches the
        remote store, and invalidated everywhere before it returns, whatever its outcome."""
        await self._announce(key)
        try:
            result = await change()
        except Exception as exc:
            await self._invalidate_after_failure(key, exc)
            raise
        except BaseException:  # cancelled mid-call: the store may have applied it
            self._drop(key)
            self._spawn(self._broadcast_quietly(key))
            raise
        self._drop(key)
        await self._broadcast(key)
        return result

    async def _announce(self, key: str) -> None:
        if self.generations is None:
            return
        try:
            await self.generations.bump(key)
        except StoreUnavailableError as exc:
            raise StoreUnavailableError(
                "change refused: the cache generations cannot be updated, so other processes "
                "could not be told of it (nothing was changed)"
            ) from exc

    async def _broadcast(self, key: str) -> None:
        if self.generations is None:
            return
        for pause in (*_BROADCAST_RETRIES, None):
            try:
                await self.generations.bump(key)
            except StoreUnavailableError as exc:
                if pause is None:
                    raise StoreUnavailableError(
                        "the change was made, but other processes could not be told: they may "
                        f"serve the previous state for up to {self.ttl_seconds:g} s"
                    ) from exc
                await asyncio.sleep(pause)
            else:
                return

    async def _broadcast_quietly(self, key: str) -> None:
        try:
            await self._broadcast(key)
        except StoreUnavailableError as exc:
            log.warning("cache invalidation not broadcast", error=type(exc).__name__)

    async def _invalidate_after_failure(self, key: str, failure: Exception) -> None:
        self._drop(key)
        try:
            await self._broadcast(key)
        except StoreUnavailableError as exc:
            failure.add_note(f"and the cache invalidation failed: {exc}")

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        return await self._change(
            name_key(new.name), lambda: self.inner.write_version(new, value, mode)
        )

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        return await self._change(
            name_key(name), lambda: self.inner.update_properties(name, version, changes)
        )

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        return await self._change(
            name_key(name),
            lambda: self.inner.delete(name, deleted_at=deleted_at, purge_at=purge_at),
        )

    async def recover(self, name: str) -> VersionProperties:
        return await self._change(name_key(name), lambda: self.inner.recover(name))

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        await self._change(
            name_key(name), lambda: self.inner.purge(name, deleted_only=deleted_only)
        )

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        return await self._change(name_key(name), lambda: self.inner.revoke_all(name, revoked_at))

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        return await self._change(ALL_NAMES, lambda: self.inner.rotate_key(progress))

    async def purge_expired(self, now: datetime) -> int:
        """Not announced in advance, and invalidates everything only when something was
        purged: the manager calls it before every create, recover and deleted-listing, and a
        fleet-wide flush each time would defeat the cache. (Only soft-deleted secrets are
        purged, and their entries were already superseded when they were deleted.)"""
        try:
            purged = await self.inner.purge_expired(now)
        except Exception as exc:
            await self._invalidate_after_failure(ALL_NAMES, exc)
            raise
        if purged:
            self._drop(ALL_NAMES)
            await self._broadcast(ALL_NAMES)
        return purged

    # -- passed through ---------------------------------------------------------------------

    async def list_secrets(self) -> list[VersionProperties]:
        return await self.inner.list_secrets()

    async def list_versions(self, name: str) -> list[VersionProperties]:
        return await self.inner.list_versions(name)

    async def get_deleted(self, name: str) -> DeletedSecret:
        return await self.inner.get_deleted(name)

    async def list_deleted(self) -> list[DeletedSecret]:
        return await self.inner.list_deleted()

    async def key_version(self) -> int:
        return await self.inner.key_version()

    async def count(self) -> int:
        return await self.inner.count()

    # -- metrics ----------------------------------------------------------------------------

    def _inc(self, name: str) -> None:
        if self._metrics is not None:
            self._metrics.inc(name)
