"""A revoked token, a revoked identity or a changed policy is refused by every other process at
once, not after STRONGROOM_AUTH_CACHE_SECONDS: two wirings on one store stand for two workers
(each has its own cache of verified tokens, and on PostgreSQL its own LISTEN connection)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from helpers_settings import make_settings, new_master_key
from strongroom import Settings, Strongroom
from strongroom.core.errors import AuthenticationError
from strongroom.core.policy import Action, Policy
from strongroom.services.access.control import Principal

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
