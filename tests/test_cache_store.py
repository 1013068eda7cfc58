"""The read-through cache in front of remote stores (strongroom.backends.cache).

A counting wrapper around MemoryStore stands in for Key Vault: it counts every call (so a hit is
seen to avoid the remote store) and can be switched "down" (StoreUnavailableError) or
"throttled" (RateLimitedError). Two CachedStore instances over ONE shared inner store, each with
its own CacheGenerations on the same SQLite file or PostgreSQL schema, stand in for two
processes; one test also runs a real second process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpers_settings import PG_URL
from strongroom.backends.base import KeyRotationResult, RewrapProgress, WriteMode
from strongroom.backends.cache import CachedStore
from strongroom.backends.memory import MemoryStore
from strongroom.backends.sqlite import SqliteStore
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import (
    ConfigurationError,
    RateLimitedError,
    SecretNotFoundError,
    StoreUnavailableError,
)
from strongroom.core.metrics import Metrics
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    SecretType,
    VersionProperties,
)
from strongroom.db.cache_invalidation import (
    ALL_NAMES,
    CHANNEL,
    CacheGenerations,
    Generation,
    InvalidationListener,
    PostgresCacheGenerations,
    SqliteCacheGenerations,
)
from strongroom.db.sqlite_db import SqliteDatabase

T0 = datetime(2025, 1, 1, tzinfo=UTC)


# -- test doubles -----------------------------------------------------------------------------


class CountingStore:
    """MemoryStore that counts calls and can be made unavailable or throttled on demand."""

    backend = "remote-test"

    def __init__(self, inner: MemoryStore | None = None) -> None:
        self.inner = inner or MemoryStore(MasterKey.generate()[0])
        self.calls: Counter[str] = Counter()
        self.down = False
        self.throttled = False
        #: When set, get_version reads its answer, then waits here before returning it.
        self.hold_reads: asyncio.Event | None = None
        self.reading = asyncio.Event()
        #: Awaited at the start of every call (something that happens "meanwhile").
        self.during_call: Callable[[], Awaitable[None]] | None = None

    async def _run(self, method: str, call: Callable[[], Awaitable[Any]]) -> Any:
        self.calls[method] += 1
        if self.during_call is not None:
            await self.during_call()
        if self.down:
            raise StoreUnavailableError("the vault is down (test)")
        if self.throttled:
            raise RateLimitedError("throttled (test)", 5.0)
        return await call()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        result: VersionProperties = await self._run(
            "write_version", lambda: self.inner.write_version(new, value, mode)
        )
        return result

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        bundle: SecretBundle = await self._run(
            "get_version", lambda: self.inner.get_version(name, version)
        )
        if self.hold_reads is not None:
            self.reading.set()
            await self.hold_reads.wait()
        return bundle

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        result: VersionProperties = await self._run(
            "get_properties", lambda: self.inner.get_properties(name, version)
        )
        return result

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        result: VersionProperties = await self._run(
            "update_properties", lambda: self.inner.update_properties(name, version, changes)
        )
        return result

    async def list_secrets(self) -> list[VersionProperties]:
        result: list[VersionProperties] = await self._run("list_secrets", self.inner.list_secrets)
        return result

    async def list_versions(self, name: str) -> list[VersionProperties]:
        result: list[VersionProperties] = await self._run(
            "list_versions", lambda: self.inner.list_versions(name)
        )
        return result

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        result: DeletedSecret = await self._run(
            "delete", lambda: self.inner.delete(name, deleted_at=deleted_at, purge_at=purge_at)
        )
        return result

    async def get_deleted(self, name: str) -> DeletedSecret:
        result: DeletedSecret = await self._run("get_deleted", lambda: self.inner.get_deleted(name))
        return result

    async def list_deleted(self) -> list[DeletedSecret]:
        result: list[DeletedSecret] = await self._run("list_deleted", self.inner.list_deleted)
        return result

    async def recover(self, name: str) -> VersionProperties:
        result: VersionProperties = await self._run("recover", lambda: self.inner.recover(name))
        return result

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        await self._run("purge", lambda: self.inner.purge(name, deleted_only=deleted_only))

    async def purge_expired(self, now: datetime) -> int:
        result: int = await self._run("purge_expired", lambda: self.inner.purge_expired(now))
        return result

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        result: KeyRotationResult = await self._run(
            "rotate_key", lambda: self.inner.rotate_key(progress)
        )
        return result

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        result: int = await self._run("revoke_all", lambda: self.inner.revoke_all(name, revoked_at))
        return result

    async def key_version(self) -> int:
        result: int = await self._run("key_version", self.inner.key_version)
        return result

    async def count(self) -> int:
        result: int = await self._run("count", self.inner.count)
        return result


class FakeGenerations:
    """In-memory CacheGenerations sharing one dict (two instances = two processes) whose reads
    and increments can be made to fail."""

    def __init__(self, counters: dict[str, int] | None = None) -> None:
        self.counters: dict[str, int] = counters if counters is not None else {}
        self.reads_fail = False
        #: Outcomes of the next increments (False: fail); empty: they succeed.
        self.bump_outcomes: list[bool] = []
        self.bumps: list[str] = []

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def current(self, name_key: str) -> Generation:
        if self.reads_fail:
            raise StoreUnavailableError("state database down (test)")
        return self.counters.get(name_key, 0), self.counters.get(ALL_NAMES, 0)

    async def bump(self, name_key: str) -> None:
        if self.bump_outcomes and not self.bump_outcomes.pop(0):
            raise StoreUnavailableError("state database down (test)")
        self.bumps.append(name_key)
        self.counters[name_key] = self.counters.get(name_key, 0) + 1

    def add_listener(self, listener: InvalidationListener) -> None:
        return None

    def remove_listener(self, listener: InvalidationListener) -> None:
        return None


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def new_version(name: str, version: str, **extra: Any) -> NewVersion:
    return NewVersion(
        name=name,
        version=version,
        secret_type=SecretType.GENERIC,
        content_type=None,
        tags={},
        created_at=T0,
        **extra,
    )


async def put(store: Any, name: str, value: str, version: str, *, create: bool = False) -> None:
    mode = WriteMode.CREATE if create else WriteMode.UPDATE
    await store.write_version(new_version(name, version), value.encode(), mode)


async def value_of(store: Any, name: str, version: str | None = None) -> str:
    bundle = await store.get_version(name, version)
    text: str = bundle.value.reveal()
    return text


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def remote() -> AsyncIterator[CountingStore]:
    store = CountingStore()
    await store.open()
    await put(store.inner, "db-password", "v1", "a1", create=True)
    await put(store.inner, "api-key", "k1", "b1", create=True)
    yield store
    await store.close()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def cached(
    inner: Any,
    fake_time: FakeTime | None = None,
    *,
    ttl: float = 30.0,
    max_entries: int = 100,
    stale: float = 0.0,
    generations: CacheGenerations | None = None,
    metrics: Metrics | None = None,
) -> CachedStore:
    return CachedStore(
        inner,
        ttl_seconds=ttl,
        max_entries=max_entries,
        stale_seconds=stale,
        generations=generations,
        metrics=metrics,
        now=fake_time or FakeTime(),
    )


# -- hits, TTL, LRU -----------------------------------------------------------------------------


async def test_a_hit_never_reaches_the_remote_store_and_keeps_the_value_object(
    remote: CountingStore, metrics: Metrics
) -> None:
    store = cached(remote, metrics=metrics)
    first = await store.get_version("db-password")
    second = await store.get_version("DB-Password")  # names compare case-insensitively
    assert remote.calls["get_version"] == 1
    assert second.value is first.value  # the opaque object itself, never a copy or text
    assert second.value.reveal() == "v1"
    assert second.properties == first.properties
    first.properties.tags["added"] = "by a caller"  # callers cannot edit the cache
    second.properties.tags["added"] = "by a caller"
    assert (await store.get_version("db-password")).properties.tags == {}
    props = [await store.get_properties("db-password") for _ in range(3)]
    assert remote.calls["get_properties"] == 1
    assert props[0].version == "a1"
    assert store.backend == "remote-test"
    assert metrics.value("cache_hits_total") == 4
    assert metrics.value("cache_misses_total") == 2


async def test_versions_are_cached_apart(remote: CountingStore) -> None:
    await put(remote.inner, "db-password", "v2", "a2")
    store = cached(remote)
    assert await value_of(store, "db-password", "a1") == "v1"
    assert await value_of(store, "db-password") == "v2"
    assert await value_of(store, "db-password", "a1") == "v1"
    assert await value_of(store, "db-password") == "v2"
    assert remote.calls["get_version"] == 2


async def test_entries_expire_after_the_ttl(remote: CountingStore, fake_time: FakeTime) -> None:
    store = cached(remote, fake_time, ttl=10)
    await store.get_version("db-password")
    fake_time.advance(9.9)
    await store.get_version("db-password")
    assert remote.calls["get_version"] == 1
    fake_time.advance(0.2)
    await store.get_version("db-password")
    assert remote.calls["get_version"] == 2
    fake_time.advance(5)  # refreshed at the second fetch
    await store.get_version("db-password")
    assert remote.calls["get_version"] == 2


async def test_the_cache_holds_at_most_max_entries_least_recently_used_first(
    remote: CountingStore,
) -> None:
    await put(remote.inner, "third", "t1", "c1", create=True)
    store = cached(remote, max_entries=2)
    await store.get_version("db-password")
    await store.get_version("api-key")
    await store.get_version("db-password")  # now the most recently used
    await store.get_version("third")  # evicts api-key
    assert store.entry_count == 2
    assert store.is_cached("db-password")
    assert store.is_cached("third")
    assert not store.is_cached("api-key")
    calls = remote.calls["get_version"]
    await store.get_version("db-password")
    assert remote.calls["get_version"] == calls
    await store.get_version("api-key")
    assert remote.calls["get_version"] == calls + 1


async def test_entries_too_old_to_be_served_are_swept_out(
    remote: CountingStore, fake_time: FakeTime
) -> None:
    await put(remote.inner, "third", "t1", "c1", create=True)
    store = cached(remote, fake_time, ttl=10, stale=5)
    await store.get_version("db-password")
    fake_time.advance(12)
    await store.get_version("api-key")
    assert store.is_cached("db-password")  # stale, still usable if the vault goes down
    fake_time.advance(10)
    await store.get_version("third")  # 22 s > 10 + 5: no longer usable at all, so forgotten
    assert not store.is_cached("db-password")
    assert store.is_cached("api-key")
    assert store.entry_count == 2


async def test_settings_that_cannot_work_are_refused(remote: CountingStore) -> None:
    with pytest.raises(ConfigurationError):
        cached(remote, ttl=0)
    with pytest.raises(ConfigurationError):
        cached(remote, max_entries=0)
    with pytest.raises(ConfigurationError):
        cached(remote, stale=-1)


async def test_concurrent_misses_share_one_remote_read(remote: CountingStore) -> None:
    store = cached(remote)
    remote.hold_reads = asyncio.Event()
    readers = [asyncio.create_task(value_of(store, "db-password")) for _ in range(20)]
    await asyncio.wait_for(remote.reading.wait(), 5)
    await asyncio.sleep(0.01)
    remote.hold_reads.set()
    assert await asyncio.gather(*readers) == ["v1"] * 20
    assert remote.calls["get_version"] == 1


async def test_errors_pass_through_and_drop_the_entry(
    remote: CountingStore, fake_time: FakeTime
) -> None:
    store = cached(remote, fake_time, ttl=10, stale=60)
    await store.get_version("db-password")
    await remote.inner.delete("db-password", deleted_at=T0, purge_at=T0 + timedelta(days=7))
    fake_time.advance(11)  # expired, still held for the stale period
    assert store.is_cached("db-password")
    with pytest.raises(SecretNotFoundError):
        await store.get_version("db-password")  # the remote's answer, not the old entry
    assert not store.is_cached("db-password")
    assert await store.list_secrets() == await remote.inner.list_secrets()
    assert await store.count() == 1


# -- every change drops the entry --------------------------------------------------------------


async def _write(store: CachedStore) -> None:
    await put(store, "db-password", "v2", "a2")


async def _update(store: CachedStore) -> None:
    await store.update_properties("db-password", None, PropertyChanges(T0, tags={"k": "v"}))


async def _delete(store: CachedStore) -> None:
    await store.delete("db-password", deleted_at=T0, purge_at=T0 + timedelta(days=7))


async def _purge(store: CachedStore) -> None:
    await store.purge("db-password", deleted_only=False)


async def _revoke(store: CachedStore) -> None:
    await store.revoke_all("db-password", T0)


async def _rotate(store: CachedStore) -> None:
    await store.rotate_key()


CHANGES: dict[str, Callable[[CachedStore], Awaitable[None]]] = {
    "write_version": _write,
    "update_properties": _update,
    "delete": _delete,
    "purge": _purge,
    "revoke_all": _revoke,
    "rotate_key": _rotate,
}


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("shared", [False, True], ids=["local", "generations"])
async def test_every_change_drops_the_name_at_once(
    remote: CountingStore, metrics: Metrics, change: str, shared: bool
) -> None:
    generations = FakeGenerations() if shared else None
    store = cached(remote, generations=generations, metrics=metrics)
    before = await store.get_version("db-password")
    await store.get_properties("db-password")
    await store.get_version("api-key")
    await CHANGES[change](store)
    assert not store.is_cached("db-password")
    assert not store.is_cached("db-password", properties=True)
    assert store.is_cached("api-key") == (change != "rotate_key")  # key rotation drops all
    assert metrics.value("cache_invalidations_total") == 1
    if generations is not None:
        # announced before the remote call and again before returning
        target = ALL_NAMES if change == "rotate_key" else "db-password"
        assert generations.bumps == [target, target]
    calls = remote.calls["get_version"]
    if change in {"delete", "purge"}:
        with pytest.raises(SecretNotFoundError):
            await store.get_version("db-password")
        return
    after = await store.get_version("db-password")
    assert remote.calls["get_version"] == calls + 1
    assert after.value is not before.value
    if change == "write_version":
        assert after.value.reveal() == "v2"
    if change == "update_properties":
        assert after.properties.tags == {"k": "v"}


async def test_recover_drops_the_name(remote: CountingStore) -> None:
    store = cached(remote)
    await store.get_version("db-password")
    # deleted behind the cache's back (another tool); recovering through strongroom drops it
    await remote.inner.delete("db-password", deleted_at=T0, purge_at=T0 + timedelta(days=7))
    assert store.is_cached("db-password")
    await store.recover("db-password")
    assert not store.is_cached("db-password")


async def test_purge_expired_drops_everything_only_when_it_purged_something(
    remote: CountingStore, metrics: Metrics
) -> None:
    generations = FakeGenerations()
    store = cached(remote, generations=generations, metrics=metrics)
    await store.get_version("db-password")
    assert await store.purge_expired(T0) == 0
    assert store.is_cached("db-password")  # nothing purged: the fleet's caches stay warm
    assert generations.bumps == []
    await remote.inner.delete("api-key", deleted_at=T0, purge_at=T0)
    assert await store.purge_expired(T0 + timedelta(seconds=1)) == 1
    assert not store.is_cached("db-password")
    assert generations.bumps == [ALL_NAMES]
    assert metrics.value("cache_invalidations_total") == 1


@pytest.mark.parametrize("shared", [False, True], ids=["local", "generations"])
async def test_a_failed_change_still_drops_the_entry(remote: CountingStore, shared: bool) -> None:
    # The remote may have applied a change whose answer was lost: drop, then re-raise.
    generations = FakeGenerations() if shared else None
    store = cached(remote, generations=generations)
    await store.get_version("db-password")
    remote.down = True
    with pytest.raises(StoreUnavailableError):
        await put(store, "db-password", "v2", "a2")
    assert not store.is_cached("db-password")
    if generations is not None:
        assert generations.bumps == ["db-password", "db-password"]


async def test_a_read_racing_a_change_does_not_cache_what_it_read_before(
    remote: CountingStore,
) -> None:
    store = cached(remote)
    remote.hold_reads = asyncio.Event()
    slow = asyncio.create_task(value_of(store, "db-password"))
    await asyncio.wait_for(remote.reading.wait(), 5)  # it has read v1 from the remote
    await put(store, "db-password", "v2", "a2")
    remote.hold_reads.set()
    assert await slow == "v1"  # began before the write returned: either answer is fair
    assert not store.is_cached("db-password")
    assert await value_of(store, "db-password") == "v2"


# -- revoked versions ---------------------------------------------------------------------------


async def test_a_revoked_version_is_never_cached_nor_served_stale(
    remote: CountingStore, fake_time: FakeTime, metrics: Metrics
) -> None:
    store = cached(remote, fake_time, ttl=10, stale=60, metrics=metrics)
    await store.revoke_all("db-password", T0)
    for _ in range(2):
        bundle = await store.get_version("db-password")
        assert bundle.properties.revoked_at == T0
        props = await store.get_properties("db-password")
        assert props.revoked_at == T0
    assert remote.calls["get_version"] == 2
    assert remote.calls["get_properties"] == 2
    assert not store.is_cached("db-password")
    assert not store.is_cached("db-password", properties=True)
    remote.down = True
    with pytest.raises(StoreUnavailableError):
        await store.get_version("db-password")
    assert metrics.value("cache_stale_served_total") == 0


async def test_a_revoked_entry_found_in_the_cache_is_not_served(remote: CountingStore) -> None:
    # Belt and braces: even if one got in, a revoked entry is never used when the vault is down.
    store = cached(remote, stale=60)
    await store.get_version("db-password")
    await remote.inner.revoke_all("db-password", T0)
    bundle = await remote.inner.get_version("db-password")
    key = ("bundle", "db-password", None)
    store._entries.items[key].result = bundle
    store._entries.items[key].filled_at -= 60  # past the TTL, inside the stale period
    remote.down = True
    with pytest.raises(StoreUnavailableError):
        await store.get_version("db-password")


# -- the vault down ----------------------------------------------------------------------------


async def test_vault_down_reads_within_the_stale_bound_succeed_writes_fail(
    remote: CountingStore, fake_time: FakeTime, metrics: Metrics
) -> None:
    store = cached(remote, fake_time, ttl=10, stale=30, generations=FakeGenerations(),
                   metrics=metrics)  # fmt: skip
    await store.get_version("db-password")
    await store.get_properties("db-password")
    await store.get_version("api-key")
    remote.down = True
    fake_time.advance(5)
    assert await value_of(store, "db-password") == "v1"  # still fresh: a plain hit
    assert metrics.value("cache_stale_served_total") == 0
    fake_time.advance(10)  # 15 s: stale, within 10 + 30
    assert await value_of(store, "db-password") == "v1"
    assert (await store.get_properties("db-password")).version == "a1"
    assert metrics.value("cache_stale_served_total") == 2
    fake_time.advance(24.9)  # 39.9 s
    assert await value_of(store, "db-password") == "v1"
    assert metrics.value("cache_stale_served_total") == 3
    # Writes are never absorbed: they fail, and the name's stale entries go with them (the
    # write's outcome is unknown, so what is cached may no longer be the secret).
    with pytest.raises(StoreUnavailableError):
        await put(store, "api-key", "k2", "b2")
    with pytest.raises(StoreUnavailableError):
        await store.get_version("api-key")
    with pytest.raises(StoreUnavailableError):
        await store.revoke_all("db-password", T0)
    with pytest.raises(StoreUnavailableError):
        await store.get_version("db-password")
    remote.down = False
    assert await value_of(store, "api-key") == "k1"  # the write indeed never happened


async def test_vault_down_beyond_the_stale_bound_fails(
    remote: CountingStore, fake_time: FakeTime, metrics: Metrics
) -> None:
    store = cached(remote, fake_time, ttl=10, stale=30, metrics=metrics)
    await store.get_version("db-password")
    remote.down = True
    fake_time.advance(40.1)
    with pytest.raises(StoreUnavailableError):
        await store.get_version("db-password")
    assert metrics.value("cache_stale_served_total") == 0
    remote.down = False
    assert await value_of(store, "db-password") == "v1"


async def test_stale_reads_are_off_by_default(remote: CountingStore, fake_time: FakeTime) -> None:
    store = cached(remote, fake_time, ttl=10, stale=0)
    await store.get_version("db-password")
    remote.down = True
    fake_time.advance(10.5)
    with pytest.raises(StoreUnavailableError):
        await store.get_version("db-password")


async def test_throttling_after_the_sdk_retries_counts_as_unavailable(
    remote: CountingStore, fake_time: FakeTime
) -> None:
    store = cached(remote, fake_time, ttl=10, stale=30)
    await store.get_version("db-password")
    remote.throttled = True
    fake_time.advance(20)
    assert await value_of(store, "db-password") == "v1"
    with pytest.raises(RateLimitedError):
        await store.get_version("api-key")  # nothing cached: the throttle shows


async def test_no_stale_read_when_the_generation_cannot_be_checked(
    remote: CountingStore, fake_time: FakeTime
) -> None:
    # With the state database down too, an entry may have been revoked elsewhere: fail closed.
    generations = FakeGenerations()
    store = cached(remote, fake_time, ttl=10, stale=30, generations=generations)
    await store.get_version("db-password")
    generations.reads_fail = True
    assert await value_of(store, "db-password") == "v1"  # unverifiable hit: asks the vault
    assert remote.calls["get_version"] == 2
    remote.down = True
    fake_time.advance(1)
    with pytest.raises(StoreUnavailableError):
        await store.get_version("db-password")
    generations.reads_fail = False
    assert await value_of(store, "db-password") == "v1"  # verified again: a hit
    assert remote.calls["get_version"] == 3


async def test_no_stale_read_of_a_secret_changed_in_another_process(
    remote: CountingStore, fake_time: FakeTime, metrics: Metrics
) -> None:
    counters: dict[str, int] = {}
    a = cached(remote, fake_time, ttl=10, stale=60, generations=FakeGenerations(counters))
    b = cached(remote, fake_time, ttl=10, stale=60, generations=FakeGenerations(counters),
               metrics=metrics)  # fmt: skip
    await b.get_version("db-password")
    await b.get_version("api-key")
    # A revokes (the vault still up), then the vault goes down: B must not serve its entry.
    await a.revoke_all("db-password", T0)
    remote.down = True
    fake_time.advance(15)
    with pytest.raises(StoreUnavailableError):
        await b.get_version("db-password")
    # A change attempted while B's remote read is failing (its outcome unknown) also ends
    # B's stale period for that name: the generation is checked again after the failure.
    other = FakeGenerations(counters)
    remote.during_call = lambda: other.bump("api-key")
    with pytest.raises(StoreUnavailableError):
        await b.get_version("api-key")
    assert metrics.value("cache_stale_served_total") == 0


async def test_a_change_cancelled_mid_call_still_invalidates(remote: CountingStore) -> None:
    generations = FakeGenerations()
    store = cached(remote, generations=generations)
    await store.get_version("db-password")
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(30)

    remote.during_call = hang
    task = asyncio.create_task(put(store, "db-password", "v2", "a2"))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not store.is_cached("db-password")
    remote.during_call = None
    assert await _until(lambda: generations.bumps == ["db-password", "db-password"])
    await store.close()


async def test_a_change_is_refused_when_other_processes_cannot_be_told(
    remote: CountingStore,
) -> None:
    generations = FakeGenerations()
    store = cached(remote, generations=generations)
    generations.bump_outcomes = [False]
    with pytest.raises(StoreUnavailableError, match="nothing was changed"):
        await put(store, "db-password", "v2", "a2")
    assert remote.calls["write_version"] == 0
    # Announced, applied, but the final increment keeps failing: the caller is told.
    generations.bump_outcomes = [True, False, False, False, False]
    with pytest.raises(StoreUnavailableError, match="change was made"):
        await put(store, "db-password", "v2", "a2")
    assert remote.calls["write_version"] == 1
    assert await value_of(store, "db-password") == "v2"


# -- two processes: one shared remote store, shared generations ---------------------------------


@pytest.fixture(params=["sqlite", "postgres", "postgres-listen"])
def shared_state(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Where the two "processes" keep their generations: a SQLite file or a PostgreSQL schema."""
    kind: str = request.param
    if kind == "sqlite":
        return kind, str(tmp_path / "state.db")
    return kind, request.getfixturevalue("pg_schema")


