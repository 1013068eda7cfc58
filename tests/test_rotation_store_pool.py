"""The PostgreSQL rotation store's connection pool: its bounds, and each way it can fail (a
server it cannot reach, a server that refuses a statement, a store already closed) as a typed
error that names the store, on the real server."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from helpers_notify import free_port
from helpers_settings import PG_URL
from strongroom.core.errors import StoreUnavailableError
from strongroom.db.rotation_store import PostgresRotationStore, WorkerFilter

STORE = "the PostgreSQL rotation store"


async def test_the_pool_holds_one_to_four_connections_and_closes_once(pg_schema: str) -> None:
    store = PostgresRotationStore(PG_URL, schema=pg_schema)
    await store.open()
    try:
        pool = store._pool
        assert (pool.get_min_size(), pool.get_max_size()) == (1, 4)
        assert await store.list_all() == []
    finally:
        await store.close()
    assert pool.is_closing()
    await store.close()  # a second close is harmless
    for call in (store.list_all(), store.delete("db-password")):
        with pytest.raises(StoreUnavailableError, match=f"^{STORE} is closed$"):
            await call


async def test_a_store_never_opened_is_closed(pg_schema: str) -> None:
    store = PostgresRotationStore(PG_URL, schema=pg_schema)
    await store.close()  # nothing to close
    with pytest.raises(StoreUnavailableError, match=f"^{STORE} is closed$"):
        await store.list_all()


async def test_a_server_it_cannot_reach_fails_the_open_with_a_typed_error(pg_schema: str) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    store = PostgresRotationStore(unreachable, schema=pg_schema)
    with pytest.raises(StoreUnavailableError, match=f"^cannot open {STORE} "):
        await store.open()


async def test_a_statement_the_server_refuses_is_a_typed_error(pg_schema: str) -> None:
    store = PostgresRotationStore(PG_URL, schema=pg_schema)
    await store.open()
    try:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP TABLE "{pg_schema}".secrets_rotation_config CASCADE')
        finally:
            await conn.close()
        due = store.worker_due(datetime.now(UTC), 10, WorkerFilter())
        for call in (store.list_all(), store.delete("db-password"), due):
            with pytest.raises(StoreUnavailableError, match=f"^{STORE} failed "):
                await call
    finally:
        await store.close()
