"""An audit batch: the events waiting for a commit, taken as late as the store allows.

A store with ``append_taking`` (SQLite) has its writer thread take the batch's events once it
holds the file. Server workers are processes that take turns on one file, so events recorded
while another process commits join the commit this one is waiting to make, not the one after.
Other stores are handed the events when the batch starts. Batches go one at a time: letting
the next one wait at the writer while this one commits was measured, and made smaller, more
frequent commits that two processes then took turns on (slower).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from strongroom.core.audit import AuditEvent
from strongroom.core.errors import AuditUnavailableError

__all__ = ["MAX_BATCH", "Batch", "Pending", "settle"]

#: The most events one batch takes.
MAX_BATCH = 1000

Pending = deque[tuple[AuditEvent, asyncio.Future[None]]]


class Batch:
    """Takes once, from the pending queue, on whichever thread calls it. ``close`` (on the
    event loop, after the append, its failure or its timeout) stops a take that has not
    happened yet, so nothing is written after its callers were answered, and returns whom it
    took; a failed batch that took nothing yet takes now, so that its callers are failed."""

    __slots__ = ("_closed", "_lock", "_pending", "_taken", "took")

    def __init__(self, pending: Pending) -> None:
        self._lock = threading.Lock()
        self._pending = pending
        self._closed = False
        self._taken: list[tuple[AuditEvent, asyncio.Future[None]]] = []
        #: True once it took.
        self.took = False

    def _take(self) -> None:
        pending, taken = self._pending, self._taken
        while len(taken) < MAX_BATCH:
            try:
                taken.append(pending.popleft())
            except IndexError:  # empty (a stopped writer may empty it from the loop meanwhile)
                break
        self._closed = self.took = True

    def __call__(self) -> list[AuditEvent]:
        """The events to write now (none once closed)."""
        with self._lock:
            if self._closed:
                return []
            self._take()
        return [event for event, _ in self._taken]

    def close(self, *, failed: bool) -> list[tuple[AuditEvent, asyncio.Future[None]]]:
        with self._lock:
            if not self._closed and failed:
                self._take()
            self._closed = True
            return self._taken


def settle(
    batch: list[tuple[AuditEvent, asyncio.Future[None]]], error: AuditUnavailableError | None
) -> None:
    """Answer every caller of ``batch``: committed (``None``) or refused with ``error``."""
    for _, future in batch:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
