"""The cache of verified tokens, on every store: a hit spares the token store a read, an entry
lasts the cache time and never past its token's expiry, and a token store that stops answering
fails the request within the audit timeout.

The cache's own clock is the process's monotonic one; these tests give the module a clock that
moves only when told to, so no test sleeps or depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from strongroom import Strongroom
from strongroom.core.clock import ManualClock
from strongroom.core.errors import AuthenticationError, StoreUnavailableError
from strongroom.services.access import control
from strongroom.services.access.control import AccessControl

pytestmark = pytest.mark.stores("sqlite", "postgres")


class Monotonic:
    """A stand-in for the ``time`` module as the access module uses it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    fake = Monotonic()
    monkeypatch.setattr(control, "time", fake)
    return fake


def count_reads(monkeypatch: pytest.MonkeyPatch, access: AccessControl) -> list[str]:
    """The token ids ``access`` reads from its store, in order (the real store answers)."""
    reads: list[str] = []
    real: Callable[[str], Awaitable[Any]] = access.store.get_token

    async def get_token(token_id: str) -> Any:
        reads.append(token_id)
        return await real(token_id)

    monkeypatch.setattr(access.store, "get_token", get_token)
    return reads


async def test_a_verified_token_is_served_from_the_cache_for_the_cache_time(
    app: Strongroom, monotonic: Monotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert app.settings.auth_cache_seconds == 1.0
    issued = await app.access.create_token("svc")
    reads = count_reads(monkeypatch, app.access)
    assert (await app.access.authenticate(issued.token)).identity == "svc"
    monotonic.now += 0.999
    assert (await app.access.authenticate(issued.token)).identity == "svc"
    assert reads == [issued.record.id]  # the second answer came from the cache
    monotonic.now += 0.001  # the entry ends at exactly the cache time
    assert (await app.access.authenticate(issued.token)).identity == "svc"
    assert reads == [issued.record.id] * 2


async def test_a_cached_entry_never_outlives_its_token(
    app: Strongroom, clock: ManualClock, monotonic: Monotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    lasting = AccessControl(app, app.access.store, app.access._key, 60.0, app.access.invalidation)
    issued = await lasting.create_token("svc", ttl=timedelta(seconds=2))
    reads = count_reads(monkeypatch, lasting)
    await lasting.authenticate(issued.token)
    monotonic.now += 1.5
    clock.advance(seconds=1.5)
    await lasting.authenticate(issued.token)
    assert len(reads) == 1
    monotonic.now += 0.5
    clock.advance(seconds=0.5)
    with pytest.raises(AuthenticationError, match="expired"):
        await lasting.authenticate(issued.token)


async def test_no_cache_time_means_every_request_reads_the_store(
    app: Strongroom, monotonic: Monotonic, monkeypatch: pytest.MonkeyPatch
) -> None:
    uncached = AccessControl(app, app.access.store, app.access._key, 0.0, app.access.invalidation)
    issued = await uncached.create_token("svc")
    reads = count_reads(monkeypatch, uncached)
    for _ in range(3):
        await uncached.authenticate(issued.token)
    assert len(reads) == 3


async def test_a_token_store_that_stops_answering_fails_within_the_audit_timeout(
    app: Strongroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = await app.access.create_token("svc")
    monkeypatch.setattr(
        app, "settings", app.settings.model_copy(update={"audit_timeout_seconds": 0.05})
    )
    hung = asyncio.Event()

    async def get_token(token_id: str) -> Any:
        await hung.wait()  # never set: the store stopped answering

    monkeypatch.setattr(app.access.store, "get_token", get_token)
    async with asyncio.timeout(10):  # a missing deadline fails here instead of hanging
        with pytest.raises(StoreUnavailableError, match="did not answer"):
            await app.access.authenticate(issued.token)
        with pytest.raises(StoreUnavailableError, match="did not answer"):
            await app.access.resume_token(issued.record.id)
