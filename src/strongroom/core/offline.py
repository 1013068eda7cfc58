"""The offline bound of an edge replica: how long it may serve while cut off from upstream.

Pure state over an injected monotonic clock, so a wrong wall clock cannot stretch the bound and
tests move time without sleeping. Time offline counts from the last moment the upstream was
heard from (a change or a keep-alive), not from when the loss was noticed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from strongroom.core.errors import EdgeOfflineTooLongError

__all__ = ["OfflineBound"]


class OfflineBound:
    """Online while the change feed is connected and the replica reconciled; otherwise the
    time since the upstream was last heard from must stay within ``max_offline`` seconds.

    ``carried`` is the time already spent offline before this process started (from the wall
    clock of the last sync, read once at start); None means the replica never synchronised, so
    nothing is served until it does.
    """

    def __init__(
        self,
        max_offline: float,
        *,
        carried: float | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_offline <= 0:
            raise ValueError("the offline bound must be positive")
        self.max_offline = max_offline
        self._monotonic = monotonic
        self._online = False
        now = monotonic()
        self._last_heard = now - carried if carried is not None else -math.inf

    @property
    def online(self) -> bool:
        return self._online

    def heard(self) -> None:
        """The upstream spoke (an event or a keep-alive)."""
        self._last_heard = self._monotonic()

    def mark_online(self) -> None:
        self._online = True
        self.heard()

    def mark_offline(self) -> None:
        """The link is lost: offline time runs from the last moment it was heard from."""
        self._online = False

    def offline_for(self) -> float:
        """Seconds offline (0 while online; infinite for a replica that never synchronised)."""
        if self._online:
            return 0.0
        return max(0.0, self._monotonic() - self._last_heard)

    def remaining(self) -> float:
        """Seconds left before reads are refused (0 once they are)."""
        return max(0.0, self.max_offline - self.offline_for())

    def check(self) -> None:
        """Raise unless the replica may serve a value now."""
        offline = self.offline_for()
        if offline <= self.max_offline:
            return
        if math.isinf(offline):
            raise EdgeOfflineTooLongError(
                "this edge has not synchronised with its upstream yet: it serves nothing until "
                "it does"
            )
        raise EdgeOfflineTooLongError(
            f"this edge has been cut off from its upstream for {offline:.0f} s, past its bound "
            f"of {self.max_offline:.0f} s (STRONGROOM_EDGE_MAX_OFFLINE): refused until it "
            "reconnects"
        )