def generations_for(kind: str, where: str) -> CacheGenerations:
    if kind == "sqlite":
        return SqliteCacheGenerations(SqliteDatabase(Path(where)))
    return PostgresCacheGenerations(PG_URL, schema=where, listen=kind == "postgres-listen")


@pytest.fixture
async def two_processes(
    shared_state: tuple[str, str], remote: CountingStore
) -> AsyncIterator[tuple[CachedStore, CachedStore, str]]:
    kind, where = shared_state
    a = cached(remote, ttl=300, generations=generations_for(kind, where))
    b = cached(remote, ttl=300, generations=generations_for(kind, where))
    await a.open()
    await b.open()
    yield a, b, kind
    await b.close()
    await a.close()


async def _until(condition: Callable[[], bool], within: float = 2.0) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def test_a_change_in_one_process_is_seen_by_the_next_read_in_another(
    two_processes: tuple[CachedStore, CachedStore, str], remote: CountingStore
) -> None:
    a, b, kind = two_processes

    async def b_has_cached(name: str, expected: str) -> None:
        """B reads twice; the second read is a hit (the remote is not asked)."""
        assert await value_of(b, name) == expected
        calls = remote.calls["get_version"]
        assert await value_of(b, name) == expected
        assert remote.calls["get_version"] == calls
        assert b.is_cached(name)

    async def b_was_told(name: str | None = None) -> None:
        """With LISTEN, B drops the entry on A's notification without reading anything; in
        every variant the generation check alone refuses it (nothing here waits for that)."""
        if kind == "postgres-listen":
            gone = (lambda: not b.is_cached(name)) if name else (lambda: b.entry_count == 0)
            assert await _until(gone)
        elif name is not None:
            assert b.is_cached(name)  # still held: only the generation check stands guard

    # a write
    await b_has_cached("db-password", "v1")
    await put(a, "db-password", "v2", "a2")
    await b_was_told("db-password")
    assert await value_of(b, "db-password") == "v2"  # never the old value

    # a property update
    await b_has_cached("db-password", "v2")
    assert (await b.get_properties("db-password")).enabled is True
    await a.update_properties("db-password", None, PropertyChanges(T0, enabled=False))
    await b_was_told("db-password")
    assert (await b.get_properties("db-password")).enabled is False
    assert (await b.get_version("db-password")).properties.enabled is False

    # a revocation
    await a.update_properties("db-password", None, PropertyChanges(T0, enabled=True))
    await b_has_cached("db-password", "v2")
    await a.revoke_all("db-password", T0)
    await b_was_told("db-password")
    assert (await b.get_version("db-password")).properties.revoked_at == T0
    assert (await b.get_properties("db-password")).revoked_at == T0

    # a key rotation supersedes every entry
    await b_has_cached("api-key", "k1")
    await a.rotate_key()
    await b_was_told()
    calls = remote.calls["get_version"]
    assert await value_of(b, "api-key") == "k1"
    assert remote.calls["get_version"] == calls + 1


