"""The one async protocol every secret store speaks.

Stores take and return values as bytes inside opaque types, and properties as plain records.
They enforce existence and deletion state atomically (create-only, update-only); the manager
above them does validation, expiry checks and carry-over of properties.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from strongroom.core.errors import (
    DeletedSecretConflictError,
    SecretAlreadyExistsError,
    SecretIsDeletedError,
    SecretNotFoundError,
)
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    VersionProperties,
)

__all__ = [
    "KeyRotationResult",
    "RewrapProgress",
    "SecretStore",
    "VersionBuilder",
    "WriteMode",
    "is_deleted",
    "name_conflict",
    "name_key",
    "not_found",
    "write_update",
]


class WriteMode(enum.Enum):
    CREATE = "create"  # fail if the name is in use (live or soft-deleted)
    UPDATE = "update"  # fail unless a live secret has this name


def name_key(name: str) -> str:
    """Names compare case-insensitively, as in Key Vault; this is the comparison key."""
    return name.lower()


#: Called during key rotation with (data keys re-wrapped so far, data keys to re-wrap in all),
#: so a command line can draw a progress bar; it must not block.
RewrapProgress = Callable[[int, int], None]


#: Builds a new version from the current one's properties (what it inherits: type, content
#: type, metadata): the new version's record and its value as bytes. It may raise a
#: StrongroomError (bad input), which fails that write alone; it may be called again when a
#: store retries, so it must not do more than build.
VersionBuilder = Callable[[VersionProperties], tuple[NewVersion, bytes]]


@dataclass(frozen=True, slots=True)
class KeyRotationResult:
    kek_version: int
    previous_versions: list[int]
    rewrapped: int


@runtime_checkable
class SecretStore(Protocol):
    """Where secret versions live. Implementations: memory, sqlite, postgres."""

    backend: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties: ...

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle: ...

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties: ...

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties: ...

    async def list_secrets(self) -> list[VersionProperties]: ...

    async def list_versions(self, name: str) -> list[VersionProperties]: ...

    async def delete(
        self, name: str, *, deleted_at: datetime, purge_at: datetime
    ) -> DeletedSecret: ...

    async def get_deleted(self, name: str) -> DeletedSecret: ...

    async def list_deleted(self) -> list[DeletedSecret]: ...

    async def recover(self, name: str) -> VersionProperties: ...

    async def purge(self, name: str, *, deleted_only: bool = True) -> None: ...

    async def purge_expired(self, now: datetime) -> int: ...

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult: ...

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        """Disable and mark revoked every version of ``name`` at once; how many were changed."""
        ...

    async def key_version(self) -> int: ...

    async def count(self) -> int: ...


def not_found(name: str, version: str | None = None) -> Exception:
    if version is None:
        return SecretNotFoundError(f"secret {name!r} not found")
    return SecretNotFoundError(f"secret {name!r} has no version {version!r}")


def is_deleted(name: str) -> Exception:
    return SecretIsDeletedError(f"secret {name!r} is deleted; recover or purge it first")


def name_conflict(name: str, *, deleted: bool) -> Exception:
    if deleted:
        return DeletedSecretConflictError(
            f"secret {name!r} is deleted but recoverable; recover or purge it to reuse the name"
        )
    return SecretAlreadyExistsError(f"secret {name!r} already exists; update it to add a version")


async def write_update(store: SecretStore, name: str, build: VersionBuilder) -> VersionProperties:
    """A new current version of ``name``, built from the properties of the version it follows.

    A store that can read the current version under the lock it writes under does both at
    once (its ``write_update``): the new version then inherits from the very version it
    follows, and the read costs no separate round trip. Any other store is read, then written.
    """
    inside: Callable[[str, VersionBuilder], Awaitable[VersionProperties]] | None = getattr(
        store, "write_update", None
    )
    if inside is not None:
        return await inside(name, build)
    new, value = build(await store.get_properties(name))
    return await store.write_version(new, value, WriteMode.UPDATE)
