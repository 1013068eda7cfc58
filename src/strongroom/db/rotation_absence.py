"""Names a process found without a rotation configuration, believed for a short while.

Every version written by hand restarts its secret's rotation schedule, so every update used to
look the schedule up: one more round trip per write, though most secrets have no schedule. The
rotation store remembers the names it found without one for :data:`ABSENCE_SECONDS`:

- a configuration made through the same store object (this process) is seen at once: its
  write forgets the name before and after it runs, and a lookup under way across either is
  not remembered (the epoch below);
- one made by another process is seen by this one's writes within :data:`ABSENCE_SECONDS`.
  Until then a hand-made version here does not restart that new schedule, so the secret may
  rotate earlier than it would have: never later, and never a schedule brought back or made.

Only absence is remembered: a configuration found is always read again, so a deleted one is
never restarted from memory (restarting one is an UPDATE, which creates nothing either way).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ABSENCE_SECONDS", "KnownAbsent"]

#: How long a name found without a rotation configuration is believed to have none.
ABSENCE_SECONDS = 1.0
#: Names remembered at most (the memory starts over when full).
MAX_NAMES = 10_000


class KnownAbsent:
    """Name -> when it was found without a configuration, for :data:`ABSENCE_SECONDS`."""

    __slots__ = ("_clock", "_found", "_seconds", "epoch")

    def __init__(
        self,
        *,
        seconds: float = ABSENCE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._clock = clock
        self._found: dict[str, float] = {}
        #: Moves on every :meth:`forget`: a lookup begun before it is not remembered.
        self.epoch = 0

    def believed(self, name: str) -> bool:
        """True while ``name`` is known to have no configuration."""
        found = self._found.get(name)
        return found is not None and self._clock() - found < self._seconds

    def note(self, name: str, since_epoch: int) -> None:
        """``name`` has no configuration, by a lookup begun at ``since_epoch``."""
        if since_epoch != self.epoch:
            return  # a configuration was written meanwhile: the lookup may predate it
        if len(self._found) >= MAX_NAMES:
            self._found.clear()
        self._found[name] = self._clock()

    def forget(self, name: str) -> None:
        """A configuration of ``name`` is being written here: believe nothing about it."""
        self.epoch += 1
        self._found.pop(name, None)
