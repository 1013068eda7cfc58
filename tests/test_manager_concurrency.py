"""Concurrent callers and master-key rotation through SecretsManager, on every store."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import sqlite3
from contextlib import closing

import asyncpg
import pytest

from helpers_settings import LOCAL_STORES
from strongroom import (
    ManualClock,
    SecretAlreadyExistsError,
    SecretsManager,
    Settings,
    Strongroom,
    ValidationError,
)

Written = dict[tuple[str, str], str]  # (name, version id) -> value
ROTATIONS = 5  # rotations while readers run
FRESH_ROUNDS = 10  # freshly opened instances, each reading while it rotates
DEADLOCK_GUARD_SECONDS = 20  # a liveness bound, not a speed check


def token() -> str:
    return f"sv-{secrets.token_hex(12)}"


async def keyring_rows(settings: Settings) -> int:
    """Rows in the store's ``secret_keyring`` table, read straight from the database."""
    if settings.backend.value == "sqlite":
        with closing(sqlite3.connect(settings.sqlite_path)) as conn:
            return int(conn.execute("SELECT count(*) FROM secret_keyring").fetchone()[0])
    conn = await asyncpg.connect(settings.postgres_dsn())
    try:
        return int(
            await conn.fetchval(f'SELECT count(*) FROM "{settings.pg_schema}".secret_keyring')
        )
    finally:
        await conn.close()


async def seed_versions(
    manager: SecretsManager, secrets_count: int = 5, versions: int = 3, prefix: str = "svc"
) -> Written:
    """Create secrets with several versions; returns {(name, version): value}."""
    written: Written = {}
    for i in range(secrets_count):
        name = f"{prefix}-{i}"
        value = token()
        written[name, (await manager.create_secret(name, value))["version"]] = value
        for _ in range(versions - 1):
            value = token()
            written[name, (await manager.update_secret(name, value))["version"]] = value
    return written


async def assert_all_readable(manager: SecretsManager, written: Written) -> None:
    for (name, version), value in written.items():
        assert await manager.get_secret(name, version=version) == value


# -- concurrent writers -----------------------------------------------------------------------


async def test_fifty_concurrent_creates_all_land(manager: SecretsManager) -> None:
    values = {f"car-{i:02d}": token() for i in range(50)}
    results = await asyncio.gather(
        *(manager.create_secret(name, value) for name, value in values.items())
    )
    assert sorted(r["name"] for r in results) == sorted(values)
    assert len({r["version"] for r in results}) == 50
    listed = await manager.list_secrets()
    assert sorted(s["name"] for s in listed) == sorted(values)
    read = await asyncio.gather(*(manager.get_secret(name) for name in values))
    assert dict(zip(values, read, strict=True)) == values


async def test_twenty_concurrent_updates_lose_no_version(manager: SecretsManager) -> None:
    original = token()
    first = await manager.create_secret("hot", original)
    values = [token() for _ in range(20)]
    results = await asyncio.gather(*(manager.update_secret("hot", value) for value in values))

    ids = [r["version"] for r in results]
    assert len(set(ids)) == 20
    assert first["version"] not in ids
    versions = await manager.get_secret_versions("hot")
    assert len(versions) == 21
    assert {v["version"] for v in versions} == {first["version"], *ids}
    assert sum(v["current"] for v in versions) == 1
    assert versions[0]["current"] is True
    assert versions[-1]["version"] == first["version"]

    for version_id, value in zip(ids, values, strict=True):
        assert await manager.get_secret("hot", version=version_id) == value
    assert await manager.get_secret("hot", version=first["version"]) == original
    current = await manager.get_secret("hot")
    assert current == values[ids.index(versions[0]["version"])]


