"""SecretsAudit over HTTPS: the server's trail, summaries, threat detection and chain check
(``/v1/audit``), read with the token's ``audit-read`` grant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from strongroom.core.audit import AuditAction, AuditResult
from strongroom.services.audit.secrets_audit import SecretsAudit
from strongroom.services.remote.convert import dated, dated_list, iso
from strongroom.services.remote.session import RemoteFacadeMixin

__all__ = ["RemoteSecretsAudit"]


def _value(item: AuditAction | AuditResult | str | None) -> str | None:
    if item is None:
        return None
    return item.value if isinstance(item, AuditAction | AuditResult) else str(item).upper()


class RemoteSecretsAudit(RemoteFacadeMixin, SecretsAudit):
    """The seed's SecretsAudit answered by a strongroom server (queries only: events are
    recorded by the server, as it serves each call)."""

    async def get_audit_trail(
        self,
        resource_name: str | None = None,
        action: AuditAction | str | None = None,
        limit: int = 100,
        *,
        actor_id: str | None = None,
        result: AuditResult | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
        actor_ip: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {
            "secret": resource_name, "action": _value(action), "result": _value(result),
            "actor": actor_id, "ip": actor_ip, "since": iso(since), "until": iso(until),
            "limit": limit, "offset": offset,
        }  # fmt: skip
        client = await self._client()
        return dated_list(await client.request("GET", "/v1/audit/events", params=params))

    async def get_audit_summary(
        self, resource_name: str | None = None, days: int = 30
    ) -> dict[str, Any]:
        client = await self._client()
        params = {"secret": resource_name, "days": days}
        return dated(await client.request("GET", "/v1/audit/summary", params=params))

    async def detect_suspicious_activity(
        self,
        resource_name: str | None = None,
        failure_threshold: int = 5,
        time_window_minutes: int = 30,
        actor_id: str | None = None,
    ) -> dict[str, Any]:
        params = {
            "secret": resource_name, "failure_threshold": failure_threshold,
            "window_minutes": time_window_minutes, "actor": actor_id,
        }  # fmt: skip
        client = await self._client()
        found: dict[str, Any] = await client.request("GET", "/v1/audit/threats", params=params)
        return found

    async def verify_integrity(
        self, *, batch: int = 5000, parallel_from: int = 0, workers: int | None = None
    ) -> dict[str, Any]:
        """The server's check (it chooses its batch and its worker processes)."""
        client = await self._client()
        found: dict[str, Any] = await client.request("POST", "/v1/audit/verify", idempotent=True)
        return found
