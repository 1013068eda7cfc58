"""An edge node: the replica (under the site key), its synchroniser and the API over it.

The replica is the embedded profile's SQLite store in the edge's own data directory, encrypted
under the site key: that directory's key file (made on first start) or
``STRONGROOM_MASTER_KEY_FILE``, or a key wrapped by an HSM or a Key Vault key
(``STRONGROOM_SEAL=pkcs11`` or ``azurekeyvault`` after ``strongroom operator init``); never the
central master key (``STRONGROOM_MASTER_KEY`` and the cluster and Azure profile settings are
ignored here). Tokens, policies and the audit trail at the edge
are the edge's own, in the same file: every read at the edge is audited there first, hash-chained
and fail-closed, as at the centre.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import strongroom
from strongroom.backends.replica import ReplicaStore
from strongroom.backends.sqlite import SqliteStore
from strongroom.client.transport import RemoteClient, RemoteConfig, check_addr
from strongroom.core.config import Backend, Settings
from strongroom.core.errors import (
    ConfigurationError,
    EdgeCredentialRefusedError,
    EdgeOfflineTooLongError,
    TamperedError,
)
from strongroom.core.offline import OfflineBound, OfflineLimits
from strongroom.edge.readonly import ReadOnly
from strongroom.server.app import create_app
from strongroom.server.fastpath import StrongroomAPI
from strongroom.services.audit.secrets_audit import SecretsAudit
from strongroom.services.edge import EdgeState, EdgeSync
from strongroom.services.edge.journal import JournalShipper
from strongroom.services.edge.sync import CREDENTIAL_CHECK
from strongroom.services.edge.upstream import probe_upstream
from strongroom.services.wiring import Strongroom, root_key

__all__ = ["EdgeNode", "edge_settings"]


def edge_settings(settings: Settings) -> Settings:
    """The same settings, with the replica always in the edge's own embedded store."""
    return settings.model_copy(
        update={
            "database_url": None,
            "audit_database_url": None,
            "azure_key_vault_url": None,
            "backend_name": Backend.SQLITE,
            "addr": None,
            "token": None,
            "master_key": None,
            # An HSM or a Key Vault key (the centre's keys API, say) may hold the site key;
            # a quorum cannot: an edge restarts unattended.
            "seal": settings.seal if settings.seal in ("pkcs11", "azurekeyvault") else "key",
        }
    )