async def test_without_shared_generations_another_process_would_serve_the_old_value(
    remote: CountingStore,
) -> None:
    # The control for the test above: the same scenario with local invalidation only.
    a, b = cached(remote, ttl=300), cached(remote, ttl=300)
    assert await value_of(b, "db-password") == "v1"
    await put(a, "db-password", "v2", "a2")
    assert await value_of(b, "db-password") == "v1"


async def test_many_changes_and_reads_across_processes_never_go_back(
    two_processes: tuple[CachedStore, CachedStore, str],
) -> None:
    # A writes v1..v30 while B reads continuously; every read B starts after A's write of vN
    # returned shows vN or later.
    a, b, _kind = two_processes
    written = 1
    failures: list[str] = []

    async def reader() -> None:
        while written < 30:
            floor = written
            value = await value_of(b, "db-password")
            if int(value[1:]) < floor:
                failures.append(f"read {value} after v{floor} was written")
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    for i in range(2, 31):
        await put(a, "db-password", f"v{i}", f"a{i}")
        written = i
        await asyncio.sleep(0.002)
    await task
    assert failures == []
    assert await value_of(b, "db-password") == "v30"


async def test_notifications_for_another_schema_are_ignored(
    pg_schema: str, remote: CountingStore
) -> None:
    generations = PostgresCacheGenerations(PG_URL, schema=pg_schema, listen=True)
    store = cached(remote, generations=generations)
    await store.open()
    try:
        assert generations.listening
        await store.get_version("db-password")
        await store.get_version("api-key")
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, "other_schema:db-password")
            # Notifications arrive in order: once this later one has been handled, the first
            # one has been too.
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{pg_schema}:api-key")
            assert await _until(lambda: not store.is_cached("api-key"))
            assert store.is_cached("db-password")
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{pg_schema}:db-password")
            assert await _until(lambda: not store.is_cached("db-password"))
        finally:
            await conn.close()
    finally:
        await store.close()
    assert not generations.listening


