"""New versions of one name from many callers, committed together.

Every new version of a secret takes that secret's row lock, from reading its state to the
commit, so writers of one name take turns however many there are; on PostgreSQL each turn
costs round trips and a WAL flush. Here the first writer of a name commits, and the writers
that arrive meanwhile wait in line in this process; when its commit is done it takes everyone
waiting and commits them in one transaction, and so on until nobody waits. Each caller gets its
own version, in the order they arrived, and the rows are those the writes one after another
would have left. A failed batch fails each of its callers with the same error; a batch whose
committing caller is cancelled fails the others with StoreUnavailableError (try again). A
batch may also fail one caller alone (its input was refused) by returning :class:`Failed` as
that caller's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from strongroom.core.errors import StoreUnavailableError

__all__ = ["Failed", "NameBatches"]

T = TypeVar("T")
R = TypeVar("R")

Waiting = list[tuple[T, "asyncio.Future[R]"]]


@dataclass(frozen=True, slots=True)
class Failed:
    """One caller's result in a batch that went on without it: the error it gets."""

    error: Exception


class NameBatches(Generic[T, R]):
    """``submit(key, item)``: ``commit(key, items)`` runs for batches of a key's items, one
    batch at a time per key, and returns one result per item, in order."""

    def __init__(self, commit: Callable[[str, list[T]], Awaitable[list[R | Failed]]]) -> None:
        self._commit = commit
        self._waiting: dict[str, list[tuple[T, asyncio.Future[R]]]] = {}

    async def submit(self, key: str, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.get(key)
        if waiting is not None:  # a batch of this key is committing: join the next one
            waiting.append((item, future))
            return await future
        self._waiting[key] = waiting = []
        batch = [(item, future)]
        try:
            while batch:
                await self._run(key, batch)
                batch = waiting[:]
                waiting.clear()
        except BaseException:
            interrupted = StoreUnavailableError(
                "the write was interrupted before it was committed; try again"
            )
            for _, other in [*batch, *waiting]:
                if other is not future and not other.done():
                    other.set_exception(interrupted)
            raise
        finally:
            del self._waiting[key]
        return future.result()

    async def _run(self, key: str, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        live = [(item, future) for item, future in batch if not future.done()]
        if not live:
            return  # every caller of this batch gave up before it began
        try:
            results = await self._commit(key, [item for item, _ in live])
        except Exception as exc:  # the batch's error is each of its callers' error
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(live, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Failed):
                future.set_exception(result.error)
            else:
                future.set_result(result)