class EdgeNode:
    """An open edge: call :meth:`start` to follow the upstream, :meth:`app` to serve."""

    def __init__(
        self,
        wiring: Strongroom,
        replica: ReplicaStore,
        sync: EdgeSync,
        client: RemoteClient,
        journal: JournalShipper,
    ) -> None:
        self.wiring = wiring
        self.replica = replica
        self.sync = sync
        self.client = client
        self.journal = journal
        self.bound = replica.bound

    def __repr__(self) -> str:
        return f"EdgeNode(upstream={self.client.addr!r}, scopes={self.sync.scopes!r})"

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        upstream: str,
        scopes: Sequence[str],
        token: str | None = None,
        cacert: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        idle_timeout: float | None = None,
        credential_check: float = CREDENTIAL_CHECK,
    ) -> EdgeNode:
        """Check the upstream first (a refused credential or certificate, or a scope that
        matches nothing, fails here and changes nothing), then open the replica and reconcile
        it. An unreachable upstream is not an error: the edge starts offline."""
        token = token or (
            settings.edge_token.get_secret_value() if settings.edge_token is not None else None
        )
        if not token:
            raise ConfigurationError(
                "the edge needs the site's credential for its upstream: set STRONGROOM_EDGE_TOKEN"
            )
        limits = OfflineLimits.parse(settings.edge_max_offline_by_type)  # before any I/O
        cacert = cacert or settings.edge_cacert
        if cacert is not None and not cacert.is_file():
            raise ConfigurationError(f"the upstream CA bundle {cacert} is not a file")
        client = RemoteClient(
            RemoteConfig(
                addr=check_addr(upstream),
                token=token,
                cacert=cacert,
                timeout=settings.remote_timeout_seconds,
                retries=settings.remote_retries,
            ),
            user_agent=f"strongroom-edge/{strongroom.__version__}",
        )
        try:
            names = await probe_upstream(client, scopes)
            local = edge_settings(settings)
            local.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            state = EdgeState(local.home / "edge-state.json")
            bound = OfflineBound(
                local.edge_max_offline_seconds,
                carried=state.carried_offline(),
                monotonic=monotonic,
            )
            root = await root_key(local)
            replica = ReplicaStore(SqliteStore(local.sqlite_path, root), bound, limits=limits)
            wiring = await Strongroom.open(local, store=replica, root=root)
        except BaseException:
            await client.close()
            raise
        try:
            journal = await _open_journal(wiring, client, local.home)
        except BaseException:
            await wiring.close()
            await client.close()
            raise
        sync = EdgeSync(
            client, replica.inner, scopes, bound, state,
            idle_timeout=idle_timeout or settings.edge_idle_timeout_seconds, monotonic=monotonic,
            credential_check=credential_check,
        )  # fmt: skip
        replica.on_corrupt = sync.rebuild_later
        sync.reads_open = replica.reads_open
        journal.online = sync.online
        node = cls(wiring, replica, sync, client, journal)
        if names is not None:
            try:
                await sync.initial(names)
            except BaseException:
                await node.close()
                raise
        return node

    def start(self) -> None:
        """Follow the upstream's change feed and ship the journal, in the background
        (reconnecting forever)."""
        self.sync.start()
        self.journal.start()

    def app(self) -> StrongroomAPI:
        """The HTTP API over the replica: the centre's read routes, writes refused."""
        api = create_app(self.wiring, run_scheduler=False)
        api.add_middleware(ReadOnly)
        api.state.edge = self
        api.state.readiness = self.readiness
        api.state.refresh_metrics = self.publish_metrics
        return api

    def readiness(self) -> tuple[str, str, dict[str, Any]]:
        """The edge's check for ``/readyz`` (ok while it may serve) and its figures, without
        the upstream's address or the scopes (the probe needs no token)."""
        try:
            self.bound.check()
            result = "ok"
        except (EdgeOfflineTooLongError, EdgeCredentialRefusedError) as exc:
            result = exc.code
        figures = self.status()
        del figures["upstream"], figures["scopes"]
        return "edge", result, figures

    def publish_metrics(self) -> None:
        """The status as gauges (``strongroom_edge_*`` at ``/metrics``)."""
        figures = self.status()
        metrics = self.wiring.metrics
        metrics.set("edge_online", 1.0 if figures["online"] else 0.0)
        for name in ("offline_seconds", "seconds_left", "lag_seconds", "events_applied",
                     "journal_unshipped", "journal_shipped_total"):  # fmt: skip
            metrics.set(f"edge_{name}", float(figures[name]))
        metrics.set("edge_journal_ok", 0.0 if figures["journal_error"] else 1.0)

    def status(self) -> dict[str, Any]:
        """Upstream state, time offline and left before the bound, what the feed applied."""
        offline = self.bound.offline_for()
        return {
            "upstream": self.client.addr,
            "scopes": list(self.sync.scopes),
            "online": self.sync.online.is_set(),
            # A replica that never synchronised: -1 (JSON has no infinity).
            "offline_seconds": round(offline, 3) if math.isfinite(offline) else -1.0,
            "seconds_left": round(self.bound.remaining(), 3),
            "max_offline_seconds": self.bound.max_offline,
            "lag_seconds": round(self.sync.status.lag_seconds, 3),
            "events_applied": self.sync.status.events_applied,
            "reconciliations": self.sync.status.reconciliations,
            "upstream_error": self.sync.status.upstream_error,
            **self.journal.status(),
        }

    async def close(self) -> None:
        try:
            await self.journal.stop()
            await self.sync.stop()
        finally:
            try:
                await self.client.close()
            finally:
                await self.wiring.close()


async def _open_journal(wiring: Strongroom, client: RemoteClient, home: Path) -> JournalShipper:
    """Verify the edge's journal from its first event (a journal that fails refuses the start:
    what it would ship could not be trusted), then the shipper over it."""
    store = wiring.audit.store
    if store is None:
        raise ConfigurationError("an edge keeps an audit journal: auditing cannot be off")
    report = await SecretsAudit(wiring).verify_integrity()
    if not report["valid"]:
        raise TamperedError(
            f"the edge's audit journal fails to verify at event {report['broken_at']} "
            f"({report['reason']}): the edge does not start; keep the file for investigation"
        )
    alarm = wiring.alarm

    def broken(reason: str) -> None:
        if alarm is not None:
            alarm("secrets_audit_log", f"the edge's audit journal ({reason})")

    journal = JournalShipper(
        client, store, wiring.audit.key, home / "edge-journal.json", asyncio.Event(),
        on_broken=broken,
    )  # fmt: skip
    await journal.refresh()
    return journal
