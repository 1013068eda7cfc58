"""An edge's replica: a local store that serves reads within the offline bound and refuses
every write that does not come from the synchroniser. A row that fails decryption or its MAC is
never served: the synchroniser is told to rebuild it from the upstream.

Consumers reach the replica through the same manager and HTTP routes as any store, so the
bound is enforced here, below every path that reads a value (the HTTP service's hot reads
included). The synchroniser writes to :attr:`ReplicaStore.inner` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from strongroom.backends.base import KeyRotationResult, RewrapProgress, SecretStore, WriteMode
from strongroom.core.errors import CryptoError, EdgeReadOnlyError, StoreUnavailableError
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    VersionProperties,
)
from strongroom.core.offline import OfflineBound, OfflineLimits

__all__ = ["HOLD_SECONDS", "ReplicaStore"]

#: How long a read waits for a reconnecting edge's deletions and revocations to be applied;
#: past it the read goes on under the offline bound (an upstream that answers that slowly is
#: as good as away).
HOLD_SECONDS = 10.0


def _read_only() -> EdgeReadOnlyError:
    return EdgeReadOnlyError(
        "this is an edge replica, which is read-only: make changes at the upstream server"
    )


class ReplicaStore:
    """Reads of values go through the offline bound; writes are refused."""

    def __init__(
        self,
        inner: SecretStore,
        bound: OfflineBound,
        *,
        limits: OfflineLimits | None = None,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self.inner = inner
        self.bound = bound
        self.limits = limits or OfflineLimits()
        #: Cleared by the synchroniser while it applies a reconnection's deletions and
        #: revocations: reads wait for them (at most ``hold_seconds``).
        self.reads_open = asyncio.Event()
        self.reads_open.set()
        self.hold_seconds = hold_seconds
        #: Reads waiting at that gate now.
        self.held = 0
        self.backend = inner.backend
        #: Told the name of a secret whose stored row failed decryption or its MAC (the
        #: synchroniser rebuilds it from the upstream).
        self.on_corrupt: Callable[[str], None] | None = None

    def __repr__(self) -> str:
        return f"ReplicaStore({self.inner.backend})"

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        if not self.reads_open.is_set():
            await self._hold()
        self.bound.check()
        try:
            bundle = await self.inner.get_version(name, version)
        except CryptoError:
            # Never served: the authenticated encryption caught a damaged row.
            if self.on_corrupt is not None:
                self.on_corrupt(name)
            raise StoreUnavailableError(
                f"the edge's copy of {name!r} failed its integrity check; it is being rebuilt "
                "from the upstream"
            ) from None
        if not self.bound.online:
            limit, source = self.limits.for_version(bundle.properties)
            if limit is not None:
                self.bound.check(limit, source=source)
        return bundle

    async def _hold(self) -> None:
        self.held += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reads_open.wait(), self.hold_seconds)
        finally:
            self.held -= 1

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        return await self.inner.get_properties(name, version)

    async def list_secrets(self) -> list[VersionProperties]:
        return await self.inner.list_secrets()

    async def list_versions(self, name: str) -> list[VersionProperties]:
        return await self.inner.list_versions(name)

    async def get_deleted(self, name: str) -> DeletedSecret:
        return await self.inner.get_deleted(name)

    async def list_deleted(self) -> list[DeletedSecret]:
        return await self.inner.list_deleted()

    async def purge_expired(self, now: datetime) -> int:
        # Housekeeping of what the upstream already scheduled, not a consumer's change.
        return await self.inner.purge_expired(now)

    async def key_version(self) -> int:
        return await self.inner.key_version()

    async def count(self) -> int:
        return await self.inner.count()

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        raise _read_only()

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        raise _read_only()

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        raise _read_only()

    async def recover(self, name: str) -> VersionProperties:
        raise _read_only()

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        raise _read_only()

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        raise _read_only()

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        raise _read_only()
