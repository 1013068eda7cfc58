"""Wiring: one object that turns a configuration into open stores.

``Strongroom.open(settings)`` builds everything; the seed's facades (``SecretsManager()``, ...)
built with no arguments share the process default, so what one records another sees.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Self

from strongroom.backends.base import SecretStore
from strongroom.core.audit import ChainKey
from strongroom.core.clock import Clock, system_clock
from strongroom.core.config import Backend, Settings
from strongroom.core.crypto import MasterKey
from strongroom.core.keys import Purpose
from strongroom.core.logging import configure_logging, get_logger, is_configured
from strongroom.core.metrics import Metrics
from strongroom.services.access.invalidation import AccessInvalidation
from strongroom.services.audit.log import AuditLog
from strongroom.services.building import (
    build_access_invalidation,
    build_cache,
    build_state_stores,
    build_store,
    chain_key_source,
    custody_master_key,
    load_master_key,
    resolve_master_key,
    root_key,
    threat_rules_from,
)
from strongroom.services.events.bus import EventBus
from strongroom.services.integrity import IntegrityAlarm
from strongroom.services.notify import Dispatcher, UrlPolicy, build_dispatcher
from strongroom.services.state_stores import StateStores

if TYPE_CHECKING:
    from strongroom.core.authconfig import AuthConfig
    from strongroom.db.revocation_store import RevocationStore
    from strongroom.db.rotation_store import RotationStore
    from strongroom.db.session_store import SessionStore
    from strongroom.services.access.cert_auth import CertAuth
    from strongroom.services.access.control import AccessControl
    from strongroom.services.access.jwt_login import JwtLogin
    from strongroom.services.audit.alerts import ThreatAlerts
    from strongroom.services.audit.checkpoints import Checkpointer
    from strongroom.services.audit.threats import ThreatRules
    from strongroom.services.revocation.reviews import BreakGlassReviews

__all__ = [
    "Strongroom",
    "build_store",
    "custody_master_key",
    "default_app",
    "load_master_key",
    "reset_default_app",
    "resolve_master_key",
    "root_key",
]

log = get_logger("strongroom.app")


class Strongroom:
    """A configuration wired to its open stores, its audit log, notifier and event bus."""

    def __init__(
        self,
        settings: Settings,
        store: SecretStore,
        audit: AuditLog,
        state: StateStores,
        *,
        clock: Clock = system_clock,
        metrics: Metrics,
        threat_rules: ThreatRules | None = None,
        notifier: Dispatcher,
        events: EventBus,
        access_key: bytes,
        backup_key: bytes,
        checkpoints: Checkpointer | None = None,
        alarm: IntegrityAlarm | None = None,
        report_signing_seed: bytes | None = None,
        auth_config: AuthConfig | None = None,
        access_invalidation: AccessInvalidation | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.audit = audit
        self._state = state
        self.notifier = notifier
        self.events = events
        # Code that rotation configurations name: attached per process, by secret name.
        self.callbacks: dict[str, Any] = {}
        self.verifiers: dict[str, Any] = {}
        #: Rotators by name, each with the secret names it may serve (BoundRotator).
        self.rotators: dict[str, Any] = {}
        self.clock = clock
        self.metrics = metrics
        self._threat_rules = threat_rules
        self.closed = False
        self.backup_key = backup_key
        #: Signed audit checkpoints outside the audit database (None: switched off).
        self.checkpoints = checkpoints
        #: Alerts and audits rows that fail their MACs.
        self.alarm = alarm
        #: Seed of the Ed25519 key that signs compliance reports (derived from the master key).
        self.report_signing_seed = report_signing_seed
        self._access: AccessControl | None = None
        self._access_key = access_key
        self._access_invalidation = access_invalidation or AccessInvalidation()
        #: JWT/OIDC and certificate rules (None: none configured, loaded as empty on use).
        self._auth: AuthConfig | None = auth_config
        self._logins: JwtLogin | None = None
        if auth_config is not None and auth_config.jwt:  # built now: a bad key fails at start
            self._logins = self._build_logins()
        self._certs: CertAuth | None = None
        if auth_config is not None and auth_config.cert:  # built now: a bad CA fails at start
            self._certs = self._build_certs()
        self._threat_alerts: ThreatAlerts | None = None
        self._reviews: BreakGlassReviews | None = None
        if settings.break_glass_escalate_to:  # built now, so a bad address fails at start
            self._reviews = self.break_glass_reviews

    @property
    def access(self) -> AccessControl:
        """Tokens, policies and their checks; built on first use (a command that reads one
        secret as the local operator never loads it)."""
        if self._access is None:
            from strongroom.services.access.control import AccessControl  # noqa: PLC0415

            self._access = AccessControl(
                self,
                self._state.access,
                self._access_key,
                self.settings.auth_cache_seconds,
                self._access_invalidation,
            )
        return self._access

    @property
    def rotation_store(self) -> RotationStore:
        return self._state.rotation

    @property
    def revocation_store(self) -> RevocationStore:
        return self._state.revocation

    @property
    def sessions(self) -> SessionStore:
        """Console sessions (the server's /ui signs people in and keeps their sessions here)."""
        return self._state.sessions

    @property
    def threat_rules(self) -> ThreatRules:
        """The threat detection rules (from settings unless given when opened)."""
        if self._threat_rules is None:
            self._threat_rules = threat_rules_from(self.settings)
        return self._threat_rules

    @property
    def threat_alerts(self) -> ThreatAlerts:
        """The threat detection schedule and what it already alerted on."""
        if self._threat_alerts is None:
            # Imported on use: only a server (or `audit threats`) runs the threat schedule.
            from strongroom.services.audit.alerts import ThreatAlerts  # noqa: PLC0415

            self._threat_alerts = ThreatAlerts(self)
        return self._threat_alerts

    @property
    def _auth_config(self) -> AuthConfig:
        if self._auth is None:
            # Imported on use: without STRONGROOM_AUTH_CONFIG, only logins and mTLS need it.
            from strongroom.core.authconfig import AuthConfig  # noqa: PLC0415

            self._auth = AuthConfig.empty()
        return self._auth

    @property
    def logins(self) -> JwtLogin:
        """JWT/OIDC logins (STRONGROOM_AUTH_CONFIG); none configured: every login is refused."""
        if self._logins is None:
            self._logins = self._build_logins()
        return self._logins

    @property
    def break_glass_reviews(self) -> BreakGlassReviews:
        """Break-glass revocations a second identity must answer for, and their schedule."""
        if self._reviews is None:
            # Imported on use: a command that only reads a secret never loads revocation.
            from strongroom.services.revocation.reviews import BreakGlassReviews  # noqa: PLC0415

            self._reviews = BreakGlassReviews(self)
        return self._reviews

    async def stop_break_glass_reviews(self) -> None:
        """Stop the overdue-review schedule, if this wiring ever built it."""
        if self._reviews is not None:
            await self._reviews.stop()

    @property
    def certs(self) -> CertAuth:
        """Client-certificate rules (mTLS; the [cert.*] tables of STRONGROOM_AUTH_CONFIG)."""
        if self._certs is None:
            self._certs = self._build_certs()
        return self._certs

    def _build_certs(self) -> CertAuth:
        from strongroom.services.access.cert_auth import CertAuth  # noqa: PLC0415 (as logins)

        return CertAuth(
            self.access, self.audit, self._auth_config, clock=self.clock, logins=lambda: self.logins
        )

    def _build_logins(self) -> JwtLogin:
        # Imported here: the JWT and HTTP libraries would double a command's start-up, and
        # only a server with logins configured needs them before its first login.
        from strongroom.services.access.jwt_login import JwtLogin  # noqa: PLC0415

        limit = (self.settings.login_failures_per_second, self.settings.login_failure_burst)
        return JwtLogin(self.access, self.audit, self._auth_config, failure_limit=limit)

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        store: SecretStore | None = None,
        clock: Clock = system_clock,
        audit: bool = True,
        threat_rules: ThreatRules | None = None,
        master: MasterKey | None = None,
        root: MasterKey | None = None,
    ) -> Self:
        """Open the configured stores. ``audit=False`` (code only, never configuration) runs
        without an audit log, for benchmarks that measure what auditing costs. ``master`` is
        a key custody produced (an unseal), instead of the configured one; ``root`` is the
        root key already resolved from it (services.custody.root)."""
        settings = settings or Settings()
        if not is_configured():
            configure_logging(settings.log_level or "WARNING", debug=settings.debug)
        # Every key below is derived from the root key (core.keys), never the master key.
        reload = chain_key_source(settings) if master is None and root is None else None
        master = root or await root_key(settings, master)
        auth_config = None
        if settings.auth_config is not None:  # a bad file fails before any I/O
            from strongroom.core.authconfig import load_auth_config  # noqa: PLC0415 (as above)

            auth_config = load_auth_config(settings.auth_config)
        metrics = Metrics()
        alarm = IntegrityAlarm(metrics, clock)
        integrity = alarm.row_mac(master.derive(Purpose.METADATA_MAC))
        if store is None:
            store = build_store(settings, master, integrity)
            if settings.backend is Backend.AZURE and settings.cache_ttl_seconds > 0:
                store = build_cache(settings, store, metrics)
        notifier = build_dispatcher(settings, metrics)
        state = build_state_stores(settings, integrity)
        access_invalidation = build_access_invalidation(settings)
        audit_log = AuditLog(
            state.audit if audit else None,
            ChainKey.of(master),
            clock=clock,
            metrics=metrics,
            timeout=settings.audit_timeout_seconds,
            fail_open=settings.audit_fail_open,
            reload=reload,
        )
        events = EventBus(
            lambda: state.subscriptions,
            master.derive(Purpose.EVENT_SIGNING),
            policy=UrlPolicy(
                allow_private=settings.webhook_allow_private,
                allow_loopback=settings.webhook_allow_loopback,
            ),
            clock=clock,
            timeout=settings.notify_timeout_seconds,
            audit=audit_log,
            hold_seconds=settings.read_window_seconds,
        )
        checkpoints = None
        if audit and state.audit is not None and settings.checkpoint_dir is not None:
            # Imported here: only a configuration with a checkpoint directory signs them.
            from strongroom.core.checkpoint import CheckpointSigner  # noqa: PLC0415
            from strongroom.services.audit.checkpoints import (  # noqa: PLC0415
                Checkpointer,
                DirectorySink,
            )

            checkpoints = Checkpointer(
                state.audit,
                DirectorySink(settings.checkpoint_dir),
                CheckpointSigner(master.derive(Purpose.AUDIT_CHECKPOINT)),
                clock=clock,
                metrics=metrics,
                interval=settings.audit_checkpoint_seconds,
                notifier=notifier,
            )
        alarm.attach(notifier, audit_log)
        opened: list[Any] = []
        try:
            for part in (store, audit_log, state, access_invalidation):
                await part.open()
                opened.append(part)
        except BaseException:
            for part in reversed(opened):
                await part.close()
            raise
        try:
            app = cls(
                settings,
                store,
                audit_log,
                state,
                clock=clock,
                metrics=metrics,
                # Built now only when configured, so a bad setting fails at start.
                threat_rules=threat_rules
                or (
                    threat_rules_from(settings)
                    if settings.business_hours or settings.business_timezone != "UTC"
                    else None
                ),
                notifier=notifier,
                events=events,
                access_key=master.derive(Purpose.TOKEN_DIGEST),
                backup_key=master.derive(Purpose.SECRET_BACKUP),
                checkpoints=checkpoints,
                alarm=alarm,
                report_signing_seed=master.derive(Purpose.REPORT_SIGNING),
                auth_config=auth_config,
                access_invalidation=access_invalidation,
            )
        except BaseException:  # e.g. a certificate rule's CA file cannot be read
            for part in reversed(opened):
                await part.close()
            raise
        if checkpoints is not None:
            checkpoints.start()
        await store.purge_expired(clock())
        log.debug("opened", backend=store.backend)
        return app

    @property
    def profile(self) -> str:
        return self.store.backend

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._threat_alerts is not None:
                await self._threat_alerts.stop()
            await self.stop_break_glass_reviews()
            if self.alarm is not None:
                await self.alarm.drain()
            await self.events.drain()
            await self.notifier.drain()
            await self._access_invalidation.close()
            await self._state.close()
            if self.checkpoints is not None:
                await self.checkpoints.stop()
            await self.audit.close()
        finally:
            await self.store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_default: tuple[asyncio.AbstractEventLoop, Strongroom] | None = None
_default_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None


async def default_app() -> Strongroom:
    """The process default, opened from the environment on first use in this event loop."""
    global _default, _default_lock  # noqa: PLW0603
    loop = asyncio.get_running_loop()
    if _default is not None and _default[0] is loop and not _default[1].closed:
        return _default[1]
    if _default_lock is None or _default_lock[0] is not loop:
        _default_lock = (loop, asyncio.Lock())
    async with _default_lock[1]:
        if _default is not None and _default[0] is loop and not _default[1].closed:
            return _default[1]
        settings = Settings()
        _default = (loop, await Strongroom.open(settings))
        return _default[1]


async def reset_default_app() -> None:
    """Close the process default (the next use opens it again from the environment)."""
    global _default
    if _default is not None:
        app, _default = _default[1], None
        await app.close()
