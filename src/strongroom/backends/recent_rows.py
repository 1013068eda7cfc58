"""Secret rows fetched moments ago, reused by the reads that follow them in this process.

Reading one secret is one indexed SELECT: on PostgreSQL a round trip, most of what an audited
read costs the database and the worker; on SQLite about a sixth of the event loop's time per
read, as the audit writer commits beside it. Under load the same hot secret is read many times
per millisecond, so a row fetched less than ``window_seconds`` ago (10 ms by default) answers
the reads that come after it, and the bound on staleness is time alone:

* A change committed by *another* process is seen by every read here that starts more than
  ``window_seconds`` after it committed, whatever happens to any notification: an entry's age
  counts from the moment its SELECT was sent, not from when the answer arrived.
* A change made by *this* process (a write, a property change, a delete, a purge, a
  revocation) drops the name's rows when it returns, so this process reads its own writes at
  once; a SELECT still in flight across such a change is never kept.
* Only rows the store found are kept: a miss (not found, deleted) asks the database each time.

``window_seconds=0`` turns it off: every read is its own SELECT, as strict as the database.
What is kept is the row as fetched (ciphertext, MACs): it is checked and opened by the store as
any other row, never turned into text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["DEFAULT_WINDOW_SECONDS", "RecentRows"]

#: The default bound on how late another process's change may reach a read here.
DEFAULT_WINDOW_SECONDS = 0.010
#: More hot secrets (or versions of one) than this is rare: the map starts over rather than
#: sort by age.
MAX_NAMES, MAX_VERSIONS = 4096, 64


class RecentRows:
    """(name key, requested version or None for the current one) -> the row fetched for it,
    while younger than the window."""

    def __init__(
        self,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        *,
        max_names: int = MAX_NAMES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = max(0.0, float(window_seconds))
        self._max = max_names
        self._clock = clock
        # name key -> version -> (when its SELECT was sent, the row)
        self._rows: dict[str, dict[str | None, tuple[float, Any]]] = {}
        self._epoch = object()  # replaced at each change here: a fetch across one is not kept

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._rows.values())

    async def fetch(
        self, name_key: str, version: str | None, load: Callable[[], Awaitable[Any]]
    ) -> Any:
        """The row for ``(name_key, version)``: a recent one, else ``load()``'s (kept if
        nothing changed here meanwhile). Whatever ``load`` raises is raised; nothing is kept."""
        if self.window_seconds <= 0:
            return await load()
        sent = self._clock()
        if (kept := self._recent(name_key, version, sent)) is not None:
            return kept[1]
        epoch = self._epoch
        row = await load()
        if epoch is self._epoch:
            self._keep(name_key, version, sent, row)
        return row

    def fetch_now(self, name_key: str, version: str | None, load: Callable[[], Any]) -> Any:
        """:meth:`fetch` for a store that reads without yielding (SQLite): nothing can change
        here between the SELECT and keeping its row."""
        if self.window_seconds <= 0:
            return load()
        sent = self._clock()
        if (kept := self._recent(name_key, version, sent)) is not None:
            return kept[1]
        row = load()
        self._keep(name_key, version, sent, row)
        return row

    def _recent(self, name_key: str, version: str | None, now: float) -> tuple[float, Any] | None:
        versions = self._rows.get(name_key)
        kept = versions.get(version) if versions is not None else None
        if kept is not None and now - kept[0] < self.window_seconds:
            return kept
        return None

    def _keep(self, name_key: str, version: str | None, sent: float, row: Any) -> None:
        versions = self._rows.get(name_key)
        if versions is None:
            if len(self._rows) >= self._max:
                self._rows.clear()
            versions = self._rows[name_key] = {}
        elif len(versions) >= MAX_VERSIONS:
            versions.clear()
        kept = versions.get(version)
        if kept is None or kept[0] < sent:  # an older fetch never replaces a newer one
            versions[version] = (sent, row)

    def drop(self, name_key: str) -> None:
        """This process changed (or may have changed) ``name_key``: read it afresh."""
        self._epoch = object()
        self._rows.pop(name_key, None)

    def clear(self) -> None:
        """This process changed (or may have changed) any secret: read every one afresh."""
        self._epoch = object()
        self._rows.clear()
