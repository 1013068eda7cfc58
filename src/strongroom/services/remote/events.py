"""EventSubscriptions over HTTPS (``/v1/events/subscriptions``, admin only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strongroom.core.errors import AccessObjectNotFoundError
from strongroom.services.events.subscriptions import EventSubscriptions
from strongroom.services.remote.convert import dated, dated_list
from strongroom.services.remote.session import RemoteFacadeMixin

__all__ = ["RemoteEventSubscriptions"]


class RemoteEventSubscriptions(RemoteFacadeMixin, EventSubscriptions):
    """Webhook subscriptions kept by a strongroom server."""

    async def subscribe(
        self, url: str, pattern: str = "*", events: Iterable[str] | None = None
    ) -> dict[str, Any]:
        body = {"url": url, "pattern": pattern, "events": list(events) if events else None}
        client = await self._client()
        return dated(await client.request("POST", "/v1/events/subscriptions", json=body))

    async def unsubscribe(self, subscription_id: int) -> bool:
        client = await self._client()
        try:
            await client.request("DELETE", f"/v1/events/subscriptions/{int(subscription_id)}")
        except AccessObjectNotFoundError:
            return False
        return True

    async def list_subscriptions(self) -> list[dict[str, Any]]:
        client = await self._client()
        return dated_list(await client.request("GET", "/v1/events/subscriptions"))

    async def check_expiry(self, *, warning_days: int | None = None) -> int:
        client = await self._client()
        body = {"warning_days": warning_days}
        found = await client.request("POST", "/v1/events/check-expiry", json=body, idempotent=True)
        return int(found["events"])
