"""The service's two states. Sealed: no wiring and no key in memory; the guard answers every
route but health, readiness, seal status and unseal with 503 ``sealed``. Unsealed: the wiring
with its background work (rotation scheduler, threat alerts, shared metrics).

The guard's check on every request is one attribute read (``app.state.services is None``), so
the hot path pays nothing for custody.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from strongroom.core.audit import AuditAction
from strongroom.core.config import Settings
from strongroom.core.errors import (
    CustodyError,
    HsmError,
    KeyVaultSealError,
    StoreUnavailableError,
)
from strongroom.core.logging import get_logger
from strongroom.server.context import Services
from strongroom.server.metrics_share import METRICS_DIR_ENV, SharedMetrics
from strongroom.services.custody.unsealer import Custody
from strongroom.services.wiring import Strongroom

__all__ = ["AUTO_UNSEAL_RETRY_SECONDS", "SealGate"]

#: How often a service an HSM or a Key Vault key could not unseal tries again.
AUTO_UNSEAL_RETRY_SECONDS = 5.0

log = get_logger("strongroom.server")


class SealGate:
    """Opens the wiring when a quorum unseals, closes it when an operator seals."""

    def __init__(self, api: FastAPI, settings: Settings, *, run_scheduler: bool) -> None:
        self.api = api
        self.settings = settings
        self.run_scheduler = run_scheduler
        self.custody: Custody | None = None
        self._owned = False
        self._shared: SharedMetrics | None = None
        self._lock = asyncio.Lock()
        #: Why an auto-unseal (HSM) has not happened yet; None when it did or none is set.
        self.reason: str | None = None
        self._retry: asyncio.Task[None] | None = None
        api.state.services = None

    @property
    def services(self) -> Services | None:
        found: Services | None = self.api.state.services
        return found

    async def start(self, wiring: Strongroom, *, owned: bool) -> None:
        """Serve ``wiring``: routes see it, and its background work starts."""
        self._owned = owned
        services = Services.over(wiring)
        if folder := os.environ.get(METRICS_DIR_ENV):
            self._shared = self.api.state.shared_metrics = SharedMetrics(
                Path(folder), wiring.metrics
            )
            self._shared.start()
        if self.run_scheduler:
            interval = max(1, round(self.settings.rotation_check_seconds))
            await services.rotation.start_rotation_scheduler(interval)
            if self.settings.threat_check_seconds > 0:
                wiring.threat_alerts.start(self.settings.threat_check_seconds)
            if self.settings.break_glass_check_seconds > 0:
                wiring.break_glass_reviews.start(self.settings.break_glass_check_seconds)
        self.api.state.services = services
        log.info("service started", profile=wiring.profile)

    async def auto_unseal(self, retry_seconds: float = AUTO_UNSEAL_RETRY_SECONDS) -> None:
        """Open with the key the HSM unwraps; if it cannot (unreachable, wrong PIN, a key that
        does not unwrap), stay sealed, say why in the status, and try again every so often."""
        if not await self._try_open():
            self._retry = asyncio.get_running_loop().create_task(self._retry_loop(retry_seconds))

    async def _try_open(self) -> bool:
        try:
            wiring = await Strongroom.open(self.settings)
        except (HsmError, KeyVaultSealError, StoreUnavailableError) as exc:
            self.reason = str(exc)
            log.error("auto-unseal failed", code=exc.code)
            return False
        self.reason = None
        async with wiring.audit.operation(AuditAction.UNSEAL, None, seal=self.settings.seal):
            pass  # the HSM unsealed this process: on record like a quorum's unseal
        await self.start(wiring, owned=True)
        return True

    async def _retry_loop(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            async with self._lock:
                if self.services is not None or await self._try_open():
                    return

    async def stop(self) -> None:
        """Stop serving: new requests are answered ``sealed`` from here on."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        services = self.services
        if services is None:
            return
        self.api.state.services = None
        await services.rotation.stop_rotation_scheduler()
        await services.app.threat_alerts.stop()
        await services.app.stop_break_glass_reviews()
        if self._shared is not None:
            await self._shared.stop()
            self._shared = None
        if self._owned:
            await services.app.close()

    def status(self) -> dict[str, Any]:
        if self.custody is None:
            status: dict[str, Any] = {"sealed": self.services is None, "type": self.settings.seal}
            if self.reason is not None and self.services is None:
                status["reason"] = self.reason
            return status
        return self.custody.status()

    def require_custody(self) -> Custody:
        if self.custody is None:
            raise CustodyError(
                "this service's master key does not come from a quorum of key holders: there "
                "are no shares to give or to ask for again (STRONGROOM_SEAL=shamir)"
            )
        return self.custody

    async def unseal(self, share: str, *, ip: str | None, user_agent: str | None) -> dict[str, Any]:
        """Take one share; once the threshold is met, open the stores with the key."""
        custody = self.require_custody()
        async with self._lock:
            if self.services is not None:
                return self.status()
            await custody.refresh()  # a replaced master key brings a new share set
            key = custody.submit(share, ip=ip, user_agent=user_agent)
            if key is not None:
                try:
                    wiring = await Strongroom.open(self.settings, master=key)
                except BaseException:
                    custody.sealed()
                    raise
                await self.start(wiring, owned=True)
                written = await custody.flush_audit(wiring)
                log.warning("service unsealed", attempts_audited=written)
        return self.status()

    def reset(self) -> dict[str, Any]:
        self.require_custody().reset()
        return self.status()

    async def seal(self) -> None:
        """Drop the key: close the stores, overwrite the key's bytes, answer ``sealed``."""
        custody = self.require_custody()
        async with self._lock:
            await self.stop()
            custody.sealed()
            log.warning("service sealed")
