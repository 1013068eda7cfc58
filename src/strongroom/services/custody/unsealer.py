"""An unseal in progress for a sealed service: shares taken one at a time, rate-limited per
client address, each attempt remembered (without the share) and written to the audit log as
soon as there is one to write to, that is once the service is unsealed."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from strongroom.core.audit import AuditAction, AuditEvent, AuditResult
from strongroom.core.config import Settings
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import (
    CustodyError,
    RateLimitedError,
    ShareError,
    StoreUnavailableError,
)
from strongroom.core.logging import get_logger
from strongroom.core.ratelimit import RateLimiter
from strongroom.core.unseal import SealRecord, UnsealProgress
from strongroom.db.seal_store import read_seal
from strongroom.services.wiring import Strongroom

__all__ = ["UNSEAL_BURST", "UNSEAL_RATE", "Custody"]

log = get_logger("strongroom.custody")

#: Refused shares one client address may give: a burst of 10, then one every 2 seconds (an
#: accepted share costs nothing: key holders behind one address are never held back).
#: Guessing a share is hopeless anyway (33 words, a checksum); this keeps log and CPU quiet.
UNSEAL_RATE, UNSEAL_BURST = 0.5, 10
#: Attempts kept for the audit log while sealed (the oldest dropped first, and counted).
_KEPT = 1000
UNSEAL_ACTOR = "unseal"


@dataclass(frozen=True, slots=True)
class Attempt:
    at: datetime
    ip: str | None
    user_agent: str | None
    progress: int
    code: str | None  # None: accepted


class Custody:
    """The seal record and the unseal under way (one per process)."""

    def __init__(
        self,
        settings: Settings,
        record: SealRecord,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.record = record
        self.progress = UnsealProgress(record, timeout=settings.unseal_timeout_seconds)
        self.limiter = RateLimiter(UNSEAL_RATE, UNSEAL_BURST)
        self.monotonic = monotonic
        self.key: MasterKey | None = None
        self._attempts: deque[Attempt] = deque(maxlen=_KEPT)
        self.dropped = 0

    @classmethod
    async def load(cls, settings: Settings) -> Custody:
        record = await read_seal(settings)
        if record is None:
            raise CustodyError(
                "this store has no share set yet: run `strongroom operator init` first"
            )
        return cls(settings, record)

    async def refresh(self) -> None:
        """Take the stored seal record again: after a quorum's master key was replaced
        (``key replace-master``), a sealed process takes the new share set without a restart
        (the shares given so far, of the old set, are forgotten). A record that cannot be read
        leaves the one in memory."""
        try:
            record = await read_seal(self.settings)
        except StoreUnavailableError:
            log.warning("seal record not read again; keeping the one in memory")
            return
        if record is not None and record != self.record:
            self.record = record
            self.progress = UnsealProgress(record, timeout=self.settings.unseal_timeout_seconds)
            log.warning("seal record changed: a new share set is in force")

    def status(self) -> dict[str, Any]:
        return {
            "sealed": self.key is None,
            "type": self.record.kind,
            "threshold": self.record.threshold,
            "shares": self.record.shares,
            "progress": 0 if self.key is not None else self.progress.progress(self.monotonic()),
            "timeout_seconds": self.settings.unseal_timeout_seconds,
        }

    def submit(self, share: str, *, ip: str | None, user_agent: str | None) -> MasterKey | None:
        """One share towards the unseal: the master key once the threshold is met."""
        now = self.monotonic()
        wait = self.limiter.peek(f"ip:{ip}", now)
        if wait > 0:
            self._note(ip, user_agent, "throttled")
            raise RateLimitedError("too many refused unseal attempts from this address", wait)
        try:
            key = self.progress.submit(share, now)
        except ShareError as exc:
            self.limiter.take(f"ip:{ip}", now)
            self._note(ip, user_agent, exc.code)
            log.warning("unseal share refused", code=exc.code, ip=ip)
            raise
        self._note(ip, user_agent, None)
        log.info("unseal share accepted", ip=ip, progress=self.progress.progress(now),
                 unsealed=key is not None)  # fmt: skip
        if key is not None:
            self.key = key
        return key

    def reset(self) -> None:
        self.progress.reset()

    def sealed(self) -> None:
        """The key was dropped: overwrite its bytes and start over."""
        if self.key is not None:
            self.key.wipe()
        self.key = None
        self.progress.reset()

    def _note(self, ip: str | None, user_agent: str | None, code: str | None) -> None:
        if len(self._attempts) == self._attempts.maxlen:
            self.dropped += 1
        progress = self.progress.progress(self.monotonic())
        self._attempts.append(Attempt(datetime.now(UTC), ip, user_agent, progress, code))

    async def flush_audit(self, app: Strongroom) -> int:
        """Write the attempts made while sealed to the audit log; how many were written."""
        written = 0
        while self._attempts:
            attempt = self._attempts[0]
            await app.audit.record(
                AuditEvent.build(
                    action=AuditAction.UNSEAL,
                    resource_name=None,
                    timestamp=app.clock(),
                    result=AuditResult.SUCCESS if attempt.code is None else AuditResult.FAILURE,
                    actor_id=UNSEAL_ACTOR,
                    actor_ip=attempt.ip,
                    actor_user_agent=attempt.user_agent,
                    details={
                        "progress": attempt.progress,
                        "threshold": self.record.threshold,
                        "attempted_at": attempt.at.isoformat(),
                    },
                    error_code=attempt.code,
                )
            )
            self._attempts.popleft()
            written += 1
        return written
