"""Azure Key Vault in several regions: reads fail over, writes reach every vault.

``AZURE_KEY_VAULT_URL`` names the primary and ``AZURE_KEY_VAULT_SECONDARY_URLS`` the others, in
failover order.

- **Reads** go to the first vault whose circuit breaker is closed. A vault that does not answer,
  or throttles (429) once the SDK's own retries are spent, opens its breaker for the cool-down;
  the read moves to the next vault at once. After the cool-down one read tries it again.
- **Writes** go to the primary only (two vaults accepting writes would need conflict rules Key
  Vault does not have), after one outbox row per secondary has been recorded in the state
  database (db.replication_outbox). A copier (one per process; rows are leased) makes each
  secondary match the primary per name and then removes the row, so a secondary that is down
  catches up when it returns and no acknowledged write is lost.
- **No stale secret is served.** A secondary does not answer for a name it has not caught up
  on: a revoked or deleted secret can never be read from a vault that has not heard of it yet.
- ``reconcile`` compares every name in every vault with the primary and repairs what differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from strongroom.backends.azure import AzureKeyVaultStore
from strongroom.backends.azure_sdk import MAX_USER_TAGS, properties_of
from strongroom.backends.azure_sync import origin_of, raw_versions, sync_name, twins
from strongroom.backends.base import KeyRotationResult, RewrapProgress, WriteMode
from strongroom.core.errors import (
    RateLimitedError,
    SecretIsDeletedError,
    SecretNotFoundError,
    StoreUnavailableError,
    StrongroomError,
)
from strongroom.core.logging import get_logger
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    VersionProperties,
)
from strongroom.db.replication_outbox import Pending, ReplicationOutbox

__all__ = ["Drift", "RegionalVaults", "SecondaryVault", "VaultHealth"]

log = get_logger("strongroom.azure")

T = TypeVar("T")
_FAILOVER = (StoreUnavailableError, RateLimitedError)
_LEASE_US = 60_000_000
_COPIES = 8  # names copied at once by one copier


class SecondaryVault(AzureKeyVaultStore):
    """A secondary's copies, seen with the primary's version ids (backends.azure_sync)."""

    max_user_tags = MAX_USER_TAGS - 1  # one tag carries the primary's version id

    async def _native(self, name: str, version: str | None) -> str | None:
        if version is None:
            return None
        twin = twins(await raw_versions(self, name)).get(version)
        if twin is None:
            raise SecretNotFoundError(f"secret {name!r} has no version {version!r}")
        return str(twin.version)

    async def list_versions(self, name: str) -> list[VersionProperties]:
        items = await raw_versions(self, name)
        if not items:
            if await self._deleted_exists(name):
                raise SecretIsDeletedError(f"secret {name!r} is deleted")
            raise SecretNotFoundError(f"secret {name!r} not found")
        kept = {id(item) for item in twins(items).values()}
        newest_first = [item for item in reversed(items) if id(item) in kept]
        if origin_of(newest_first[0]) != origin_of(items[-1]):
            newest_first.sort(key=lambda item: origin_of(item) != origin_of(items[-1]))
        return [properties_of(item, current=i == 0) for i, item in enumerate(newest_first)]


@dataclass
class _Breaker:
    """Open (skipped) until ``until`` on the monotonic clock."""

    until: float = 0.0
    failures: int = 0

    def allows(self, now: float) -> bool:
        return now >= self.until


@dataclass(frozen=True, slots=True)
class VaultHealth:
    url: str
    role: str
    available: bool
    backlog: int
    oldest_seconds: float


@dataclass(frozen=True, slots=True)
class Drift:
    """What differed for one name on one secondary (and was repaired, unless only checked)."""

    vault: str
    name: str
    problems: tuple[str, ...]


def _now_us() -> int:
    return time.time_ns() // 1000


class RegionalVaults:
    """The SecretStore protocol over a primary vault and its secondaries."""

    backend = "azure"

    def __init__(
        self,
        primary: AzureKeyVaultStore,
        secondaries: Sequence[SecondaryVault],
        outbox: ReplicationOutbox,
        *,
        cooldown_seconds: float = 30.0,
        interval_seconds: float = 1.0,
    ) -> None:
        self.primary = primary
        self.secondaries = list(secondaries)
        self.vaults: list[AzureKeyVaultStore] = [primary, *self.secondaries]
        self.vault_url = primary.vault_url
        self._outbox = outbox
        self._cooldown = cooldown_seconds
        self._interval = interval_seconds
        self._breakers = {vault.vault_url: _Breaker() for vault in self.vaults}
        self._wake = asyncio.Event()
        self._copier: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        await self._outbox.open()
        for vault in self.vaults:
            await vault.open()
        self._copier = asyncio.get_running_loop().create_task(self._copy_loop())

    async def close(self) -> None:
        if self._copier is not None:
            task, self._copier = self._copier, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for vault in self.vaults:
            await vault.close()
        await self._outbox.close()

    # -- failover -------------------------------------------------------------------------

    def _candidates(self) -> list[AzureKeyVaultStore]:
        """Vaults in failover order, those whose breaker is open last (tried only when no
        other vault could answer: better a slow answer than none)."""
        now = time.monotonic()
        closed = [v for v in self.vaults if self._breakers[v.vault_url].allows(now)]
        return closed + [v for v in self.vaults if v not in closed]

    def _trip(self, vault: AzureKeyVaultStore) -> None:
        breaker = self._breakers[vault.vault_url]
        breaker.failures += 1
        breaker.until = time.monotonic() + self._cooldown
        log.warning("vault skipped after a failure", target=vault.vault_url)

    async def _read(
        self, name: str | None, call: Callable[[AzureKeyVaultStore], Awaitable[T]]
    ) -> T:
        last: StrongroomError | None = None
        for vault in self._candidates():
            if (
                vault is not self.primary
                and name is not None
                and await self._outbox.is_pending(vault.vault_url, name)
            ):
                continue  # not caught up on this name: it might serve what was revoked
            try:
                result = await call(vault)
            except _FAILOVER as exc:
                self._trip(vault)
                last = exc
                continue
            self._breakers[vault.vault_url].failures = 0
            return result
        if last is not None:
            raise last
        raise StoreUnavailableError(f"secret {name!r}: no vault that has caught up can answer")

    # -- writes: the primary, then the outbox copies ----------------------------------------

    async def _write(self, name: str, call: Callable[[], Awaitable[T]]) -> T:
        if not self._breakers[self.primary.vault_url].allows(time.monotonic()):
            # Refused before anything is recorded: a write that never reached the primary must
            # not hold the name back from the secondaries' reads.
            raise StoreUnavailableError(
                "the primary vault is unavailable: writes wait for it (reads go on)"
            )
        targets = [vault.vault_url for vault in self.secondaries]
        recorded = await self._outbox.enqueue(targets, name, _now_us())
        try:
            return await call()
        except _FAILOVER:
            self._trip(self.primary)
            raise
        finally:
            # Due only now: a copy that ran during the write could miss what it wrote.
            await self._outbox.ready(recorded, _now_us())
            self._wake.set()

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        self.secondaries[0]._check_tags(new.tags)  # a copy needs one tag more
        return await self._write(new.name, lambda: self.primary.write_version(new, value, mode))

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        return await self._write(
            name, lambda: self.primary.update_properties(name, version, changes)
        )

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        # The copier is woken at once; until a secondary has the revocation, it does not answer
        # for this name at all (see _read), so waiting for slow vaults here would gain nothing.
        return await self._write(name, lambda: self.primary.revoke_all(name, revoked_at))

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        return await self._write(
            name, lambda: self.primary.delete(name, deleted_at=deleted_at, purge_at=purge_at)
        )

    async def recover(self, name: str) -> VersionProperties:
        return await self._write(name, lambda: self.primary.recover(name))

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        await self._write(name, lambda: self.primary.purge(name, deleted_only=deleted_only))

    async def purge_expired(self, now: datetime) -> int:
        return 0  # Key Vault purges deleted secrets when their recovery window ends

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        return await self.primary.rotate_key(progress)

    async def key_version(self) -> int:
        return 0

    # -- reads ----------------------------------------------------------------------------

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        return await self._read(name, lambda vault: vault.get_version(name, version))

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        return await self._read(name, lambda vault: vault.get_properties(name, version))

    async def list_versions(self, name: str) -> list[VersionProperties]:
        return await self._read(name, lambda vault: vault.list_versions(name))

    async def list_secrets(self) -> list[VersionProperties]:
        return await self._read(None, lambda vault: vault.list_secrets())

    async def count(self) -> int:
        return await self._read(None, lambda vault: vault.count())

    async def get_deleted(self, name: str) -> DeletedSecret:
        return await self._read(name, lambda vault: vault.get_deleted(name))

    async def list_deleted(self) -> list[DeletedSecret]:
        return await self._read(None, lambda vault: vault.list_deleted())

    # -- the copier -------------------------------------------------------------------------

    async def _copy_loop(self) -> None:
        while True:
            try:
                await self.replicate_due()
            except StrongroomError as exc:  # the state database is down: try again later
                log.warning("replication outbox unavailable", error=exc.code)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()

    async def replicate_due(self, limit: int = 100) -> int:
        """Copy what the outbox says is due; how many names were brought up to date. A vault
        that fails once is not tried again in the same pass (its rows wait for the next)."""
        done = 0
        by_url = {vault.vault_url: vault for vault in self.secondaries}
        failing: set[str] = set()
        gate = asyncio.Semaphore(_COPIES)

        async def one(item: Pending) -> int:
            async with gate:
                return await self._replicate(by_url.get(item.target), item, failing)

        while claimed := await self._outbox.claim(_now_us(), _LEASE_US, limit):
            done += sum(await asyncio.gather(*(one(item) for item in claimed)))
            if len(claimed) < limit:
                break
        return done

    async def _replicate(
        self, vault: SecondaryVault | None, item: Pending, failing: set[str]
    ) -> int:
        if vault is None:  # no longer configured: nothing to copy to
            await self._outbox.done(item)
            return 0
        delay = min(self._cooldown, 0.25 * 2 ** min(item.attempts, 10))
        if item.target in failing:
            await self._outbox.failed(item, "vault_skipped", _now_us() + int(delay * 1e6))
            return 0
        try:
            await sync_name(self.primary, vault, item.name)
        except StrongroomError as exc:
            failing.add(item.target)
            await self._outbox.failed(item, exc.code, _now_us() + int(delay * 1e6))
            return 0
        await self._outbox.done(item)
        return 1

    # -- operators --------------------------------------------------------------------------

    async def health(self) -> list[VaultHealth]:
        backlog = {b.target: b for b in await self._outbox.backlog()}
        now, now_us = time.monotonic(), _now_us()
        found = []
        for vault in self.vaults:
            pending = backlog.get(vault.vault_url)
            found.append(VaultHealth(
                url=vault.vault_url,
                role="primary" if vault is self.primary else "secondary",
                available=self._breakers[vault.vault_url].allows(now),
                backlog=pending.names if pending else 0,
                oldest_seconds=(now_us - pending.oldest_us) / 1e6 if pending else 0.0,
            ))  # fmt: skip
        return found

    async def reconcile(self, *, repair: bool = True) -> list[Drift]:
        """Compare every name of every vault with the primary; repair unless only checking."""
        drift = []
        ours = await _names(self.primary)
        for vault in self.secondaries:
            for name in sorted(ours | await _names(vault), key=str.lower):
                problems = await sync_name(self.primary, vault, name, repair=repair)
                if problems:
                    drift.append(Drift(vault.vault_url, name, tuple(problems)))
        return drift


async def _names(vault: AzureKeyVaultStore) -> set[str]:
    """Every name the vault holds, live or deleted."""
    live = await vault._collect(vault.client.list_properties_of_secrets, None)
    deleted = await vault._collect(vault.client.list_deleted_secrets, None)
    return {str(item.name) for item in live} | {str(item.name) for item in deleted}