async def test_the_listen_connection_comes_back_after_it_is_lost(
    pg_schema: str, remote: CountingStore
) -> None:
    generations = PostgresCacheGenerations(
        PG_URL, schema=pg_schema, listen=True, reconnect_seconds=0.05
    )
    store = cached(remote, generations=generations)
    await store.open()
    conn = await asyncpg.connect(PG_URL)
    try:
        listener = generations._listener_conn
        assert listener is not None
        await conn.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        assert await _until(lambda: generations._listener_conn is not listener)
        assert await _until(lambda: generations.listening)
        await store.get_version("db-password")
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{pg_schema}:db-password")
        assert await _until(lambda: not store.is_cached("db-password"))
    finally:
        await conn.close()
        await store.close()


async def test_generations_count_per_name_in_both_databases(tmp_path: Path, pg_schema: str) -> None:
    for generations in (
        SqliteCacheGenerations(SqliteDatabase(tmp_path / "g.db")),
        PostgresCacheGenerations(PG_URL, schema=pg_schema, listen=False),
    ):
        await generations.open()
        try:
            assert await generations.current("x") == (0, 0)
            await generations.bump("x")
            await generations.bump("x")
            await generations.bump(ALL_NAMES)
            assert await generations.current("x") == (2, 1)
            assert await generations.current("y") == (0, 1)
            if isinstance(generations, SqliteCacheGenerations):
                assert generations._conn is not None
                generations._conn.close()  # the inline reader fails: the reader threads answer
                assert await generations.current("x") == (2, 1)
        finally:
            await generations.close()


