"""The edge's synchroniser: an initial reconciliation, then the upstream's change feed.

On every (re)connection the feed is opened first (it starts at the present), then the replica
is reconciled with the upstream in two passes: deletions and revocations first (names that are
gone or that the site may no longer read are purged, revoked ones revoked), values second. Only
then is the edge online; the feed's events queued meanwhile are applied after. Each event makes
the edge re-read its secret's versions: a deletion or revocation is applied before anything is
fetched. A version whose value the upstream will not give (disabled, expired, not yet valid) is
kept as a disabled placeholder, so the edge refuses exactly what the upstream refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from strongroom.backends.base import SecretStore, WriteMode, name_key
from strongroom.client.transport import RemoteClient, segment
from strongroom.core.clock import Clock, system_clock
from strongroom.core.errors import (
    AccessError,
    AuthenticationError,
    ConfigurationError,
    CryptoError,
    PermissionDeniedError,
    SecretNotFoundError,
    SecretNotReadableError,
    SecretRevokedError,
    StrongroomError,
)
from strongroom.core.logging import get_logger
from strongroom.core.models import NewVersion, VersionProperties
from strongroom.core.offline import OfflineBound
from strongroom.services.edge.state import EdgeState, EdgeSyncState
from strongroom.services.edge.upstream import in_scope
from strongroom.services.remote.cache import parse_sse
from strongroom.services.remote.convert import bundle_from, properties_from

__all__ = ["EdgeSync"]

log = get_logger("strongroom.edge")

#: Reconnection backoff: a healed link is found within about a second (an attempt on a cut
#: link fails at once or within the connect timeout, so this costs the centre little).
_RECONNECT_MIN, _RECONNECT_MAX = 0.1, 1.0
#: Seconds one attempt to reach the feed may take: on a cut link its packets are dropped, and
#: a healed link is found by the next attempt rather than by the kernel's slow retries.
CONNECT_TIMEOUT = 3.0
#: While connected, the site's credential is checked this often (the feed itself goes on after
#: a token is revoked at the centre): a revoked credential stops the edge's reads at once.
CREDENTIAL_CHECK = 60.0
#: The upstream's feed sends a keep-alive every 15 s: three missed ones mean the link is gone.
IDLE_TIMEOUT = 45.0
_RECORD_EVERY = 5.0


def _signature(p: VersionProperties) -> tuple[Any, ...]:
    tags = tuple(sorted(p.tags.items()))
    return (p.version, p.enabled, p.expires_at, p.not_before, p.content_type, tags)


class EdgeSync:
    """Keeps ``store`` (the replica's inner store) equal to what the upstream lets the site's
    credential read within ``scopes``."""

    def __init__(
        self,
        client: RemoteClient,
        store: SecretStore,
        scopes: Sequence[str],
        bound: OfflineBound,
        state: EdgeState,
        *,
        clock: Clock = system_clock,
        idle_timeout: float = IDLE_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
        credential_check: float = CREDENTIAL_CHECK,
    ) -> None:
        if not scopes:
            raise ConfigurationError("an edge needs at least one --scope")
        self.client = client
        self.store = store
        self.scopes = tuple(scopes)
        self.bound = bound
        self.state = state
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.credential_check = credential_check
        self._checked = time.monotonic()
        self._monotonic = monotonic
        self.status = EdgeSyncState()
        self.online = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._recorded = -1e18
        self._lock = asyncio.Lock()  # one change to a name at a time
        #: Names whose local rows failed their integrity check: rebuilt, never compared.
        self._corrupt: set[str] = set()
        self._rebuilds: set[asyncio.Task[None]] = set()
        self._rebuilding: set[str] = set()
        #: The replica's read gate, closed while a reconnection's deletions and revocations
        #: are applied (None: no gate).
        self.reads_open: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in list(self._rebuilds):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._offline()

    async def initial(self, names: list[str]) -> None:
        """The first reconciliation, with the names :func:`probe_upstream` found."""
        await self.reconcile(names)
        self.bound.mark_online()
        self.state.record_sync()
        self.bound.mark_offline()  # online again only with the feed connected

    # -- the feed -------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = _RECONNECT_MIN
        while True:
            try:
                await self._follow()
                delay = _RECONNECT_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the link, the upstream or a refusal: retry, offline
                self._lost(exc)
            self._offline()
            await self.client.reset_connections()
            await asyncio.sleep(delay)
            delay = min(_RECONNECT_MAX, delay * 2)

    def _lost(self, exc: Exception) -> None:
        """Why the feed was lost, for the status (by kind: never the upstream's address). A
        refused credential stops every read at once: the centre revoked this site."""
        if isinstance(exc, AuthenticationError):
            self.status.upstream_error = "site_credential_refused"
            if self.bound.refused is None:
                log.critical("the upstream refuses this site's credential: serving nothing")
            self.bound.refuse(
                "the upstream refuses this site's credential (revoked, expired or replaced): "
                "this edge serves nothing until it reconnects with one that works"
            )
            return
        if isinstance(exc, ConfigurationError):  # the upstream's certificate does not verify
            self.status.upstream_error = "upstream_certificate_refused"
            log.critical("the upstream's certificate does not verify: not connecting")
            return
        self.status.upstream_error = "upstream_unreachable"
        code = exc.code if isinstance(exc, StrongroomError) else type(exc).__name__
        log.info("upstream feed lost", error=code)

    def _offline(self) -> None:
        if self.online.is_set():
            log.warning("edge offline: serving its replica within the bound")
        self.online.clear()
        self.bound.mark_offline()

    async def _follow(self) -> None:
        async with self.client.stream(
            "/v1/events/feed", connect_timeout=CONNECT_TIMEOUT
        ) as response:
            if response.status_code != 200:
                await response.aread()
                self.client.raise_for(response, "/v1/events/feed")
            lines = self._heard(response.aiter_lines())
            if self.reads_open is not None:
                self.reads_open.clear()
            try:
                await self.reconcile()
            finally:
                if self.reads_open is not None:
                    self.reads_open.set()
            self.bound.mark_online()
            self.status.upstream_error = None
            self.online.set()
            self._record()
            log.info("edge online", upstream=self.client.addr)
            async for event_id, _kind, data in parse_sse(lines):
                await self._apply_event(event_id, data)

    async def _heard(self, lines: AsyncIterator[str]) -> AsyncIterator[str]:
        """Lines of the stream; each one (keep-alives too) shows the upstream is there. Too
        long a silence ends the stream: a cut link may never close the connection."""
        iterator = aiter(lines)
        while True:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation
                # that arrives as the line does (stop() then waited for ever).
                async with asyncio.timeout(self.idle_timeout):
                    line = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ConnectionError("the upstream's change feed went silent") from None
            if self.online.is_set():
                self.bound.heard()
                self._record()
                await self._check_credential()
            yield line

    async def _check_credential(self) -> None:
        """Ask the upstream who this credential is, now and then: a refusal (401) ends the
        feed and stops the reads; any other failure is left to the feed to notice."""
        now = time.monotonic()
        if now - self._checked < self.credential_check:
            return
        self._checked = now
        try:
            await self.client.request("GET", "/v1/auth/self")
        except AuthenticationError:
            raise
        except StrongroomError as exc:
            log.info("credential check failed", error=exc.code)

    def _record(self) -> None:
        now = self._monotonic()
        if now - self._recorded >= _RECORD_EVERY:
            self._recorded = now
            self.state.record_sync()

    async def _apply_event(self, event_id: str | None, data: str) -> None:
        doc = json.loads(data)
        name, kind = doc.get("name"), str(doc.get("kind", ""))
        if isinstance(name, str) and in_scope(name, self.scopes):
            if kind in ("secret.deleted", "secret.purged"):
                await self._drop(name)  # at once, before asking the upstream anything
            elif kind == "secret.revoked":
                await self._revoke(name)
            await self.resync(name)
            self.status.events_applied += 1
            at = doc.get("at")
            if isinstance(at, str):
                with contextlib.suppress(ValueError):
                    changed = datetime.fromisoformat(at)
                    self.status.lag_seconds = max(0.0, (self.clock() - changed).total_seconds())
        if event_id is not None:
            self.status.last_event_id = event_id

    def rebuild_later(self, name: str) -> None:
        """A damaged local copy of ``name``: rebuild it from the upstream now (and at every
        reconciliation until that succeeds)."""
        key = name_key(name)
        self._corrupt.add(key)
        if key in self._rebuilding:
            return
        self._rebuilding.add(key)
        log.warning("replica row failed its integrity check; rebuilding", secret=name)
        task = asyncio.get_running_loop().create_task(self._rebuild(name))
        self._rebuilds.add(task)
        task.add_done_callback(self._rebuilds.discard)

    async def _rebuild(self, name: str) -> None:
        try:
            await self.resync(name)
        except StrongroomError as exc:  # upstream away: the next reconciliation retries
            log.info("rebuild postponed", secret=name, error=exc.code)
        finally:
            self._rebuilding.discard(name_key(name))

    # -- reconciliation -------------------------------------------------------------------

    async def _central_names(self) -> list[str]:
        listed = await self.client.request("GET", "/v1/secrets")
        return [d["name"] for d in listed if in_scope(str(d.get("name", "")), self.scopes)]

    async def _central_versions(self, name: str) -> list[VersionProperties] | None:
        """The upstream's versions of ``name``, oldest first; None: gone or not ours."""
        try:
            docs = await self.client.request("GET", f"/v1/secrets/{segment(name)}/versions")
        except (SecretNotFoundError, AccessError):
            return None
        return sorted((properties_from(d) for d in docs), key=lambda p: p.created_at)

    async def reconcile(self, names: list[str] | None = None) -> None:
        """Make the whole replica match the upstream: deletions and revocations first."""
        if names is None:
            names = await self._central_names()
        wanted = {name_key(n) for n in names}
        for held in await self.store.list_secrets():
            if name_key(held.name) not in wanted:
                await self._drop(held.name)
        found: dict[str, list[VersionProperties] | None] = {}
        for name in names:
            versions = found[name] = await self._central_versions(name)
            if versions is None:
                await self._drop(name)
            elif any(v.revoked_at is not None for v in versions):
                await self._revoke(name)
        if self.reads_open is not None:
            self.reads_open.set()  # deletions and revocations applied: reads may go on
        for name, versions in found.items():
            if versions is not None:
                await self._converge(name, versions)
        self.status.reconciliations += 1

    async def resync(self, name: str) -> None:
        """Make one name match the upstream."""
        versions = await self._central_versions(name)
        if versions is None:
            await self._drop(name)
            return
        await self._converge(name, versions)

    async def _local_versions(self, name: str) -> list[VersionProperties]:
        try:
            return sorted(await self.store.list_versions(name), key=lambda p: p.created_at)
        except SecretNotFoundError:
            return []

    async def _converge(self, name: str, central: list[VersionProperties]) -> None:
        async with self._lock:
            if any(v.revoked_at is not None for v in central):
                await self._revoke_locked(name)
                return
            key = name_key(name)
            try:
                local = [] if key in self._corrupt else await self._local_versions(name)
            except CryptoError:
                self._corrupt.add(key)
            if key in self._corrupt:
                await self._purge(name)
                await self._write(name, central, first=True)
                self._corrupt.discard(key)
                return
            if any(v.revoked_at is not None for v in local):
                # A revocation is for ever; the upstream's listing may not show it yet (its
                # audit event is written before the change it records).
                return
            mine = [_signature(v) for v in local]
            theirs = [_signature(v) for v in central]
            if mine == theirs:
                return
            if mine and theirs[: len(mine)] == mine:
                await self._write(name, central[len(mine) :], first=False)
                return
            if local:
                await self._purge(name)
            await self._write(name, central, first=True)

    async def _write(self, name: str, versions: list[VersionProperties], *, first: bool) -> None:
        """Write versions in order. A value the upstream refuses for its state is a disabled
        placeholder; any other failure (the link, a throttle, a version gone) raises, and the
        next reconciliation finishes the job."""
        revoked = False
        for index, props in enumerate(versions):
            value, enabled = b"", False
            try:
                path = f"/v1/secrets/{segment(name)}/versions/{segment(props.version)}"
                bundle = bundle_from(await self.client.request("GET", path))
                value, enabled = bundle.value.reveal_bytes(), props.enabled
            except SecretRevokedError:
                revoked = True  # revoked since the listing: revoked here too, below
            except (SecretNotReadableError, PermissionDeniedError):
                pass  # kept as a disabled placeholder: refused here as it is upstream
            new = NewVersion(
                name=props.name, version=props.version, secret_type=props.secret_type,
                content_type=props.content_type, tags=dict(props.tags),
                created_at=props.created_at, expires_at=props.expires_at,
                not_before=props.not_before, enabled=enabled,
            )  # fmt: skip
            mode = WriteMode.CREATE if first and index == 0 else WriteMode.UPDATE
            await self.store.write_version(new, value, mode)
        if revoked:
            await self._revoke_locked(name)

    async def _drop(self, name: str) -> None:
        async with self._lock:
            await self._purge(name)

    async def _purge(self, name: str) -> None:
        with contextlib.suppress(SecretNotFoundError):
            await self.store.purge(name, deleted_only=False)

    async def _revoke(self, name: str) -> None:
        async with self._lock:
            await self._revoke_locked(name)

    async def _revoke_locked(self, name: str) -> None:
        with contextlib.suppress(SecretNotFoundError):
            local = await self.store.list_versions(name)
            if local and all(v.revoked_at is not None for v in local):
                return
            await self.store.revoke_all(name, self.clock())
