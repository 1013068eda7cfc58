"""EmergencyRevoke over HTTPS (``/v1/revocations``): the server decides who requests and who
approves from the token, so separation of duties holds whatever name a client claims."""

from __future__ import annotations

from typing import Any

from strongroom.core.revocation import RevocationRequest
from strongroom.services.remote.convert import dated, dated_list
from strongroom.services.remote.session import RemoteFacadeMixin
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke

__all__ = ["RemoteEmergencyRevoke"]


def _enum_value(item: Any) -> Any:
    return getattr(item, "value", item)


class RemoteEmergencyRevoke(RemoteFacadeMixin, EmergencyRevoke):
    """The seed's EmergencyRevoke answered by a strongroom server. ``requested_by``,
    ``approved_by`` and ``by`` are the token's identity on the server; the names given here
    are checked as locally and otherwise only travel as the "on behalf of" note."""

    async def request_revocation(self, request: RevocationRequest) -> dict[str, Any]:
        checked = request.validated()
        body = {
            "secret_name": checked.secret_name,
            "reason": _enum_value(checked.reason),
            "severity": _enum_value(checked.severity),
            "description": checked.description,
            "notify_recipients": list(checked.notify_recipients),
            "immediate": checked.immediate,
            "rotate_after": checked.rotate_after,
            "soft_delete": checked.soft_delete,
        }
        client = await self._client()
        return dated(await client.request("POST", "/v1/revocations", json=body))

    async def approve_revocation(self, revocation_id: int, approved_by: str) -> dict[str, Any]:
        client = await self._client()
        path = f"/v1/revocations/{int(revocation_id)}/approve"
        return dated(await client.request("POST", path))

    async def reject_revocation(
        self, revocation_id: int, rejected_by: str, reason: str = ""
    ) -> dict[str, Any]:
        client = await self._client()
        path = f"/v1/revocations/{int(revocation_id)}/reject"
        return dated(await client.request("POST", path, json={"reason": reason}))

    async def cancel_revocation(self, revocation_id: int, by: str) -> dict[str, Any]:
        client = await self._client()
        return dated(await client.request("POST", f"/v1/revocations/{int(revocation_id)}/cancel"))

    async def get_revocation_status(self, revocation_id: int) -> dict[str, Any]:
        client = await self._client()
        return dated(await client.request("GET", f"/v1/revocations/{int(revocation_id)}"))

    async def get_revocation_history(
        self, secret_name: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        client = await self._client()
        params = {"secret": secret_name, "limit": limit}
        return dated_list(await client.request("GET", "/v1/revocations", params=params))

    async def list_pending_revocations(self) -> list[dict[str, Any]]:
        client = await self._client()
        params = {"pending": "true", "limit": 1000}
        return dated_list(await client.request("GET", "/v1/revocations", params=params))

    async def list_break_glass_reviews(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        client = await self._client()
        params = {"all": "false" if open_only else "true"}
        found = await client.request("GET", "/v1/revocations/reviews", params=params)
        return dated_list(found)

    async def acknowledge_break_glass(
        self, revocation_id: int, acknowledged_by: str, note: str
    ) -> dict[str, Any]:
        client = await self._client()
        path = f"/v1/revocations/{int(revocation_id)}/acknowledge"
        return dated(await client.request("POST", path, json={"note": note}))
