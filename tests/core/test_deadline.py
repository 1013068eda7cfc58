"""``within``: a deadline that holds even when the awaited work is slow to cancel."""

from __future__ import annotations

import asyncio

import pytest

from strongroom.core.deadline import within


async def test_the_result_within_the_deadline() -> None:
    async def quick() -> int:
        await asyncio.sleep(0)
        return 7

    assert await within(5, quick()) == 7


async def test_an_error_passes_through() -> None:
    async def failing() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        await within(5, failing())


async def test_a_deadline_is_kept_when_cancelling_takes_longer() -> None:
    """As a driver whose server stopped answering: it holds its cancellation for a long time.
    ``asyncio.wait_for`` would wait for it; ``within`` answers at the deadline."""
    release = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            await release.wait()  # the cancellation takes as long as the test wants
            raise

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(within(0.05, stubborn()), 10)  # 10: a bound, not a measure
    await asyncio.wait_for(cancelled.wait(), 10)  # the work was asked to stop
    release.set()
    with pytest.raises(TimeoutError):  # what wait_for does: it waits for the cancellation
        await asyncio.wait_for(asyncio.wait_for(stubborn_forever(), 0.05), 0.5)


async def stubborn_forever() -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await asyncio.sleep(3600)
        raise
