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
