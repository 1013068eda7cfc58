"""The outbox that copies writes to secondary vaults, on SQLite and PostgreSQL: a recorded
write is held until it is done, rows coalesce per (vault, name), a lease keeps two copiers
apart, and a copy that raced a newer write leaves the row for another pass."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers_settings import PG_URL, drop_schema
from strongroom.db.replication_outbox import (
    HOLD_US,
    PostgresReplicationOutbox,
    ReplicationOutbox,
    SqliteReplicationOutbox,
)
from strongroom.db.sqlite_db import SqliteDatabase

A, B = "https://vault-a.example", "https://vault-b.example"
T0 = 1_800_000_000_000_000
LEASE = 60_000_000


@pytest.fixture(params=["sqlite", "postgres"])
async def outbox(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ReplicationOutbox]:
    store: ReplicationOutbox
    schema = f"t_{secrets.token_hex(6)}"
    if request.param == "sqlite":
        store = SqliteReplicationOutbox(SqliteDatabase(tmp_path / "state.db"))
    else:
        store = PostgresReplicationOutbox(PG_URL, schema=schema)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        if request.param == "postgres":
            await drop_schema(schema)


async def test_a_write_is_held_until_it_is_done(outbox: ReplicationOutbox) -> None:
    recorded = await outbox.enqueue([A, B], "Fleet-DB", T0)
    assert recorded.generations == {A: 1, B: 1}
    assert await outbox.is_pending(A, "fleet-db")  # names compare case-insensitively
    assert await outbox.claim(T0 + 1, LEASE, 10) == []  # the write may still be in flight
    await outbox.ready(recorded, T0 + 2)
    claimed = await outbox.claim(T0 + 3, LEASE, 10)
    assert sorted((p.target, p.name, p.generation) for p in claimed) == [
        (A, "Fleet-DB", 1), (B, "Fleet-DB", 1)
    ]  # fmt: skip


async def test_a_write_whose_process_died_falls_due_after_the_hold(
    outbox: ReplicationOutbox,
) -> None:
    await outbox.enqueue([A], "fleet-db", T0)
    assert await outbox.claim(T0 + HOLD_US - 1, LEASE, 10) == []
    assert [p.name for p in await outbox.claim(T0 + HOLD_US, LEASE, 10)] == ["fleet-db"]


async def test_a_lease_keeps_a_second_copier_off_until_it_expires(
    outbox: ReplicationOutbox,
) -> None:
    await outbox.ready(await outbox.enqueue([A], "fleet-db", T0), T0)
    first = await outbox.claim(T0 + 1, LEASE, 10)
    assert len(first) == 1
    assert await outbox.claim(T0 + 2, LEASE, 10) == []
    again = await outbox.claim(T0 + 2 + LEASE, LEASE, 10)  # the first copier died
    assert [p.generation for p in again] == [1]


async def test_a_copy_that_raced_a_newer_write_leaves_the_row(outbox: ReplicationOutbox) -> None:
    await outbox.ready(await outbox.enqueue([A], "fleet-db", T0), T0)
    (item,) = await outbox.claim(T0 + 1, LEASE, 10)
    newer = await outbox.enqueue([A], "fleet-db", T0 + 2)  # written while the copy ran
    assert newer.generations == {A: 2}
    await outbox.done(item)
    assert await outbox.is_pending(A, "fleet-db")
    assert await outbox.claim(T0 + 3, LEASE, 10) == []  # still held: the newer write is not done
    await outbox.ready(newer, T0 + 4)
    (again,) = await outbox.claim(T0 + 5, LEASE, 10)  # due at once, not after the lease
    assert again.generation == 2
    await outbox.done(again)
    assert not await outbox.is_pending(A, "fleet-db")
    assert await outbox.backlog() == []


async def test_an_older_writes_ready_does_not_release_a_newer_one(
    outbox: ReplicationOutbox,
) -> None:
    older = await outbox.enqueue([A], "fleet-db", T0)
    await outbox.enqueue([A], "fleet-db", T0 + 1)  # still in flight
    await outbox.ready(older, T0 + 2)
    assert await outbox.claim(T0 + 3, LEASE, 10) == []


async def test_a_failed_copy_waits_and_counts_attempts(outbox: ReplicationOutbox) -> None:
    await outbox.ready(await outbox.enqueue([A, B], "fleet-db", T0), T0)
    claimed = {p.target: p for p in await outbox.claim(T0 + 1, LEASE, 10)}
    await outbox.failed(claimed[A], "store_unavailable", T0 + 1_000_000)
    await outbox.done(claimed[B])
    assert await outbox.claim(T0 + 2, LEASE, 10) == []
    (retry,) = await outbox.claim(T0 + 1_000_000, LEASE, 10)
    assert (retry.target, retry.attempts) == (A, 1)
    backlog = await outbox.backlog()
    assert [(b.target, b.names, b.oldest_us) for b in backlog] == [(A, 1, T0)]
