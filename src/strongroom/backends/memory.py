"""Process-memory store (the seed's mock mode): nothing persists, values still sealed.

Good enough for users' own tests: it enforces the same rules as the durable stores and keeps
values encrypted under an ephemeral keyring, so the same code paths run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from strongroom.backends.base import (
    KeyRotationResult,
    RewrapProgress,
    WriteMode,
    is_deleted,
    name_conflict,
    name_key,
    not_found,
)
from strongroom.backends.vault_keys import MemoryKeyStore
from strongroom.core.crypto import Envelope, Keyring, MasterKey, Sealed
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    SecretValue,
    VersionProperties,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Version:
    props: VersionProperties
    sealed: Sealed


@dataclass(slots=True)
class _Secret:
    versions: list[_Version] = field(default_factory=list)
    deleted_at: datetime | None = None
    purge_at: datetime | None = None

    def current(self) -> _Version:
        return self.versions[-1]


class MemoryStore:
    """Secrets in a dict of this process. Every method runs without awaiting, so each call is
    atomic with respect to other tasks."""

    backend = "memory"

    def __init__(self, master_key: MasterKey | None = None) -> None:
        self._master = master_key or MasterKey.generate()[0]
        self._rows = [Keyring.new_row(self._master, 1)]
        self._envelope = Envelope(Keyring.load(self._master, self._rows))
        self._secrets: dict[str, _Secret] = {}
        self._vault_keys = MemoryKeyStore()

    def vault_keys(self) -> MemoryKeyStore:
        """Key Vault keys, in memory like the secrets."""
        return self._vault_keys

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _live(self, name: str) -> _Secret:
        secret = self._secrets.get(name_key(name))
        if secret is None:
            raise not_found(name)
        if secret.deleted_at is not None:
            raise is_deleted(name)
        return secret

    @staticmethod
    def _find(secret: _Secret, name: str, version: str | None) -> _Version:
        if version is None:
            return secret.current()
        for row in secret.versions:
            if row.props.version == version:
                return row
        raise not_found(name, version)

    @staticmethod
    def _props(secret: _Secret, row: _Version) -> VersionProperties:
        return replace(row.props, current=row is secret.current())

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        secret = self._secrets.get(key)
        if mode is WriteMode.CREATE and secret is not None:
            raise name_conflict(new.name, deleted=secret.deleted_at is not None)
        if mode is WriteMode.UPDATE:
            secret = self._live(new.name)
        name = secret.current().props.name if secret else new.name
        props = new.written_as(name)
        row = _Version(props, self._envelope.seal(key, new.version, value))
        if secret is None:
            secret = self._secrets[key] = _Secret()
        secret.versions.append(row)
        return props

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        secret = self._live(name)
        row = self._find(secret, name, version)
        props = self._props(secret, row)
        data = self._envelope.open(name_key(name), props.version, row.sealed)
        return SecretBundle(props, SecretValue(props.name, props.version, data, props.content_type))

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        secret = self._live(name)
        return self._props(secret, self._find(secret, name, version))

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        secret = self._live(name)
        row = self._find(secret, name, version)
        row.props = changes.apply(row.props)
        return self._props(secret, row)

    async def list_secrets(self) -> list[VersionProperties]:
        return sorted(
            (s.current().props for s in self._secrets.values() if s.deleted_at is None),
            key=lambda p: p.name.lower(),
        )

    async def list_versions(self, name: str) -> list[VersionProperties]:
        secret = self._live(name)
        return [self._props(secret, row) for row in reversed(secret.versions)]

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        secret = self._live(name)
        secret.deleted_at, secret.purge_at = deleted_at, purge_at
        return DeletedSecret(secret.current().props, deleted_at, purge_at)

    def _deleted(self, name: str) -> _Secret:
        secret = self._secrets.get(name_key(name))
        if secret is None or secret.deleted_at is None:
            raise not_found(name)
        return secret

    async def get_deleted(self, name: str) -> DeletedSecret:
        secret = self._deleted(name)
        if secret.deleted_at is None or secret.purge_at is None:
            raise not_found(name)
        return DeletedSecret(secret.current().props, secret.deleted_at, secret.purge_at)

    async def list_deleted(self) -> list[DeletedSecret]:
        return [
            DeletedSecret(s.current().props, s.deleted_at, s.purge_at)
            for s in sorted(self._secrets.values(), key=lambda s: s.current().props.name.lower())
            if s.deleted_at is not None and s.purge_at is not None
        ]

    async def recover(self, name: str) -> VersionProperties:
        secret = self._deleted(name)
        secret.deleted_at = secret.purge_at = None
        return secret.current().props

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        secret = self._secrets.get(name_key(name))
        if secret is None or (deleted_only and secret.deleted_at is None):
            raise not_found(name)
        del self._secrets[name_key(name)]

    async def purge_expired(self, now: datetime) -> int:
        expired = [
            key for key, s in self._secrets.items() if s.purge_at is not None and s.purge_at <= now
        ]
        for key in expired:
            del self._secrets[key]
        return len(expired)

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        previous = self._envelope.keyring.versions
        new_version = max(previous) + 1
        self._rows.append(Keyring.new_row(self._master, new_version))
        self._envelope = Envelope(Keyring.load(self._master, self._rows))
        count = 0
        total = sum(len(secret.versions) for secret in self._secrets.values())
        for key, secret in self._secrets.items():
            for row in secret.versions:
                row.sealed = self._envelope.rewrap(key, row.props.version, row.sealed)
                count += 1
        if progress is not None:
            progress(count, total)
        self._rows = [r for r in self._rows if r.version == new_version]
        self._envelope = Envelope(Keyring.load(self._master, self._rows))
        return KeyRotationResult(new_version, previous, count)

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        secret = self._secrets.get(name_key(name))
        if secret is None:
            raise not_found(name)
        changes = PropertyChanges(updated_at=revoked_at, enabled=False)
        count = 0
        for row in secret.versions:
            if row.props.revoked_at is None:
                row.props = replace(changes.apply(row.props), revoked_at=revoked_at)
                count += 1
        return count

    async def key_version(self) -> int:
        return self._envelope.keyring.current_version

    async def count(self) -> int:
        return sum(1 for s in self._secrets.values() if s.deleted_at is None)
