"""Writes of one name committed in batches (backends.write_batches): the first writer commits
alone, the writers that arrive meanwhile are committed together next, in arrival order, each
with its own result; a failed batch fails its callers only; a caller that gave up is left out;
a committing caller that is cancelled leaves nobody waiting. Real tasks on the running loop."""

from __future__ import annotations

import asyncio

import pytest

from strongroom.backends.write_batches import Failed, NameBatches
from strongroom.core.errors import StoreUnavailableError, ValidationError

CAP = 10.0


class Recorder:
    """A commit that records its batches and waits for a release before it returns."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[str]]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.fail: Exception | None = None

    async def commit(self, key: str, items: list[str]) -> list[str]:
        self.batches.append((key, list(items)))
        self.started.set()
        await asyncio.wait_for(self.release.wait(), CAP)
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        return [f"{key}:{item}" for item in items]


async def _started(recorder: Recorder) -> None:
    await asyncio.wait_for(recorder.started.wait(), CAP)
    recorder.started.clear()


async def _committing(recorder: Recorder) -> tuple[NameBatches[str, str], asyncio.Task[str]]:
    """Batches over ``recorder``, and a first writer of ``hot`` whose commit has begun."""
    batches: NameBatches[str, str] = NameBatches(recorder.commit)
    first = asyncio.create_task(batches.submit("hot", "a"))
    await _started(recorder)
    return batches, first


async def test_writers_that_arrive_meanwhile_share_the_next_batch_in_order() -> None:
    recorder = Recorder()
    batches: NameBatches[str, str] = NameBatches(recorder.commit)
    first = asyncio.create_task(batches.submit("hot", "a"))
    await _started(recorder)
    later = [asyncio.create_task(batches.submit("hot", item)) for item in "bcd"]
    other = asyncio.create_task(batches.submit("cold", "x"))  # another name: its own batch
    await _started(recorder)
    recorder.release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *later, other), CAP)
    assert results == ["hot:a", "hot:b", "hot:c", "hot:d", "cold:x"]
    assert recorder.batches == [("hot", ["a"]), ("cold", ["x"]), ("hot", ["b", "c", "d"])]
    assert await batches.submit("hot", "e") == "hot:e"  # nobody waits: a batch of its own
    assert recorder.batches[-1] == ("hot", ["e"])


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_goes_on() -> None:
    recorder = Recorder()
    recorder.fail = ValidationError("the first batch's own error")
    batches, first = await _committing(recorder)
    second = asyncio.create_task(batches.submit("hot", "b"))
    await asyncio.sleep(0)
    recorder.release.set()
    with pytest.raises(ValidationError, match="first batch's own error"):
        await asyncio.wait_for(first, CAP)
    assert await asyncio.wait_for(second, CAP) == "hot:b"


async def test_a_caller_that_gave_up_is_left_out_of_its_batch() -> None:
    recorder = Recorder()
    batches, first = await _committing(recorder)
    gone = asyncio.create_task(batches.submit("hot", "gone"))
    kept = asyncio.create_task(batches.submit("hot", "kept"))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.release.set()
    assert await asyncio.wait_for(kept, CAP) == "hot:kept"
    assert await asyncio.wait_for(first, CAP) == "hot:a"
    assert recorder.batches == [("hot", ["a"]), ("hot", ["kept"])]


async def test_a_cancelled_committer_leaves_nobody_waiting() -> None:
    recorder = Recorder()
    batches, first = await _committing(recorder)
    waiting = asyncio.create_task(batches.submit("hot", "b"))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(StoreUnavailableError, match="interrupted before it was committed"):
        await asyncio.wait_for(waiting, CAP)
    recorder.release.set()
    assert await asyncio.wait_for(batches.submit("hot", "c"), CAP) == "hot:c"


async def test_a_caller_refused_by_its_batch_fails_alone() -> None:
    async def commit(key: str, items: list[str]) -> list[str | Failed]:
        return [Failed(ValidationError(f"{item} refused")) if item.startswith("bad") else
                f"{key}:{item}" for item in items]  # fmt: skip

    batches: NameBatches[str, str] = NameBatches(commit)
    results = await asyncio.wait_for(
        asyncio.gather(*(batches.submit("hot", i) for i in ("a", "bad-b", "c")),
                       return_exceptions=True),
        CAP,
    )  # fmt: skip
    assert results[0] == "hot:a"
    assert isinstance(results[1], ValidationError)
    assert str(results[1]) == "bad-b refused"
    assert results[2] == "hot:c"
