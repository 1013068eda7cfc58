"""Backups of one secret: every version not revoked, sealed under the backup key, and their
restore (never of a version that existed when the secret was revoked)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from strongroom.backends.base import WriteMode, name_key
from strongroom.core.actor import current_actor
from strongroom.core.audit import AuditAction
from strongroom.core.backup import open_backup, seal_backup
from strongroom.core.errors import SecretNotReadableError, SecretRevokedError, ValidationError
from strongroom.core.logging import get_logger
from strongroom.core.models import NewVersion
from strongroom.core.validation import (
    validate_name,
    validate_secret_type,
    validate_tags,
    validate_version,
)
from strongroom.services.wiring import Strongroom

__all__ = ["backup_secret", "restore_secret_backup"]

log = get_logger("strongroom.manager")


async def backup_secret(app: Strongroom, name: str) -> str:
    """A sealed blob of every version of ``name`` that was not revoked (values included),
    restorable with :func:`restore_secret_backup` into a strongroom with the same master key."""
    async with app.audit.operation(AuditAction.READ, name, operation="backup") as op:
        validate_name(name)
        versions = []
        for props in reversed(await app.store.list_versions(name)):  # oldest first
            if props.revoked_at is not None:
                continue
            bundle = await app.store.get_version(props.name, props.version)
            versions.append({
                "version": props.version, "secret_type": props.secret_type.value,
                "content_type": props.content_type, "tags": dict(props.tags),
                "enabled": props.enabled, "created_at": props.created_at.isoformat(),
                "expires_at": _iso(props.expires_at), "not_before": _iso(props.not_before),
                "value": bundle.value.reveal_bytes().decode("utf-8"),
            })  # fmt: skip
        if not versions:
            raise SecretNotReadableError(f"secret {name!r} has no version left to back up")
        op.details["count"] = len(versions)
        document = {"format": 1, "name": props.name, "versions": versions}
        return seal_backup(app.backup_key, document)


async def restore_secret_backup(app: Strongroom, blob: str) -> dict[str, Any]:
    """Recreate a backed-up secret with its versions (the name must be free)."""
    document = open_backup(app.backup_key, blob)
    name = str(document.get("name"))
    async with app.audit.operation(AuditAction.CREATE, name, operation="restore") as op:
        validate_name(name)
        versions = document.get("versions") or []
        await _refuse_revoked(app, name, versions)
        await app.store.purge_expired(app.clock())
        props = None
        for index, item in enumerate(versions):
            new = NewVersion(
                name=name,
                version=validate_version(item["version"]),
                secret_type=validate_secret_type(item["secret_type"]),
                content_type=item["content_type"],
                tags=validate_tags(item["tags"]),
                created_at=datetime.fromisoformat(item["created_at"]),
                expires_at=_from_iso(item["expires_at"]),
                not_before=_from_iso(item["not_before"]),
                enabled=bool(item["enabled"]),
            )
            mode = WriteMode.CREATE if index == 0 else WriteMode.UPDATE
            props = await app.store.write_version(new, item["value"].encode("utf-8"), mode)
        if props is None:
            raise ValidationError("the backup holds no version")
        op.details.update(version=props.version, count=len(versions))
    log.info("secret restored", name=props.name, actor=current_actor().id)
    return props.to_dict()


async def _refuse_revoked(app: Strongroom, name: str, versions: list[dict[str, Any]]) -> None:
    """A backup taken before a revocation holds revoked values: refuse to restore any version
    that existed when the secret was revoked (the tombstones outlive a purge)."""
    for revocation_id, revoked_at in await app.revocation_store.tombstones(name_key(name)):
        for item in versions:
            if datetime.fromisoformat(item["created_at"]) <= revoked_at:
                raise SecretRevokedError(
                    f"secret {name!r} version {item['version']!r} was revoked by revocation "
                    f"request {revocation_id} at {revoked_at.isoformat()}; a revoked value is "
                    "never restored"
                )


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None
