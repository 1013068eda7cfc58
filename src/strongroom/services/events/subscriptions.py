"""EventSubscriptions: the API for the services that want to hear about their secrets."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from strongroom.core.actor import current_actor
from strongroom.core.errors import ValidationError
from strongroom.services.events.bus import EVENT_KINDS
from strongroom.services.facade import StrongroomFacade

__all__ = ["EVENT_KINDS", "EventSubscriptions"]


class EventSubscriptions(StrongroomFacade):
    """Subscribe a service's webhook to events about the secrets it uses."""

    _remote_counterpart = "strongroom.services.remote.events:RemoteEventSubscriptions"

    async def subscribe(
        self, url: str, pattern: str = "*", events: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Register ``url`` for ``events`` (all kinds by default) on secrets whose lower-case
        name matches ``pattern`` (fnmatch). Refused: non-http(s) URLs, link-local and cloud
        metadata targets, and loopback or private ones unless configuration allows them.
        The answer carries the subscription's signing key, shown this once."""
        app = await self._ready()
        kinds = sorted(set(events) if events is not None else EVENT_KINDS)
        unknown = set(kinds) - EVENT_KINDS
        if unknown or not kinds:
            raise ValidationError(
                f"unknown event kinds: {sorted(unknown)}; known: {sorted(EVENT_KINDS)}"
            )
        if not isinstance(pattern, str) or not 1 <= len(pattern) <= 127:
            raise ValidationError("pattern must be 1-127 characters (fnmatch syntax)")
        checked = await app.events.policy.check(url)
        subscription_id = await app.events.store.add(
            checked, pattern.lower(), kinds, current_actor().id, app.clock()
        )
        app.events.forget()
        key = base64.b64encode(app.events.signing_key(subscription_id)).decode("ascii")
        return {
            "id": subscription_id,
            "url": checked,
            "pattern": pattern.lower(),
            "events": kinds,
            "signing_key": key,
        }

    async def unsubscribe(self, subscription_id: int) -> bool:
        app = await self._ready()
        removed = await app.events.store.remove(subscription_id)
        app.events.forget()
        return removed

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        app = await self._ready()
        return await app.events.store.list_all()

    async def check_expiry(self, *, warning_days: int | None = None) -> int:
        """Send near-expiry and expired events now (the rotation scheduler does it each cycle)."""
        app = await self._ready()
        days = app.settings.expiry_warning_days if warning_days is None else warning_days
        return await app.events.check_expiry(await app.store.list_secrets(), timedelta(days=days))
