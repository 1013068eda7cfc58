"""Token and policy administration over ``/v1/auth`` (services.access.admin's remote twin):
the server decides with the caller's token whether it may administer; values checked here
are checked again there."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from strongroom.client.transport import RemoteClient
from strongroom.core.policy import Policy
from strongroom.services.remote.convert import dated, dated_list

__all__ = ["RemoteAccessAdmin"]


def _segment(text: str) -> str:
    return quote(text, safe="")


class RemoteAccessAdmin:
    def __init__(self, client: RemoteClient) -> None:
        self._client = client

    async def create_token(
        self, identity: str, policies: list[str], description: str, ttl: timedelta | None
    ) -> dict[str, Any]:
        body = {"identity": identity, "policies": policies, "description": description,
                "ttl_seconds": int(ttl.total_seconds()) if ttl is not None else None}  # fmt: skip
        return dated(await self._client.request("POST", "/v1/auth/tokens", json=body))

    async def list_tokens(self, identity: str | None) -> list[dict[str, Any]]:
        params = {"identity": identity} if identity is not None else None
        return dated_list(await self._client.request("GET", "/v1/auth/tokens", params=params))

    async def revoke_token(self, token_id: str) -> dict[str, Any]:
        path = f"/v1/auth/tokens/{_segment(token_id)}"
        return dated(await self._client.request("DELETE", path))

    async def identities(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._client.request("GET", "/v1/auth/identities")
        return found

    async def put_policy(self, policy: Policy) -> dict[str, Any]:
        body = {"description": policy.description, "grants": [g.to_dict() for g in policy.grants]}
        path = f"/v1/auth/policies/{_segment(policy.name)}"
        found: dict[str, Any] = await self._client.request("PUT", path, json=body)
        return found

    async def list_policies(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._client.request("GET", "/v1/auth/policies")
        return found

    async def delete_policy(self, name: str) -> None:
        await self._client.request("DELETE", f"/v1/auth/policies/{_segment(name)}")

    async def attach(self, identity: str, policy: str) -> list[str]:
        path = f"/v1/auth/identities/{_segment(identity)}/policies/{_segment(policy)}"
        found: list[str] = await self._client.request("PUT", path)
        return found

    async def detach(self, identity: str, policy: str) -> list[str]:
        path = f"/v1/auth/identities/{_segment(identity)}/policies/{_segment(policy)}"
        found: list[str] = await self._client.request("DELETE", path)
        return found
