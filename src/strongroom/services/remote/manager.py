"""SecretsManager over HTTPS: each method is one call to ``/v1/secrets`` on the server, which
authorizes it by the token's identity and records it in its audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from strongroom.client.transport import RemoteClient, segment
from strongroom.core.errors import SecretNotDeletedError, SecretNotFoundError
from strongroom.core.models import UNSET, SecretBundle, SecretType, _Unset
from strongroom.core.validation import (
    encode_value,
    validate_aware,
    validate_name,
    validate_secret_type,
    validate_tags,
    validate_version_ref,
)
from strongroom.services.remote.cache import FeedFollower, follower_for
from strongroom.services.remote.convert import bundle_from, dated, dated_list, iso
from strongroom.services.remote.session import RemoteFacadeMixin
from strongroom.services.secrets.lookup import check_readable
from strongroom.services.secrets.secrets_manager import SecretsManager, _expiry, _flag

__all__ = ["RemoteSecretsManager"]


def _checked(
    value: Any,
    content_type: str | None,
    hint: bool,
    *,
    metadata: Mapping[str, str] | None,
    expires_in_days: int | None,
    expires_at: datetime | None,
    not_before: datetime | None,
    enabled: object,
) -> dict[str, Any]:
    """The fields every write sends, checked here as locally: bad input is refused with the
    same error before anything is sent."""
    encode_value(value, content_type, check_json=not hint)
    _expiry(expires_in_days, expires_at, datetime.now(UTC))
    return {
        "value": value,
        "content_type": content_type,
        "metadata": validate_tags(metadata) if metadata is not None else None,
        "expires_in_days": expires_in_days,
        "expires_at": iso(expires_at),
        "not_before": iso(validate_aware(not_before, "not_before")),
        "enabled": _flag(enabled, "enabled"),
    }


def _path(name: str, *rest: str) -> str:
    validate_name(name)
    return "/".join(("/v1/secrets", segment(name), *rest))


class RemoteSecretsManager(RemoteFacadeMixin, SecretsManager):
    """The seed's SecretsManager answered by a strongroom server."""

    async def create_secret(
        self,
        name: str,
        value: str | dict[str, Any] | list[Any],
        secret_type: SecretType | str = SecretType.GENERIC,
        metadata: Mapping[str, str] | None = None,
        expires_in_days: int | None = None,
        content_type: str | None = None,
        not_before: datetime | None = None,
        *,
        expires_at: datetime | None = None,
        enabled: bool = True,
        content_type_hint: bool = False,
    ) -> dict[str, Any]:
        validate_name(name)
        body = {
            "name": name,
            "secret_type": validate_secret_type(secret_type).value,
            **_checked(
                value, content_type, content_type_hint, metadata=metadata,
                expires_in_days=expires_in_days, expires_at=expires_at, not_before=not_before,
                enabled=enabled,
            ),
        }  # fmt: skip
        client = await self._client()
        return dated(await client.request("POST", "/v1/secrets", json=body))

    async def update_secret(
        self,
        name: str,
        value: str | dict[str, Any] | list[Any],
        metadata: Mapping[str, str] | None = None,
        *,
        secret_type: SecretType | str | None = None,
        content_type: str | None = None,
        expires_in_days: int | None = None,
        not_before: datetime | None = None,
        expires_at: datetime | None = None,
        enabled: bool = True,
        content_type_hint: bool = False,
    ) -> dict[str, Any]:
        validate_name(name)
        body = {
            "secret_type": validate_secret_type(secret_type).value if secret_type else None,
            **_checked(
                value, content_type, content_type_hint, metadata=metadata,
                expires_in_days=expires_in_days, expires_at=expires_at, not_before=not_before,
                enabled=enabled,
            ),
        }  # fmt: skip
        client = await self._client()
        await self._dropped(name)
        # Each PUT adds a version: never sent twice.
        return dated(await client.request("PUT", _path(name), json=body, idempotent=False))

    async def update_secret_properties(
        self,
        name: str,
        version: str | None = None,
        *,
        enabled: bool | _Unset = UNSET,
        expires_at: datetime | _Unset | None = UNSET,
        not_before: datetime | _Unset | None = UNSET,
        metadata: Mapping[str, str] | _Unset | None = UNSET,
        content_type: str | _Unset | None = UNSET,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if version is not None:
            body["version"] = validate_version_ref(version)
        if enabled is not UNSET:
            body["enabled"] = _flag(enabled, "enabled")
        if expires_at is not UNSET:
            body["expires_at"] = iso(validate_aware(expires_at, "expires_at"))
        if not_before is not UNSET:
            body["not_before"] = iso(validate_aware(not_before, "not_before"))
        if metadata is not UNSET:
            body["metadata"] = validate_tags(metadata) if metadata is not None else None
        if content_type is not UNSET:
            body["content_type"] = content_type
        client = await self._client()
        await self._dropped(name)
        return dated(await client.request("PATCH", _path(name), json=body, idempotent=True))

    async def delete_secret(self, name: str, immediate: bool = False) -> dict[str, Any]:
        client = await self._client()
        await self._dropped(name)
        params = {"immediate": "true" if immediate else "false"}
        # A repeated delete would answer "already deleted": sent once.
        found = await client.request("DELETE", _path(name), params=params, idempotent=False)
        return dated(found)

    async def recover_deleted_secret(self, name: str) -> dict[str, Any]:
        validate_name(name)
        client = await self._client()
        path = f"/v1/deleted-secrets/{segment(name)}/recover"
        return dated(await client.request("POST", path))

    async def purge_deleted_secret(self, name: str) -> dict[str, Any]:
        validate_name(name)
        client = await self._client()
        path = f"/v1/deleted-secrets/{segment(name)}"
        await client.request("DELETE", path, idempotent=False)
        return {"name": name, "purged": True}

    async def _dropped(self, name: str) -> None:
        """This process changed ``name``: its cached values go now, not when the feed says."""
        follower = follower_for(await self._client())
        if follower is not None:
            follower.cache.drop(name)

    def _follower(self) -> FeedFollower | None:
        client = self._app if isinstance(self._app, RemoteClient) else None
        return follower_for(client) if client is not None else None

    async def get_secret_bundle(
        self, name: str, version: str | None = None, *, enforce_dates: bool = True
    ) -> SecretBundle:
        """From the cache while the change feed is connected (dates and the enabled flag are
        checked again on each hit), else from the server."""
        client = await self._client()
        follower = follower_for(client)
        if follower is not None:
            cached = follower.cache.get(name, version)
            if cached is not None:
                check_readable(cached.properties, datetime.now(UTC), dates=enforce_dates)
                return cached
        params = {"version": validate_version_ref(version) if version is not None else None}
        connected = follower is not None and follower.connected.is_set()
        bundle = bundle_from(await client.request("GET", _path(name), params=params))
        if follower is not None and connected and follower.connected.is_set():
            follower.cache.put(name, version, bundle)
        return bundle

    async def get_secret_properties(self, name: str, version: str | None = None) -> dict[str, Any]:
        params = {"version": validate_version_ref(version) if version is not None else None}
        client = await self._client()
        return dated(await client.request("GET", _path(name, "properties"), params=params))

    async def list_secrets(self) -> list[dict[str, Any]]:
        client = await self._client()
        return dated_list(await client.request("GET", "/v1/secrets"))

    async def get_secret_versions(self, name: str) -> list[dict[str, Any]]:
        client = await self._client()
        return dated_list(await client.request("GET", _path(name, "versions")))

    async def list_deleted_secrets(self) -> list[dict[str, Any]]:
        client = await self._client()
        return dated_list(await client.request("GET", "/v1/deleted-secrets"))

    async def get_deleted_secret(self, name: str) -> dict[str, Any]:
        validate_name(name)
        client = await self._client()
        try:
            return dated(await client.request("GET", f"/v1/deleted-secrets/{segment(name)}"))
        except SecretNotFoundError as missing:
            # The server answers 404 for a live name too (Key Vault's rule); the library says
            # "not deleted", so ask which it is.
            if type(missing) is not SecretNotFoundError:
                raise
            try:
                await client.request("GET", _path(name, "properties"))
            except SecretNotFoundError:
                raise missing from None
            raise SecretNotDeletedError(str(missing)) from None
