"""Token and policy administration as plain documents, so one command line serves both
profiles: ``LocalAccessAdmin`` over the stores (master key at hand), and its remote twin
(services.remote.access) over ``/v1/auth`` (the server checks the caller's admin grant)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from strongroom.core.policy import Policy
from strongroom.services.wiring import Strongroom

__all__ = ["AccessAdmin", "LocalAccessAdmin"]


class AccessAdmin(Protocol):
    async def create_token(
        self, identity: str, policies: list[str], description: str, ttl: timedelta | None
    ) -> dict[str, Any]:
        """The token's record and, once, the token itself (``token``)."""
        ...

    async def list_tokens(self, identity: str | None) -> list[dict[str, Any]]: ...
    async def revoke_token(self, token_id: str) -> dict[str, Any]: ...
    async def identities(self) -> list[dict[str, Any]]: ...
    async def put_policy(self, policy: Policy) -> dict[str, Any]: ...
    async def list_policies(self) -> list[dict[str, Any]]: ...
    async def delete_policy(self, name: str) -> None: ...
    async def attach(self, identity: str, policy: str) -> list[str]: ...
    async def detach(self, identity: str, policy: str) -> list[str]: ...


class LocalAccessAdmin:
    def __init__(self, app: Strongroom) -> None:
        self._access = app.access

    async def create_token(
        self, identity: str, policies: list[str], description: str, ttl: timedelta | None
    ) -> dict[str, Any]:
        issued = await self._access.create_token(
            identity, policies=policies, description=description, ttl=ttl
        )
        return {**issued.record.to_dict(), "token": issued.token}

    async def list_tokens(self, identity: str | None) -> list[dict[str, Any]]:
        return [t.to_dict() for t in await self._access.list_tokens(identity)]

    async def revoke_token(self, token_id: str) -> dict[str, Any]:
        return (await self._access.revoke_token(token_id)).to_dict()

    async def identities(self) -> list[dict[str, Any]]:
        return await self._access.identities()

    async def put_policy(self, policy: Policy) -> dict[str, Any]:
        return (await self._access.put_policy(policy)).to_dict()

    async def list_policies(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in await self._access.list_policies()]

    async def delete_policy(self, name: str) -> None:
        await self._access.delete_policy(name)

    async def attach(self, identity: str, policy: str) -> list[str]:
        return await self._access.attach(identity, policy)

    async def detach(self, identity: str, policy: str) -> list[str]:
        return await self._access.detach(identity, policy)
