"""A revoked token, a revoked identity or a changed policy is refused by every other process at
once, not after STRONGROOM_AUTH_CACHE_SECONDS: two wirings on one store stand for two workers
(each has its own cache of verified tokens, and on PostgreSQL its own LISTEN connection)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from helpers_settings import PG_URL, make_settings, new_master_key
from helpers_ticks import Ticks
from strongroom import Settings, Strongroom
from strongroom.core.errors import AuthenticationError, StrongroomError
from strongroom.core.policy import Action, Policy
from strongroom.db.cache_invalidation import SqliteCacheGenerations
from strongroom.db.sqlite_db import SqliteDatabase
from strongroom.services.access.control import Principal
from strongroom.services.access.invalidation import RECHECK_SECONDS, AccessInvalidation

#: Long enough that a refusal seen within the test cannot come from the cache expiring.
CACHE_SECONDS = 60.0


@pytest.fixture(params=["sqlite", "postgres"])
def worker_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    settings = make_settings(request.param, tmp_path, schema=schema, master_key=new_master_key())
    return settings.model_copy(update={"auth_cache_seconds": CACHE_SECONDS})


@pytest.fixture
async def workers(worker_settings: Settings) -> AsyncIterator[tuple[Strongroom, Strongroom]]:
    settings = worker_settings
    first = await Strongroom.open(settings)
    second = await Strongroom.open(settings)
    try:
        yield first, second
    finally:
        await second.close()
        await first.close()


async def refused_soon(app: Strongroom, token: str) -> AuthenticationError:
    """Wait (on the condition) until ``app`` refuses ``token``; fail after 5 seconds."""
    async with asyncio.timeout(5):
        while True:
            try:
                await app.access.authenticate(token)
            except AuthenticationError as exc:
                return exc
            await asyncio.sleep(0)


async def test_a_revoked_token_is_refused_by_the_other_worker_at_once(
    workers: tuple[Strongroom, Strongroom],
) -> None:
    first, second = workers
    issued = await first.access.create_token("svc-a")
    assert (await second.access.authenticate(issued.token)).identity == "svc-a"  # now cached
    await first.access.revoke_token(issued.record.id)
    error = await refused_soon(second, issued.token)
    assert "revoked" in str(error)


async def test_a_revoked_identity_loses_every_token_everywhere(
    workers: tuple[Strongroom, Strongroom],
) -> None:
    first, second = workers
    tokens = [(await first.access.create_token("svc-b")).token for _ in range(3)]
    other = (await first.access.create_token("svc-c")).token
    for token in [*tokens, other]:
        await second.access.authenticate(token)
    revoked = await first.access.revoke_identity("svc-b")
    assert len(revoked) == 3
    for token in tokens:
        await refused_soon(second, token)
    assert (await second.access.authenticate(other)).identity == "svc-c"


async def test_a_policy_change_reaches_the_other_worker_at_once(
    workers: tuple[Strongroom, Strongroom],
) -> None:
    first, second = workers
    await first.access.put_policy(Policy.build("reader", ["read:app-*"]))
    token = (await first.access.create_token("svc-d", policies=["reader"])).token
    assert (await second.access.authenticate(token)).may(Action.READ, "app-one")
    await first.access.put_policy(Policy.build("reader", ["read:other-*"]))
    await until(second, token, lambda p: not p.may(Action.READ, "app-one"))
    await first.access.detach("svc-d", "reader")
    await until(second, token, lambda p: not p.policies)


async def until(app: Strongroom, token: str, condition: Callable[[Principal], bool]) -> None:
    """Wait until ``token``'s principal in ``app`` meets ``condition``; fail after 5 seconds."""
    async with asyncio.timeout(5):
        while not condition(await app.access.authenticate(token)):  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0)


async def rename_generations(settings: Settings, old: str, new: str) -> None:
    """Rename the generation counters' table behind the wirings' backs (a bump then fails)."""
    if settings.state_in_postgres:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'ALTER TABLE "{settings.pg_schema}".{old} RENAME TO {new}')
        finally:
            await conn.close()
        return
    with sqlite3.connect(settings.sqlite_path) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


async def test_a_revocation_and_its_generation_bump_commit_together(
    workers: tuple[Strongroom, Strongroom], worker_settings: Settings
) -> None:
    """Token revocation and the access-generation bump are one transaction: when the bump
    cannot be written, the tokens stay as they were (nothing is revoked that another worker
    could go on serving from its cache), and once it can, both land."""
    first, second = workers
    issued = await first.access.create_token("svc-e")
    others = [(await first.access.create_token("svc-f")).record.id for _ in range(2)]
    await second.access.authenticate(issued.token)
    table = "strongroom_cache_generations"
    await rename_generations(worker_settings, table, "generations_away")
    try:
        with pytest.raises(StrongroomError):
            await first.access.revoke_token(issued.record.id)
        with pytest.raises(StrongroomError):
            await first.access.revoke_identity("svc-f")
    finally:
        await rename_generations(worker_settings, "generations_away", table)
    for token_id in [issued.record.id, *others]:
        assert (await first.access.get_token(token_id)).revoked_at is None
    assert (await second.access.authenticate(issued.token)).identity == "svc-e"

    before = await first.access.invalidation.epoch()
    await first.access.revoke_token(issued.record.id)
    assert (await first.access.get_token(issued.record.id)).revoked_at is not None
    assert await first.access.invalidation.epoch() != before
    await refused_soon(second, issued.token)
    assert sorted(await first.access.revoke_identity("svc-f")) == sorted(others)
    assert all([(await first.access.get_token(t)).revoked_at is not None for t in others])


async def _fresh_epoch(settings: Settings) -> object:
    reader = AccessInvalidation(SqliteCacheGenerations(SqliteDatabase(settings.sqlite_path)))
    await reader.open()
    try:
        return await reader.epoch()
    finally:
        await reader.close()


async def test_another_process_change_is_read_back_within_the_recheck_interval(
    tmp_path: Path,
) -> None:
    """Without notifications (SQLite), the shared counter is read back at most once per
    RECHECK_SECONDS: a change made elsewhere shows within that time, one made here at once."""
    settings = make_settings("sqlite", tmp_path, master_key=new_master_key())
    async with await Strongroom.open(settings) as elsewhere:
        clock = Ticks()
        here = AccessInvalidation(
            SqliteCacheGenerations(SqliteDatabase(settings.sqlite_path)), clock=clock
        )
        await here.open()
        try:
            await elsewhere.access.invalidation.changed()
            first = await here.epoch()  # the first call reads the counter as it is now
            assert first == await _fresh_epoch(settings)  # as a reader that never waited
            await elsewhere.access.invalidation.changed()
            clock.now += RECHECK_SECONDS / 2
            assert await here.epoch() == first  # trusted for the interval, not read back
            clock.now += RECHECK_SECONDS / 2
            second = await here.epoch()
            assert second != first  # read back once the interval is over
            here.committed()  # a change made in this process: at once, whatever the interval
            assert await here.epoch() != second
        finally:
            await here.close()