# Not Azure: Key Vault has no transaction to read the current version under, so its updates
# read it first and then write (docs/backends.md).
@pytest.mark.stores(*LOCAL_STORES, "remote")
async def test_concurrent_updates_inherit_from_the_version_they_follow(
    manager: SecretsManager,
) -> None:
    """What a version carries over (metadata here) is what the version right before it had,
    as if the updates ran one after another, however many arrive at once; an update whose
    value is refused fails alone and leaves no version."""
    await manager.create_secret("heir", token(), metadata={"round": "start"})
    asked: list[dict[str, str] | None] = []
    calls = []
    for i in range(24):
        if i % 8 == 5:  # declared JSON, and not JSON: refused
            asked.append(None)
            calls.append(manager.update_secret("heir", "{no", content_type="application/json"))
        elif i % 3 == 0:
            asked.append({"round": str(i)})
            calls.append(manager.update_secret("heir", token(), metadata={"round": str(i)}))
        else:
            asked.append(None)
            calls.append(manager.update_secret("heir", token()))
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert [type(r) for r in refused] == [ValidationError] * 3, refused
    given = {r["version"]: a for r, a in zip(results, asked, strict=True) if isinstance(r, dict)}
    versions = list(reversed(await manager.get_secret_versions("heir")))  # oldest first
    assert [v["version"] for v in versions[1:]] == sorted(
        given, key=[v["version"] for v in versions].index
    )
    assert len(versions) == 1 + 24 - 3
    for before, after in itertools.pairwise(versions):
        expected = given[after["version"]] or before["metadata"]
        assert after["metadata"] == expected, (before, after)


async def test_concurrent_creates_of_one_name_let_exactly_one_win(
    manager: SecretsManager,
) -> None:
    values = [token() for _ in range(10)]
    results = await asyncio.gather(
        *(manager.create_secret("contested", value) for value in values),
        return_exceptions=True,
    )
    winners = [(value, r) for value, r in zip(values, results, strict=True) if isinstance(r, dict)]
    losers = [r for r in results if not isinstance(r, dict)]
    assert len(winners) == 1
    assert len(losers) == 9
    assert all(type(r) is SecretAlreadyExistsError for r in losers), losers
    winning_value, winner = winners[0]
    assert await manager.get_secret("contested") == winning_value
    versions = await manager.get_secret_versions("contested")
    assert [v["version"] for v in versions] == [winner["version"]]


# -- master-key rotation ----------------------------------------------------------------------


@pytest.mark.stores(*LOCAL_STORES)
async def test_rotation_rewraps_every_version(manager: SecretsManager, app: Strongroom) -> None:
    written = await seed_versions(manager)
    before = await app.store.key_version()

    result = await manager.rotate_master_key()
    assert result["key_version"] == before + 1
    assert result["rewrapped"] == len(written)
    assert await app.store.key_version() == before + 1
    await assert_all_readable(manager, written)

    again = await manager.rotate_master_key()
    assert again["key_version"] == before + 2
    assert await app.store.key_version() == before + 2
    await assert_all_readable(manager, written)


@pytest.mark.stores(*LOCAL_STORES)
async def test_rotation_keeps_deleted_secrets_recoverable(manager: SecretsManager) -> None:
    value = token()
    await manager.create_secret("parked", value)
    await manager.delete_secret("parked")
    await manager.rotate_master_key()
    await manager.recover_deleted_secret("parked")
    assert await manager.get_secret("parked") == value


@pytest.mark.stores(*LOCAL_STORES)
async def test_reads_during_rotation_all_succeed(manager: SecretsManager, app: Strongroom) -> None:
    written = await seed_versions(manager, secrets_count=8, versions=3)
    keys = list(written)
    done = asyncio.Event()
    reads = 0

    async def reader(offset: int) -> None:
        nonlocal reads
        i = offset
        while not done.is_set():
            name, version = keys[i % len(keys)]
            assert await manager.get_secret(name, version=version) == written[name, version]
            assert await manager.get_secret(name) is not None
            reads += 1
            i += 1
            await asyncio.sleep(0)

    async def rotate() -> list[int]:
        try:
            versions = []
            for _ in range(ROTATIONS):
                await asyncio.sleep(0)
                versions.append((await manager.rotate_master_key())["key_version"])
            return versions
        finally:
            done.set()

    before = await app.store.key_version()
    outcome = await asyncio.gather(rotate(), *(reader(n) for n in range(8)))
    assert outcome[0] == [before + n for n in range(1, ROTATIONS + 1)]
    assert reads >= 8
    assert await app.store.key_version() == before + ROTATIONS
    await assert_all_readable(manager, written)


