"""Pushed changes wait out the read window: whoever reads a secret back because the change feed
or a webhook named it gets the new value, whichever worker answers (SQLite, PostgreSQL).

Each store answers a process's reads of a secret from the row it fetched within the last read
window (test_recent_rows). Here a second wiring over the same store plays the other worker: it
reads the secret (its row is now fresh for a window), the first wiring changes it, and the
moment the feed event or the webhook arrives, the second wiring reads again. The feed and the
webhooks leave no sooner than a window after the change, so that read always sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import pytest

from helpers_notify import Receiver, http_receiver
from strongroom import EventSubscriptions, SecretsManager, Settings, Strongroom
from strongroom.services.events.feed import FeedEvent, feed_for

pytestmark = pytest.mark.stores("sqlite", "postgres")

NAME = "pushed-dispatch-key"
#: The longest window allowed: wide enough that the change arrives within it unless held.
WINDOW = 0.05


@pytest.fixture
def window_settings(store_settings: Settings) -> Settings:
    return store_settings.model_copy(
        update={"read_window_seconds": WINDOW, "webhook_allow_loopback": True}
    )


@pytest.fixture
async def workers(window_settings: Settings) -> AsyncIterator[tuple[Strongroom, Strongroom]]:
    """(the worker that changes the secret, another worker over the same store)."""
    here = await Strongroom.open(window_settings)
    try:
        there = await Strongroom.open(window_settings)
    except BaseException:
        await here.close()
        raise
    try:
        yield here, there
    finally:
        await there.close()
        await here.close()


async def test_a_feed_event_is_read_back_as_the_new_value_on_another_worker(
    workers: tuple[Strongroom, Strongroom],
) -> None:
    here, there = workers
    changer, reader = SecretsManager(here), SecretsManager(there)
    await changer.create_secret(NAME, "first")
    events = feed_for(here).follow(None)
    waiting = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.2)  # the feed follows from now on
    assert await reader.get_secret(NAME) == "first"  # the other worker's row: fresh a window
    await changer.update_secret(NAME, "second")
    event = await asyncio.wait_for(waiting, 10)
    assert event is not None
    assert (event.kind, event.name) == ("secret.updated", NAME)
    assert await reader.get_secret(NAME) == "second"
    await cast(AsyncGenerator[FeedEvent | None, None], events).aclose()


async def test_a_webhook_is_read_back_as_the_new_value_on_another_worker(
    workers: tuple[Strongroom, Strongroom],
) -> None:
    here, there = workers
    changer, reader = SecretsManager(here), SecretsManager(there)
    async with http_receiver() as receiver:
        receiver.hold = {"secret.updated"}
        await EventSubscriptions(here).subscribe(receiver.url(), NAME, ["secret.updated"])
        await changer.create_secret(NAME, "first")
        assert await reader.get_secret(NAME) == "first"
        await changer.update_secret(NAME, "second")
        await asyncio.wait_for(receiver.held.wait(), 10)  # the delivery has arrived
        assert await reader.get_secret(NAME) == "second"
        receiver.release.set()
        await here.events.drain()
    assert _kinds(receiver) == ["secret.updated"]


def _kinds(receiver: Receiver) -> list[str]:
    return [req.headers["x-strongroom-event"] for req in receiver.requests]