# -- two real processes ---------------------------------------------------------------------

_CHILD = """
import asyncio, sys
from pathlib import Path
from strongroom.backends.cache import CachedStore
from strongroom.backends.sqlite import SqliteStore
from strongroom.core.crypto import MasterKey
from strongroom.core.metrics import Metrics
from strongroom.db.cache_invalidation import SqliteCacheGenerations
from strongroom.db.sqlite_db import SqliteDatabase

async def main(secrets_path, state_path, key):
    metrics = Metrics()
    store = CachedStore(
        SqliteStore(Path(secrets_path), MasterKey.from_base64(key), read_window_seconds=0),
        ttl_seconds=300, max_entries=10, stale_seconds=0, metrics=metrics,
        generations=SqliteCacheGenerations(SqliteDatabase(Path(state_path))),
    )
    await store.open()
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while (line := await loop.run_in_executor(None, sys.stdin.readline)).strip() == "read":
        value = (await store.get_version("db-password")).value.reveal()
        print(value, int(metrics.value("cache_hits_total")), flush=True)
    await store.close()

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.slow
async def test_two_os_processes(tmp_path: Path) -> None:
    master, key_text = MasterKey.generate()
    secrets_path, state_path = tmp_path / "secrets.db", tmp_path / "state.db"
    # Stores that read through every time, so what this checks is the cache's promise alone.
    parent = CachedStore(
        SqliteStore(secrets_path, master, read_window_seconds=0),
        ttl_seconds=300,
        max_entries=10,
        stale_seconds=0,
        generations=SqliteCacheGenerations(SqliteDatabase(state_path)),
    )
    await parent.open()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(secrets_path), str(state_path), key_text,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert child.stdin is not None
    assert child.stdout is not None

    async def ask() -> str:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(b"read\n")
        await child.stdin.drain()
        return (await asyncio.wait_for(child.stdout.readline(), 10)).decode().strip()

    try:
        await put(parent, "db-password", "v1", "a1", create=True)
        assert (await asyncio.wait_for(child.stdout.readline(), 20)).strip() == b"ready"
        assert await ask() == "v1 0"
        assert await ask() == "v1 1"  # the child serves it from its cache
        await put(parent, "db-password", "v2", "a2")
        assert await ask() == "v2 1"  # ...but not once the parent's write has returned
        assert await ask() == "v2 2"
        await parent.revoke_all("db-password", T0)
        assert await ask() == "v2 2"  # revoked: fetched again...
        assert await ask() == "v2 2"  # ...and never cached
        child.stdin.write(b"stop\n")
        await child.stdin.drain()
        assert await asyncio.wait_for(child.wait(), 10) == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await parent.close()