@pytest.mark.stores(*LOCAL_STORES)
async def test_reads_gathered_with_rotation_on_fresh_instances_all_succeed(
    store_settings: Settings, clock: ManualClock
) -> None:
    """Reads gathered with a rotation, each round on a freshly opened instance (a replica that
    has just started). Repeated because the interleaving that breaks a read is narrow."""
    for round_no in range(FRESH_ROUNDS):
        async with await Strongroom.open(store_settings, clock=clock) as app:
            manager = SecretsManager(app)
            written = await seed_versions(manager, 4, 2, prefix=f"r{round_no}")
            before = await app.store.key_version()
            reads = [manager.get_secret(name, version=version) for (name, version) in written]
            results = await asyncio.gather(*reads[:4], manager.rotate_master_key(), *reads[4:])
            assert results[4]["key_version"] == before + 1
            assert results[:4] + results[5:] == list(written.values())


@pytest.mark.stores(*LOCAL_STORES)
async def test_writes_during_rotation_all_land(manager: SecretsManager) -> None:
    written = await seed_versions(manager, secrets_count=3, versions=2)
    fresh = {f"new-{i}": token() for i in range(10)}
    updates = [token() for _ in range(10)]
    results = await asyncio.gather(
        manager.rotate_master_key(),
        *(manager.create_secret(name, value) for name, value in fresh.items()),
        *(manager.update_secret("svc-0", value) for value in updates),
    )
    for result, value in zip(results[11:], updates, strict=True):
        written["svc-0", result["version"]] = value
    for name, value in fresh.items():
        assert await manager.get_secret(name) == value
    await assert_all_readable(manager, written)
    # A second rotation must find every row (including those written meanwhile) re-wrappable.
    await manager.rotate_master_key()
    await assert_all_readable(manager, written)


@pytest.mark.stores("sqlite", "postgres")
async def test_rotation_leaves_one_keyring_row(
    manager: SecretsManager, store_settings: Settings
) -> None:
    await seed_versions(manager, secrets_count=3, versions=2)
    assert await keyring_rows(store_settings) == 1
    await manager.rotate_master_key()
    assert await keyring_rows(store_settings) == 1
    await manager.rotate_master_key()
    assert await keyring_rows(store_settings) == 1


@pytest.mark.stores("sqlite", "postgres")
async def test_rotated_store_reopens_with_the_same_master_key(
    manager: SecretsManager, app: Strongroom, store_settings: Settings, clock: ManualClock
) -> None:
    written = await seed_versions(manager, secrets_count=3, versions=2)
    await manager.rotate_master_key()
    version = await app.store.key_version()
    await app.close()

    reopened = await Strongroom.open(store_settings, clock=clock)
    try:
        assert await reopened.store.key_version() == version
        await assert_all_readable(SecretsManager(reopened), written)
    finally:
        await reopened.close()


@pytest.mark.stores(*LOCAL_STORES)
async def test_concurrent_rotations_all_complete(manager: SecretsManager, app: Strongroom) -> None:
    """Two rotations at once (two operators, or two replicas) must serialise, not interleave;
    repeated because whether they overlap depends on scheduling."""
    written = await seed_versions(manager, secrets_count=3, versions=2)
    version = await app.store.key_version()
    for _round in range(5):
        results = await asyncio.gather(manager.rotate_master_key(), manager.rotate_master_key())
        assert sorted(r["key_version"] for r in results) == [version + 1, version + 2]
        version += 2
        assert await app.store.key_version() == version
        await assert_all_readable(manager, written)
    fresh = token()
    await manager.update_secret("svc-0", fresh)
    assert await manager.get_secret("svc-0") == fresh


@pytest.mark.stores("postgres")
async def test_concurrent_rotations_complete_on_a_small_pool(
    store_settings: Settings, clock: ManualClock
) -> None:
    """STRONGROOM_PG_POOL_MAX=2 is a valid setting: two rotations at once must not wait on each
    other's connections for ever. (The bound is a deadlock guard, not a speed check.)"""
    small = store_settings.model_copy(update={"pg_pool_min": 1, "pg_pool_max": 2})
    async with await Strongroom.open(small, clock=clock) as app:
        manager = SecretsManager(app)
        written = await seed_versions(manager, secrets_count=2, versions=2)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(manager.rotate_master_key(), manager.rotate_master_key()),
                timeout=DEADLOCK_GUARD_SECONDS,
            )
        except TimeoutError:
            pytest.fail("two concurrent rotations on a pool of 2 connections deadlocked")
        assert sorted(r["key_version"] for r in results) == [2, 3]
        await assert_all_readable(manager, written)
