"""What happens when a stored row fails its MAC: refused where it was read, and here alerted
(a critical log line, a counter, a notification to the security team) and audited (an
``INTEGRITY`` event with the table and the row's name, never its content).

Stores call the alarm from wherever they found the row, the SQLite writer thread included;
the alarm hands the work to the event loop it was opened in.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from strongroom.core.audit import AuditAction, AuditEvent, AuditResult
from strongroom.core.clock import Clock
from strongroom.core.errors import StrongroomError
from strongroom.core.integrity import RowMac
from strongroom.core.logging import get_logger
from strongroom.core.metrics import Metrics
from strongroom.services.notify import Notification

if TYPE_CHECKING:
    from strongroom.services.audit.log import AuditLog
    from strongroom.services.notify import Dispatcher

__all__ = ["IntegrityAlarm"]

log = get_logger("strongroom.integrity")


class IntegrityAlarm:
    """The tamper hook of every store's :class:`RowMac`."""

    def __init__(self, metrics: Metrics, clock: Clock) -> None:
        self.metrics = metrics
        self.clock = clock
        self.notifier: Dispatcher | None = None
        self.audit: AuditLog | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, notifier: Dispatcher, audit: AuditLog) -> None:
        self.notifier, self.audit = notifier, audit
        self._loop = asyncio.get_running_loop()

    def row_mac(self, key: bytes) -> RowMac:
        return RowMac(key, self)

    def __call__(self, table: str, what: str) -> None:
        self.metrics.inc("integrity_violations_total", table=table)
        log.critical("a tampered row was refused", table=table, error=what)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._report, table, what)

    def _report(self, table: str, what: str) -> None:
        now = self.clock()
        if self.notifier is not None:
            self.notifier.send_later(
                Notification(
                    kind="integrity.tampered",
                    priority="critical",
                    subject="strongroom: a row changed outside strongroom was refused",
                    fields={"where": table, "reason": what},
                    occurred_at=now,
                )
            )
        if self.audit is not None and self.audit.enabled:
            event = AuditEvent.build(
                action=AuditAction.INTEGRITY, resource_name=None, timestamp=now,
                result=AuditResult.FAILURE, actor_id="strongroom", error_code="tampered",
                error_message=f"{what} was changed outside strongroom and is refused",
                details={"table": table},
            )  # fmt: skip
            task = asyncio.get_running_loop().create_task(self._record(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _record(self, event: AuditEvent) -> None:
        assert self.audit is not None  # noqa: S101 (checked before the task was made)
        # A failure is already logged critically by the audit log, and by the alarm above.
        with contextlib.suppress(StrongroomError):
            await self.audit.record(event)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
