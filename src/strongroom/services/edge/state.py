"""What an edge remembers across restarts (the wall-clock time it was last known in sync), and
the synchroniser's counters for its status.

Read once at start to charge the time spent down against the offline bound; from then on the
bound runs on the monotonic clock. A wall clock that went backwards since the last sync cannot
be trusted to say how long the edge was away, so the replica counts as never synchronised
(fail-closed) until it reconnects.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from strongroom.core.clock import Clock, system_clock

__all__ = ["EdgeState", "EdgeSyncState"]


@dataclass
class EdgeState:
    """The edge's small state file (mode 0600, replaced atomically)."""

    path: Path
    clock: Clock = system_clock

    def carried_offline(self) -> float | None:
        """Seconds since the last sync by the wall clock; None: never synced, or unknowable."""
        try:
            doc = json.loads(self.path.read_text("utf-8"))
            synced = datetime.fromisoformat(str(doc["synced_at"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if synced.tzinfo is None:
            synced = synced.replace(tzinfo=UTC)
        elapsed = (self.clock() - synced).total_seconds()
        return None if elapsed < 0 else elapsed

    def record_sync(self) -> None:
        """Now is a moment the replica was known to match the upstream."""
        data = json.dumps({"synced_at": self.clock().isoformat()}).encode()
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)


@dataclass
class EdgeSyncState:
    """Counters for status and metrics."""

    events_applied: int = 0
    reconciliations: int = 0
    last_event_id: str | None = None
    #: Seconds between the upstream's change and the edge applying it (last event).
    lag_seconds: float = 0.0
    #: Why the last connection failed (``upstream_unreachable``, ``site_credential_refused``,
    #: ``upstream_certificate_refused``), None while online.
    upstream_error: str | None = None
    errors: list[str] = field(default_factory=list)
