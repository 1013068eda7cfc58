"""Several processes appending to one PostgreSQL audit chain: none is starved, none fails.

Each process caches the chain's head; when another process moved it, the batch is chained
again under a row lock on the head. Two store instances with pools of their own stand in for
two processes (each has its own cached head), interleaving batches as busy workers do.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from helpers_settings import PG_URL
from strongroom.core.audit import AuditAction, AuditEvent, AuditResult, ChainKey
from strongroom.db import audit_postgres
from strongroom.db.audit_postgres import PostgresAuditStore

BATCHES, BATCH = 60, 8


def _event(writer: str) -> AuditEvent:
    return AuditEvent(
        action=AuditAction.READ,
        resource_name="fleet-db",
        timestamp=datetime.now(UTC),
        result=AuditResult.SUCCESS,
        actor_id=writer,
        actor_ip=None,
        actor_user_agent=None,
        details={},
        error_message=None,
        error_code=None,
        duration_ms=0,
    )


async def test_interleaved_writers_all_succeed_on_one_unbroken_chain(pg_schema: str) -> None:
    key = ChainKey(b"k" * 32)
    stores = [PostgresAuditStore(PG_URL, schema=pg_schema) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        ids: list[int] = []

        async def writer(store: PostgresAuditStore, name: str) -> None:
            for _ in range(BATCHES):
                ids.extend(await store.append([_event(name)] * BATCH, key))

        await asyncio.gather(
            *(writer(store, f"w{i}-{t}") for i, store in enumerate(stores) for t in range(3))
        )
        total = 2 * 3 * BATCHES * BATCH
        assert sorted(ids) == list(range(1, total + 1))  # no gap, no id twice
        state = await stores[0].chain_state()
        assert state.last_seq == total
        stored = [event async for chunk in stores[1].scan(0, total, 1000) for event in chunk]
        assert len(stored) == total
        prev = stored[0].prev_hash
        for event in stored:
            assert event.prev_hash == prev
            assert key.link(prev, event.event, event.id) == event.chain_hash
            prev = event.chain_hash
    finally:
        for store in stores:
            await store.close()


async def test_after_losing_the_head_a_writer_chains_under_the_lock_for_a_while(
    pg_schema: str,
) -> None:
    """While writers alternate, a batch goes straight to the locked path (the optimistic
    statement would wait for the other's commit and fail); the chain stays unbroken."""
    key = ChainKey(b"k" * 32)
    first, second = (PostgresAuditStore(PG_URL, schema=pg_schema) for _ in range(2))
    for store in (first, second):
        await store.open()
    try:
        ids = await first.append([_event("a")], key)
        ids += await second.append([_event("b")], key)  # second never saw the head: locked
        ids += await first.append([_event("a")], key)  # first's head moved: tries, then locks
        assert first._locked_batches == audit_postgres._LOCKED_AFTER_CONFLICT
        ids += await first.append([_event("a")], key)
        assert first._locked_batches == audit_postgres._LOCKED_AFTER_CONFLICT - 1
        assert ids == [1, 2, 3, 4]
        stored = [event async for chunk in second.scan(0, 4, 10) for event in chunk]
        prev = stored[0].prev_hash
        for event in stored:
            assert key.link(prev, event.event, event.id) == event.chain_hash
            prev = event.chain_hash
    finally:
        for store in (first, second):
            await store.close()
