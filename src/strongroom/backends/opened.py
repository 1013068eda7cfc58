"""Versions already checked and decrypted, kept per process for rows that have not changed.

A read fetches the secret's joined row (or takes one fetched within the read window, see
:mod:`strongroom.backends.recent_rows`), so a revocation, a new version, a disabled version or a
tampered row is seen by the next fetch; but when the row is byte for byte the one this process
last checked and opened, checking its MACs and decrypting it again would give the same answer:
the bundle opened then is served instead. An entry is
used for at most ``ttl_seconds`` and the map holds at most ``max_entries``; a purge or a delete
in this process drops the name's entries at once. Values stay opaque
:class:`~strongroom.core.models.SecretValue` objects, as everywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from strongroom.core.models import SecretBundle

__all__ = ["OpenedVersions"]

#: How long an opened version may be reused for an unchanged row, and how many are kept.
TTL_SECONDS, MAX_ENTRIES = 30.0, 4096


@dataclass(frozen=True, slots=True)
class _Entry:
    row: Any  # the row as fetched (sqlite3.Row or asyncpg.Record): compared whole
    bundle: SecretBundle
    until: float


class OpenedVersions:
    """``(name key, requested version)`` -> the bundle opened from an identical row."""

    def __init__(
        self,
        *,
        ttl_seconds: float = TTL_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: dict[tuple[str, str | None], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, version: str | None, row: Any) -> SecretBundle | None:
        """The bundle opened from a row equal to ``row``, if that was less than the TTL ago."""
        entry = self._entries.get((key, version))
        if entry is None or entry.until <= self._clock() or entry.row != row:
            return None
        return entry.bundle

    def put(self, key: str, version: str | None, row: Any, bundle: SecretBundle) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()  # rare (more hot versions than entries): start over
        self._entries[(key, version)] = _Entry(row, bundle, self._clock() + self._ttl)

    def drop(self, key: str) -> None:
        """Forget every entry of one secret (it was deleted or purged here)."""
        for found in [k for k in self._entries if k[0] == key]:
            del self._entries[found]

    def clear(self) -> None:
        self._entries.clear()
