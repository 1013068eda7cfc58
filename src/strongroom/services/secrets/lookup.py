"""How the manager finds what a call names: a version by a unique prefix, a soft-deleted
secret (saying so when the name is live instead), and whether a version may be read now."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from strongroom.backends.base import not_found
from strongroom.core.errors import (
    SecretDisabledError,
    SecretExpiredError,
    SecretNotDeletedError,
    SecretNotFoundError,
    SecretNotYetValidError,
    SecretRevokedError,
    ValidationError,
)
from strongroom.core.models import VersionProperties
from strongroom.core.validation import validate_version_ref

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = ["check_readable", "resolve_version", "unless_live"]

T = TypeVar("T")
FULL_VERSION_LENGTH = 32


def check_readable(props: VersionProperties, now: datetime, *, dates: bool = True) -> None:
    """Raise the typed error that says why this version's value may not be read now
    (``dates=False``: only revoked and disabled versions are refused)."""
    if props.revoked_at is not None:
        raise SecretRevokedError(f"secret {props.name!r} version {props.version!r} was revoked")
    if not props.enabled:
        raise SecretDisabledError(f"secret {props.name!r} version {props.version!r} is disabled")
    if not dates:
        return
    if props.not_before is not None and now < props.not_before:
        raise SecretNotYetValidError(
            f"secret {props.name!r} is not valid before {props.not_before.isoformat()}"
        )
    if props.expires_at is not None and now >= props.expires_at:
        raise SecretExpiredError(f"secret {props.name!r} expired at {props.expires_at.isoformat()}")


async def resolve_version(app: Strongroom, name: str, version: str | None) -> str | None:
    """A full version id for ``version``, which may be a unique prefix of at least 8 hex
    characters (what the CLI prints); ``None`` stays the current version."""
    if version is None or len(validate_version_ref(version)) == FULL_VERSION_LENGTH:
        return version
    matches = [
        p.version for p in await app.store.list_versions(name) if p.version.startswith(version)
    ]
    if not matches:
        raise not_found(name, version)
    if len(matches) > 1:
        raise ValidationError(
            f"version prefix {version!r} of secret {name!r} matches {len(matches)} versions; "
            "give more characters"
        )
    return matches[0]


async def unless_live(app: Strongroom, name: str, step: Awaitable[T]) -> T:
    """Run a step on a soft-deleted secret; if the name is live instead, say so (a store only
    knows it found no deleted secret of that name)."""
    try:
        return await step
    except SecretNotFoundError as missing:
        try:
            await app.store.get_properties(name)
        except SecretNotFoundError:
            raise missing from None
        raise SecretNotDeletedError(
            f"secret {name!r} is live, not deleted: there is nothing to recover or purge "
            "(`delete` it first)"
        ) from None
