"""Secrets in Azure Key Vault, through the official async SDK (``azure-keyvault-secrets``).

Key Vault keeps the values (encrypted at rest by Key Vault itself) and assigns version ids;
strongroom keeps what Key Vault has no field for in tags: the secret type
(``strongroom-type``) and, on a revoked version, when it was revoked
(``strongroom-revoked-at``). So a secret here holds at most 14 tags of the caller's own
(Key Vault allows 15), and a revocation disables the versions in Key Vault itself.

Key Vault errors become strongroom errors at this edge: 404 not found, 409 conflict (inner
``ObjectIsDeletedButRecoverable``: a deleted secret holds the name), 403 forbidden (or disabled /
expired for a read), 429 throttled once the SDK's retries (which honour ``Retry-After``) are
spent, anything else or no answer: unavailable. No message from Key Vault is passed on, so
nothing it echoes can reach a log or a caller.

Known differences, as Key Vault has them: a new version's id is Key Vault's, not the one the
caller proposed; clearing an expiry, a not-before date or a content type is not possible (the
SDK sends only the fields it is given); listing secrets costs one call per secret (Key Vault's
list answers carry no version id); the vault purges deleted secrets on its own schedule.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from strongroom.backends.azure_sdk import (
    MAX_USER_TAGS,
    RESERVED_TAGS,
    REVOKED_TAG,
    TYPE_TAG,
    StaticTokenCredential,
    credential_from,
    deleted_of,
    mapped_error,
    properties_of,
    secret_client,
)
from strongroom.backends.base import (
    KeyRotationResult,
    RewrapProgress,
    WriteMode,
    name_key,
)
from strongroom.core.config import Settings
from strongroom.core.errors import (
    ConfigurationError,
    PermissionDeniedError,
    SecretAlreadyExistsError,
    SecretDisabledError,
    SecretIsDeletedError,
    SecretNotFoundError,
    SecretRevokedError,
    StoreUnavailableError,
    StrongroomError,
    ValidationError,
)
from strongroom.core.logging import get_logger
from strongroom.core.models import (
    UNSET,
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    SecretValue,
    VersionProperties,
)

__all__ = ["AzureKeyVaultStore", "StaticTokenCredential"]

log = get_logger("strongroom.azure")

T = TypeVar("T")


class AzureKeyVaultStore:
    """The SecretStore protocol over one vault."""

    backend = "azure"

    def __init__(
        self,
        vault_url: str,
        credential: Any,
        *,
        recovery_days: int = 90,
        client_options: dict[str, Any] | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        if not vault_url.startswith("https://"):
            raise ConfigurationError("AZURE_KEY_VAULT_URL must be an https:// URL")
        self.vault_url = vault_url
        self._credential = credential
        self._options = dict(client_options or {})
        self._recovery_days = recovery_days
        self._client: Any = None
        self._ca_bundle = ca_bundle
        self._session: Any = None
        # Key Vault has no create-if-absent: creates and deletes of one name are serialised
        # here, so two callers in this process cannot both create it (across processes, the
        # second create adds a version: a documented limit of the Azure profile).
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> Self:
        """The vault at ``url`` (default: AZURE_KEY_VAULT_URL), as the settings configure."""
        url = url or settings.azure_key_vault_url
        assert url is not None  # noqa: S101 (chosen because it is set)
        options: dict[str, Any] = {
            "verify_challenge_resource": settings.azure_verify_challenge_resource,
            "retry_total": settings.azure_retries,
            "connection_timeout": settings.azure_timeout_seconds,
            "read_timeout": settings.azure_timeout_seconds,
        }
        return cls(
            url,
            credential_from(settings),
            recovery_days=settings.recovery_days,
            client_options=options,
            ca_bundle=settings.azure_ca_bundle,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        self._client, self._session = secret_client(
            self.vault_url, self._credential, self._options, self._ca_bundle
        )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        close = getattr(self._credential, "close", None)
        if close is not None:
            await close()

    @property
    def client(self) -> Any:
        if self._client is None:
            raise StoreUnavailableError("the Azure Key Vault store is closed")
        return self._client

    async def _call(
        self, what: Callable[[], Awaitable[T]], name: str | None = None, version: str | None = None
    ) -> T:
        try:
            return await what()
        except StrongroomError:
            raise
        except Exception as exc:  # every SDK failure is mapped, none passes through
            raise mapped_error(exc, name, version) from None

    async def _collect(
        self, pages: Callable[[], AsyncIterator[Any]], name: str | None
    ) -> list[Any]:
        async def gather() -> list[Any]:
            return [item async for item in pages()]

        return await self._call(gather, name)

    # -- writes ---------------------------------------------------------------------------

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        self._check_tags(new.tags)
        async with self._lock(new.name):
            return await self._write(new, value, mode)

    #: How many metadata entries a caller may set (a secondary vault's copy needs one more tag).
    max_user_tags = MAX_USER_TAGS

    def _check_tags(self, tags: dict[str, str]) -> None:
        if len(tags) > self.max_user_tags:
            raise ValidationError(
                f"on Azure Key Vault a secret holds at most {self.max_user_tags} metadata "
                "entries (Key Vault has 15 tags; strongroom keeps the secret type in one)"
            )
        if RESERVED_TAGS & tags.keys():
            raise ValidationError(f"metadata names {sorted(RESERVED_TAGS)} are strongroom's own")

    async def _native(self, name: str, version: str | None) -> str | None:
        """The vault's own id of ``version`` (a secondary's copy has its own ids)."""
        return version

    def _lock(self, name: str) -> asyncio.Lock:
        key = name_key(name)
        lock = self._locks.get(key)
        if lock is None:
            if len(self._locks) > 10_000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _write(self, new: NewVersion, value: bytes, mode: WriteMode) -> VersionProperties:
        exists = await self._exists(new.name)
        if mode is WriteMode.CREATE and exists:
            raise SecretAlreadyExistsError(f"secret {new.name!r} already exists")
        if mode is WriteMode.UPDATE and not exists:
            if await self._deleted_exists(new.name):
                raise SecretIsDeletedError(f"secret {new.name!r} is deleted")
            raise SecretNotFoundError(f"secret {new.name!r} not found")
        tags = {**new.tags, TYPE_TAG: new.secret_type.value}
        made = await self._call(
            lambda: self.client.set_secret(
                new.name, value.decode("utf-8"), enabled=new.enabled, tags=tags,
                content_type=new.content_type, not_before=new.not_before,
                expires_on=new.expires_at,
            ),
            new.name,
        )  # fmt: skip
        return properties_of(made.properties)

    async def _exists(self, name: str) -> bool:
        """Whether a live secret holds ``name`` (any version, readable or not)."""
        try:
            versions = await self._collect(
                lambda: self.client.list_properties_of_secret_versions(name), name
            )
        except SecretNotFoundError:
            return False
        return bool(versions)

    async def _deleted_exists(self, name: str) -> bool:
        try:
            await self._call(lambda: self.client.get_deleted_secret(name), name)
        except SecretNotFoundError:
            return False
        return True

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        for field_name in ("expires_at", "not_before", "content_type"):
            if getattr(changes, field_name) is None:
                raise ValidationError(
                    f"Azure Key Vault cannot clear {field_name} of an existing version; "
                    "write a new version instead"
                )
        current = await self.get_properties(name, version)
        kwargs: dict[str, Any] = {}
        if changes.enabled is not UNSET:
            kwargs["enabled"] = changes.enabled
        if changes.expires_at is not UNSET:
            kwargs["expires_on"] = changes.expires_at
        if changes.not_before is not UNSET:
            kwargs["not_before"] = changes.not_before
        if changes.content_type is not UNSET:
            kwargs["content_type"] = changes.content_type
        if changes.tags is not UNSET:
            self._check_tags(changes.tags)
            tags = {**changes.tags, TYPE_TAG: current.secret_type.value}
            if current.revoked_at is not None:
                tags[REVOKED_TAG] = current.revoked_at.isoformat()
            kwargs["tags"] = tags
        native = await self._native(current.name, current.version)
        updated = await self._call(
            lambda: self.client.update_secret_properties(current.name, native, **kwargs),
            name,
            version,
        )
        return properties_of(updated, current=current.current, name=current.name)

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        changed = 0
        for props in await self.list_versions(name):
            if props.revoked_at is None:
                await self._revoke_version(props, revoked_at)
                changed += 1
        return changed

    async def _revoke_version(self, props: VersionProperties, revoked_at: datetime) -> None:
        tags = {
            **props.tags,
            TYPE_TAG: props.secret_type.value,
            REVOKED_TAG: revoked_at.isoformat(),
        }
        native = await self._native(props.name, props.version)
        await self._call(
            lambda: self.client.update_secret_properties(
                props.name, native, enabled=False, tags=tags
            ),
            props.name,
            props.version,
        )

    # -- reads ----------------------------------------------------------------------------

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        native = await self._native(name, version)
        try:
            secret = await self._call(lambda: self.client.get_secret(name, native), name, version)
        except SecretNotFoundError:
            if version is None and await self._deleted_exists(name):
                raise SecretIsDeletedError(f"secret {name!r} is deleted") from None
            raise
        except (SecretDisabledError, PermissionDeniedError):
            # Key Vault does not hand out a disabled version: say why with its properties.
            props = await self.get_properties(name, version)
            if props.revoked_at is not None:
                raise SecretRevokedError(
                    f"secret {props.name!r} version {props.version!r} was revoked"
                ) from None
            if not props.enabled:
                raise SecretDisabledError(
                    f"secret {props.name!r} version {props.version!r} is disabled"
                ) from None
            raise
        props = properties_of(secret.properties, current=version is None)
        if version is not None:
            props = await self.get_properties(name, props.version)
        value = SecretValue(
            props.name, props.version, (secret.value or "").encode(), props.content_type
        )
        return SecretBundle(properties=props, value=value)

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        versions = await self.list_versions(name)
        if not versions:
            raise SecretNotFoundError(f"secret {name!r} not found")
        if version is None:
            return versions[0]
        for props in versions:
            if props.version == version:
                return props
        raise SecretNotFoundError(f"secret {name!r} has no version {version!r}")

    async def list_versions(self, name: str) -> list[VersionProperties]:
        """Newest first; the newest is current (Key Vault's latest)."""
        try:
            items = await self._collect(
                lambda: self.client.list_properties_of_secret_versions(name), name
            )
        except SecretNotFoundError:
            items = []
        if not items:
            if await self._deleted_exists(name):
                raise SecretIsDeletedError(f"secret {name!r} is deleted")
            raise SecretNotFoundError(f"secret {name!r} not found")
        # Stable: versions created in the same second keep the vault's own (newest-first) order.
        ordered = sorted(items, key=lambda i: i.created_on or datetime.min.replace(tzinfo=UTC),
                         reverse=True)  # fmt: skip
        return [properties_of(item, current=index == 0) for index, item in enumerate(ordered)]

    async def list_secrets(self) -> list[VersionProperties]:
        items = await self._collect(self.client.list_properties_of_secrets, None)
        found = []
        for item in items:
            try:
                found.append((await self.list_versions(item.name))[0])
            except SecretNotFoundError:
                continue  # deleted between the two calls
        return sorted(found, key=lambda p: name_key(p.name))

    async def count(self) -> int:
        items = await self._collect(self.client.list_properties_of_secrets, None)
        return len(items)

    # -- delete, recover, purge -------------------------------------------------------------

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        if not await self._exists(name):
            if await self._deleted_exists(name):
                raise SecretIsDeletedError(f"secret {name!r} is already deleted")
            raise SecretNotFoundError(f"secret {name!r} not found")
        deleted = await self._call(lambda: self.client.delete_secret(name), name)
        return deleted_of(deleted)

    async def get_deleted(self, name: str) -> DeletedSecret:
        deleted = await self._call(lambda: self.client.get_deleted_secret(name), name)
        return deleted_of(deleted)

    async def list_deleted(self) -> list[DeletedSecret]:
        items = await self._collect(self.client.list_deleted_secrets, None)
        return sorted((deleted_of(i) for i in items), key=lambda d: name_key(d.properties.name))

    async def recover(self, name: str) -> VersionProperties:
        await self._call(lambda: self.client.recover_deleted_secret(name), name)
        return (await self.list_versions(name))[0]

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        if not deleted_only and await self._exists(name):
            await self._call(lambda: self.client.delete_secret(name), name)
        await self._call(lambda: self.client.purge_deleted_secret(name), name)

    async def purge_expired(self, now: datetime) -> int:
        return 0  # Key Vault purges deleted secrets when their recovery window ends

    # -- keys -------------------------------------------------------------------------------

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        raise ConfigurationError(
            "on the azure profile Key Vault encrypts the values with its own keys; rotate "
            "them in Key Vault"
        )

    async def key_version(self) -> int:
        return 0
