"""Waiting for a store with a deadline that holds even when the store hangs.

``asyncio.wait_for`` and ``asyncio.timeout`` cancel the awaited work and then wait for the
cancellation to finish. A database driver whose server stopped answering may take as long to
cancel as it would have taken to answer (asyncpg waits for the server to acknowledge a cancelled
statement before it releases the connection), so the caller would hang anyway. :func:`within`
asks for the cancellation and returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["within"]

T = TypeVar("T")


def _forget(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned task's outcome, so nothing reports it as never retrieved."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """The result of ``awaitable``, or TimeoutError once ``seconds`` have passed; the work is
    then cancelled in the background, without waiting for it to stop."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except BaseException:
        task.cancel()
        task.add_done_callback(_forget)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        raise TimeoutError
    return task.result()
