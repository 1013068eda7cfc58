"""SecretsManager: the seed's API over whichever store the configuration chose."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from strongroom.backends.base import RewrapProgress, WriteMode, name_key, write_update
from strongroom.core.actor import current_actor
from strongroom.core.audit import AuditAction
from strongroom.core.errors import (
    ValidationError,
)
from strongroom.core.logging import get_logger
from strongroom.core.models import (
    JSON_CONTENT_TYPE,
    UNSET,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    SecretType,
    VersionProperties,
    _Unset,
)
from strongroom.core.rotation import due_at, next_rotation
from strongroom.core.validation import (
    encode_value,
    expiry_from_days,
    validate_aware,
    validate_content_type,
    validate_name,
    validate_secret_type,
    validate_tags,
)
from strongroom.services.facade import StrongroomFacade
from strongroom.services.secrets import backups
from strongroom.services.secrets.lookup import check_readable, resolve_version, unless_live
from strongroom.services.wiring import Strongroom

__all__ = ["SecretsManager", "check_readable"]

log = get_logger("strongroom.manager")


def _new_version_id() -> str:
    return secrets.token_hex(16)


class SecretsManager(StrongroomFacade):
    """Create, read, version, delete and recover secrets.

    ``SecretsManager()`` uses the process default configuration from the environment and opens
    its stores on first use; pass ``app`` (a :class:`Strongroom`) or ``settings`` to choose.
    With STRONGROOM_ADDR set it is a ``RemoteSecretsManager`` that asks the server instead.
    """

    _remote_counterpart = "strongroom.services.remote.manager:RemoteSecretsManager"

    # -- writes ----------------------------------------------------------------------------

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
        """Store a new secret; fails if the name is in use (update it to add a version).

        ``expires_at`` (absolute) and ``expires_in_days`` are alternatives; ``enabled=False``
        stores a version that cannot be read until it is enabled. ``content_type_hint``
        records the content type without checking the value against it (Key Vault's rule)."""
        app = await self._ready()
        async with app.audit.operation(AuditAction.CREATE, name) as op:
            now = app.clock()
            validate_name(name)
            data, content_type = encode_value(value, content_type, check_json=not content_type_hint)
            new = NewVersion(
                name=name,
                version=_new_version_id(),
                secret_type=validate_secret_type(secret_type),
                content_type=content_type,
                tags=validate_tags(metadata),
                created_at=now,
                expires_at=_expiry(expires_in_days, expires_at, now),
                not_before=validate_aware(not_before, "not_before"),
                enabled=_flag(enabled, "enabled"),
            )
            op.details.update(_version_details(new))
            await app.store.purge_expired(now)  # a lapsed deleted secret frees its name
            props = await app.store.write_version(new, data, WriteMode.CREATE)
            op.details["version"] = props.version
        await _restart_rotation_clock(app, props)
        log.info("secret created", name=props.name, version=props.version, actor=current_actor().id)
        await app.events.emit(
            "secret.created", props.name, version=props.version, actor=current_actor().id
        )
        return props.to_dict()

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
        """Add a new current version. Type and metadata carry over unless given;
        ``content_type_hint`` as for :meth:`create_secret`."""
        app = await self._ready()
        async with app.audit.operation(AuditAction.UPDATE, name) as op:
            now = app.clock()
            validate_name(name)
            tags = validate_tags(metadata) if metadata is not None else None
            kind = validate_secret_type(secret_type) if secret_type is not None else None
            expiry = _expiry(expires_in_days, expires_at, now)
            nbf = validate_aware(not_before, "not_before")
            _flag(enabled, "enabled")

            def build(previous: VersionProperties) -> tuple[NewVersion, bytes]:
                # From the version this one follows, read under the store's write lock where
                # it has one: what carries over is what the previous version had.
                carried = content_type
                inherits = carried is None and isinstance(value, str)
                if inherits and previous.content_type != JSON_CONTENT_TYPE:
                    carried = previous.content_type
                data, kept = encode_value(value, carried, check_json=not content_type_hint)
                new = NewVersion(
                    name=name,
                    version=_new_version_id(),
                    secret_type=kind or previous.secret_type,
                    content_type=kept,
                    tags=tags if tags is not None else dict(previous.tags),
                    created_at=now,
                    expires_at=expiry,
                    not_before=nbf,
                    enabled=enabled,
                )
                op.details.update(_version_details(new))
                return new, data

            props = await write_update(app.store, name, build)
            op.details["version"] = props.version
        await _restart_rotation_clock(app, props)
        log.info("secret updated", name=props.name, version=props.version, actor=current_actor().id)
        await app.events.emit(
            "secret.updated", props.name, version=props.version, actor=current_actor().id
        )
        return props.to_dict()

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
        """Change a version's properties (the current one by default) without a new value."""
        app = await self._ready()
        async with app.audit.operation(AuditAction.UPDATE, name, operation="properties") as op:
            validate_name(name)
            version = await resolve_version(app, name, version)
            if enabled is not UNSET and not isinstance(enabled, bool):
                raise ValidationError("enabled must be True or False")
            changes = PropertyChanges(
                updated_at=app.clock(),
                enabled=enabled,
                expires_at=(
                    expires_at if expires_at is UNSET else validate_aware(expires_at, "expires_at")
                ),
                not_before=(
                    not_before if not_before is UNSET else validate_aware(not_before, "not_before")
                ),
                tags=UNSET if metadata is UNSET else validate_tags(metadata),
                content_type=(
                    content_type
                    if content_type is UNSET or content_type is None
                    else validate_content_type(content_type)
                ),
            )
            if enabled is not UNSET:
                op.details["enabled"] = enabled
            props = await app.store.update_properties(name, version, changes)
            op.details["version"] = props.version
        log.info("secret properties updated", name=props.name, version=props.version)
        return props.to_dict()

    async def delete_secret(self, name: str, immediate: bool = False) -> dict[str, Any]:
        """Soft-delete (recoverable for the recovery window), or purge at once if ``immediate``."""
        app = await self._ready()
        async with app.audit.operation(AuditAction.DELETE, name, immediate=immediate) as op:
            validate_name(name)
            if immediate:
                await app.store.purge(name, deleted_only=False)
                result = {"name": name, "deleted": True, "purged": True}
            else:
                now = app.clock()
                deleted = await app.store.delete(
                    name, deleted_at=now, purge_at=now + timedelta(days=app.settings.recovery_days)
                )
                op.details["recoverable_days"] = app.settings.recovery_days
                result = {**deleted.to_dict(), "deleted": True, "purged": False}
        log.info("secret deleted", name=name, actor=current_actor().id, count=int(immediate))
        return result

    async def recover_deleted_secret(self, name: str) -> dict[str, Any]:
        app = await self._ready()
        async with app.audit.operation(AuditAction.RECOVER, name) as op:
            validate_name(name)
            await app.store.purge_expired(app.clock())  # past its window: gone, not recoverable
            props = await unless_live(app, name, app.store.recover(name))
            op.details["version"] = props.version
        log.info("secret recovered", name=name, actor=current_actor().id)
        return props.to_dict()

    async def purge_deleted_secret(self, name: str) -> dict[str, Any]:
        """Remove a soft-deleted secret and all its versions for good."""
        app = await self._ready()
        async with app.audit.operation(AuditAction.PURGE, name):
            validate_name(name)
            await app.store.purge_expired(app.clock())
            await unless_live(app, name, app.store.purge(name, deleted_only=True))
        log.info("secret purged", name=name, actor=current_actor().id)
        return {"name": name, "purged": True}

    async def rotate_master_key(self, *, progress: RewrapProgress | None = None) -> dict[str, Any]:
        """Re-wrap every data key under a new keyring version; reads keep working meanwhile.

        ``progress(done, total)`` is called between batches (the CLI draws a bar with it).
        """
        app = await self._ready()
        async with app.audit.operation(AuditAction.KEY_ROTATE) as op:
            result = await app.store.rotate_key(progress)
            op.details.update(key_version=result.kek_version, rewrapped=result.rewrapped)
        log.info("master key rotated", kek_version=result.kek_version, rewrapped=result.rewrapped)
        return {
            "key_version": result.kek_version,
            "previous_versions": result.previous_versions,
            "rewrapped": result.rewrapped,
        }

    async def backup_secret(self, name: str) -> str:
        """A sealed blob of every version of ``name`` that was not revoked (values included),
        restorable with :meth:`restore_secret_backup` into a strongroom with the same master key."""
        return await backups.backup_secret(await self._ready(), name)

    async def restore_secret_backup(self, blob: str) -> dict[str, Any]:
        """Recreate a backed-up secret with its versions (the name must be free)."""
        return await backups.restore_secret_backup(await self._ready(), blob)

    # -- reads -----------------------------------------------------------------------------

    async def get_secret(self, name: str, version: str | None = None) -> Any:
        """The value: text, or decoded JSON for ``application/json`` secrets."""
        bundle = await self.get_secret_bundle(name, version)
        return bundle.value.reveal()

    async def get_secret_bundle(
        self, name: str, version: str | None = None, *, enforce_dates: bool = True
    ) -> SecretBundle:
        """The value as an opaque :class:`SecretValue` with its properties.

        The READ event is committed before the value is handed out; if it cannot be, the call
        fails with AuditUnavailableError and no value. ``enforce_dates=False`` serves expired
        and not-yet-valid versions (Key Vault's get); revoked and disabled ones never.
        """
        app = await self._ready()
        async with app.audit.operation(AuditAction.READ, name) as op:
            validate_name(name)
            version = await resolve_version(app, name, version)
            bundle = await app.store.get_version(name, version)
            op.details["version"] = bundle.properties.version
            check_readable(bundle.properties, app.clock(), dates=enforce_dates)
        return bundle

    async def get_secret_properties(self, name: str, version: str | None = None) -> dict[str, Any]:
        app = await self._ready()
        async with app.audit.operation(AuditAction.DESCRIBE, name) as op:
            validate_name(name)
            version = await resolve_version(app, name, version)
            props = await app.store.get_properties(name, version)
            op.details["version"] = props.version
        return props.to_dict()

    async def list_secrets(self) -> list[dict[str, Any]]:
        """Properties of every live secret's current version (never a value)."""
        app = await self._ready()
        async with app.audit.operation(AuditAction.LIST) as op:
            found = await app.store.list_secrets()
            op.details["count"] = len(found)
        return [p.to_dict() for p in found]

    async def get_secret_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version's properties, newest first."""
        app = await self._ready()
        async with app.audit.operation(AuditAction.LIST, name, operation="versions") as op:
            validate_name(name)
            found = await app.store.list_versions(name)
            op.details["count"] = len(found)
        return [p.to_dict() for p in found]

    async def list_deleted_secrets(self) -> list[dict[str, Any]]:
        app = await self._ready()
        async with app.audit.operation(AuditAction.LIST, operation="deleted") as op:
            await app.store.purge_expired(app.clock())
            found = await app.store.list_deleted()
            op.details["count"] = len(found)
        return [d.to_dict() for d in found]

    async def get_deleted_secret(self, name: str) -> dict[str, Any]:
        app = await self._ready()
        async with app.audit.operation(AuditAction.DESCRIBE, name, operation="deleted"):
            validate_name(name)
            await app.store.purge_expired(app.clock())
            found = await unless_live(app, name, app.store.get_deleted(name))
        return found.to_dict()


def _expiry(days: int | None, at: datetime | None, now: datetime) -> datetime | None:
    if days is not None and at is not None:
        raise ValidationError("give expires_in_days or expires_at, not both")
    if at is not None:
        return validate_aware(at, "expires_at")
    return expiry_from_days(days, now)


def _flag(value: object, label: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{label} must be True or False")
    return value


def _version_details(new: NewVersion) -> dict[str, Any]:
    """What an audit row says about a new version: type and tags (its id once it is written);
    never the value."""
    return {
        "secret_type": new.secret_type.value,
        "content_type": new.content_type,
        "tags": dict(new.tags),
        "expires_at": new.expires_at,
    }


async def _restart_rotation_clock(app: Strongroom, props: VersionProperties) -> None:
    """A version written by hand counts as a rotation: its schedule starts again from it."""
    row = await app.rotation_store.restart_target(name_key(props.name))
    if row is None:
        return
    now = app.clock()
    await app.rotation_store.schedule(
        {
            "secret_name": row["secret_name"],
            "last_rotation": props.created_at,
            "next_rotation": next_rotation(props.created_at, row["rotation_days"]),
            "expires_at": props.expires_at,
            "force_on_next": row["force_on_next"],
            "due_at": now if row["force_on_next"] else due_at(
                props.created_at, row["rotation_days"], props.expires_at,
                row["rotation_hours_before_expiry"], now=now,
            ),
            "updated_at": now,
        }
    )  # fmt: skip
