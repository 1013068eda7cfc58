"""Per-process snapshots of what is costly to compute for a page, refreshed in the background.

A page reads the last snapshot; once it is older than its age limit, the next read starts one
refresh (never two) and still answers from the snapshot it has. Only the first read ever waits.
So a listing of 10,000 secrets or a run of every threat rule costs a page nothing, and what a
page shows is at most the age limit plus one refresh old (each page says when it was taken).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strongroom.core.logging import get_logger

__all__ = ["Snapshot", "Snapshots"]

log = get_logger("strongroom.ui")


@dataclass(frozen=True, slots=True)
class Snapshot:
    value: Any
    taken_at: datetime
    monotonic: float


class Snapshots:
    """Snapshots by key, each refreshed after ``max_age`` seconds."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._found: dict[object, Snapshot] = {}
        self._running: dict[object, asyncio.Task[Snapshot]] = {}

    async def get(
        self, key: object, make: Callable[[], Awaitable[Any]], now: Callable[[], datetime]
    ) -> Snapshot:
        found = self._found.get(key)
        if found is not None and time.monotonic() - found.monotonic < self.max_age:
            return found
        task = self._running.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._take(key, make, now))
            task.add_done_callback(_retrieved)
            self._running[key] = task
        if found is not None:
            return found  # stale: answer now, the refresh lands for the next read
        return await asyncio.shield(task)

    async def _take(
        self, key: object, make: Callable[[], Awaitable[Any]], now: Callable[[], datetime]
    ) -> Snapshot:
        try:
            taken = now()
            snapshot = Snapshot(await make(), taken, time.monotonic())
            self._found[key] = snapshot
            return snapshot
        except Exception as exc:
            log.warning("console snapshot failed", error=type(exc).__name__)
            raise
        finally:
            self._running.pop(key, None)

    def clear(self) -> None:
        self._found.clear()


def _retrieved(task: asyncio.Task[Snapshot]) -> None:
    """A refresh nobody waited for still has its failure read (it was logged)."""
    if not task.cancelled():
        task.exception()
