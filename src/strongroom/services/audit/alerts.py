"""Threat alerts: the detection schedule tells the security team, once per threat.

Queries (``SecretsAudit.detect_suspicious_activity``, ``GET /v1/audit/threats``) only report;
they never notify, so reading the threats cannot flood anyone's inbox. The schedule runs the
rules every ``interval`` seconds and notifies only threats it has not alerted on within
``quiet_for`` (a threat is its type, actor, address and secret): a burst that goes on for an
hour is one alert, not sixty. Each process keeps what it alerted on in memory, so several
service processes may each alert once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strongroom.core.errors import StrongroomError
from strongroom.core.logging import get_logger
from strongroom.services.audit.threats import detect
from strongroom.services.notify import Notification

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = ["ThreatAlerts", "threat_key"]

log = get_logger("strongroom.audit")


def threat_key(threat: dict[str, Any]) -> tuple[str, str | None, str | None, str | None]:
    """What makes two detections the same threat (counts and times may grow)."""
    return (threat["type"], threat.get("actor_id"), threat.get("actor_ip"),
            threat.get("resource_name"))  # fmt: skip


class ThreatAlerts:
    """Runs the threat rules on a schedule and notifies each new threat once."""

    def __init__(
        self,
        app: Strongroom,
        *,
        failure_threshold: int = 5,
        window_minutes: int = 30,
        quiet_for: timedelta = timedelta(hours=24),
    ) -> None:
        self.app = app
        self.failure_threshold = failure_threshold
        self.window_minutes = window_minutes
        self.quiet_for = quiet_for
        self._alerted: dict[tuple[str, str | None, str | None, str | None], datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> list[dict[str, Any]]:
        """Detect now; notify the threats not alerted on lately. The new threats, if any."""
        store = self.app.audit.store
        if store is None:
            return []
        now = self.app.clock()
        found = await detect(
            store, self.app.threat_rules, now=now, resource_name=None, actor_id=None,
            failure_threshold=self.failure_threshold, window_minutes=self.window_minutes,
        )  # fmt: skip
        self._alerted = {k: t for k, t in self._alerted.items() if now - t < self.quiet_for}
        fresh = [t for t in found["threats"] if threat_key(t) not in self._alerted]
        if not fresh:
            return []
        for threat in fresh:
            self._alerted[threat_key(threat)] = now
        worst = fresh[0]["severity"]
        self.app.metrics.inc("suspicious_activity_alerts_total", len(fresh))
        self.app.notifier.send_later(
            Notification(
                kind="threat.detected",
                priority="critical" if worst == "critical" else "high",
                subject=f"strongroom: {len(fresh)} suspicious activities",
                fields={
                    "threats_detected": len(fresh),
                    "types": ",".join(sorted({t["type"] for t in fresh})),
                    "worst_severity": worst,
                    "window_minutes": self.window_minutes,
                },
                occurred_at=now,
            )
        )
        return fresh

    def start(self, interval: float) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def _run(self, interval: float) -> None:
        while True:
            try:
                await self.run_once()
            except StrongroomError as exc:  # a store that is down now may be back next time
                log.error("threat detection failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
