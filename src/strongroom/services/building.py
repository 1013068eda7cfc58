"""What a configuration is made of: its master key, its secret store (with the cache in front
of it), the state stores beside it and the access invalidation between processes. The
:class:`~strongroom.services.wiring.Strongroom` object opens and wires them.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from strongroom.backends.base import SecretStore
from strongroom.core.config import Backend, Settings
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import ConfigurationError, SealedError
from strongroom.core.integrity import RowMac
from strongroom.core.keyfile import create_key_file, read_key_file
from strongroom.core.logging import get_logger
from strongroom.core.metrics import Metrics
from strongroom.db.audit_sqlite import SqliteAuditStore
from strongroom.db.sqlite_db import SqliteDatabase
from strongroom.services.access.invalidation import AccessInvalidation
from strongroom.services.custody.root import resolve_root
from strongroom.services.state_stores import StateStores

if TYPE_CHECKING:
    from strongroom.services.audit.threats import ThreatRules

__all__ = [
    "build_access_invalidation",
    "build_cache",
    "build_state_stores",
    "build_store",
    "chain_key_source",
    "custody_master_key",
    "load_master_key",
    "resolve_master_key",
    "root_key",
    "threat_rules_from",
]

log = get_logger("strongroom.app")


def load_master_key(settings: Settings) -> MasterKey:
    """The master key: ``STRONGROOM_MASTER_KEY``, else the key file; the embedded profile makes
    its key file (mode 0600) on first use, when there is no database file yet."""
    if settings.master_key is not None:
        return MasterKey.from_base64(settings.master_key.get_secret_value())
    if settings.master_key_file is not None:
        return read_key_file(settings.master_key_file)
    path = settings.default_key_file
    if path.exists():
        return read_key_file(path)
    embedded = settings.backend is Backend.SQLITE or (
        settings.backend is Backend.AZURE and not settings.state_in_postgres
    )
    if embedded and not settings.sqlite_path.exists():
        key = create_key_file(path)
        log.info("master key file created", path=str(path))
        return key
    if embedded and path.exists():
        # Another process made the key, then the database, between the two checks above (the
        # key file always comes first): use its key.
        return read_key_file(path)
    if embedded:
        # A new key could never open the existing file: say what is missing instead of
        # leaving a stray key file behind and reporting a wrong key.
        raise ConfigurationError(
            f"{settings.sqlite_path} exists but its master key file {path} does not; restore "
            "it, or set STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE"
        )
    raise ConfigurationError(
        f"the {settings.backend.value} profile needs STRONGROOM_MASTER_KEY or "
        "STRONGROOM_MASTER_KEY_FILE (every replica must use the same key)"
    )


def resolve_master_key(settings: Settings) -> MasterKey:
    """The configured master key; the memory profile makes a throwaway one if none is set.
    Under a quorum's custody there is none to read: the service unseals itself instead."""
    if settings.seal == "shamir":
        raise SealedError(
            "the master key is held by a quorum of key holders (STRONGROOM_SEAL=shamir): "
            "start the service and unseal it with `strongroom operator unseal`"
        )
    if settings.backend is Backend.MEMORY and (
        settings.master_key is None and settings.master_key_file is None
    ):
        return MasterKey.generate()[0]
    return load_master_key(settings)


async def root_key(settings: Settings, master: MasterKey | None = None) -> MasterKey:
    """The root key the master key at hand opens (``master``, else custody's or the
    configured one)."""
    if master is None:
        master = await custody_master_key(settings)
    if master is None:
        master = resolve_master_key(settings)
    return await resolve_root(settings, master)


def chain_key_source(settings: Settings) -> Callable[[], Awaitable[MasterKey]] | None:
    """Where a process finds a newer audit chain key after another process replaced the
    master key: custody asked again (the key file read again, the HSM or the Key Vault key);
    none for a key in the environment (the same old value) or a quorum's (unseal again)."""
    if settings.seal in ("pkcs11", "azurekeyvault"):
        return lambda: root_key(settings)
    in_file = settings.backend is not Backend.MEMORY or settings.master_key_file is not None
    if settings.seal == "key" and settings.master_key is None and in_file:
        return lambda: root_key(settings)
    return None


async def custody_master_key(settings: Settings) -> MasterKey | None:
    """The master key an HSM or a Key Vault key unwraps, when one is configured. Their
    bindings are imported on use: only a deployment with that custody loads them."""
    if settings.seal == "pkcs11":
        from strongroom.services.custody.pkcs11 import hsm_master_key  # noqa: PLC0415

        return await hsm_master_key(settings)
    if settings.seal == "azurekeyvault":
        from strongroom.services.custody.azure_seal import keyvault_master_key  # noqa: PLC0415

        return await keyvault_master_key(settings)
    return None


def build_store(settings: Settings, master: MasterKey, integrity: RowMac) -> SecretStore:
    backend = settings.backend
    if backend is Backend.MEMORY:
        # Imported here: the other profiles (a command line's start-up) never load it.
        from strongroom.backends.memory import MemoryStore  # noqa: PLC0415

        return MemoryStore(master)
    if backend is Backend.SQLITE:
        from strongroom.backends.sqlite import SqliteStore  # noqa: PLC0415 (loaded on use)

        return SqliteStore(
            settings.sqlite_path,
            master,
            integrity=integrity,
            read_window_seconds=settings.read_window_seconds,
        )
    if backend is Backend.POSTGRES:
        # Imported on use: asyncpg costs start-up time to every process that never needs it.
        from strongroom.backends.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(
            settings.postgres_dsn(),
            master,
            schema=settings.pg_schema,
            min_size=settings.pg_pool_min,
            max_size=max(settings.pg_pool_min, settings.pg_pool_max),
            integrity=integrity,
            read_window_seconds=settings.read_window_seconds,
        )
    from strongroom.backends.azure import AzureKeyVaultStore  # noqa: PLC0415 (loaded on use)

    if settings.azure_secondaries:
        return build_regional_vaults(settings)
    return AzureKeyVaultStore.from_settings(settings)


def build_regional_vaults(settings: Settings) -> SecretStore:
    """The primary vault, its secondaries and the outbox that copies writes to them (kept with
    the rest of the state: PostgreSQL or the SQLite file)."""
    from strongroom.backends.azure import AzureKeyVaultStore  # noqa: PLC0415 (loaded on use)
    from strongroom.backends.azure_regions import RegionalVaults, SecondaryVault  # noqa: PLC0415
    from strongroom.db.replication_outbox import (  # noqa: PLC0415
        PostgresReplicationOutbox,
        ReplicationOutbox,
        SqliteReplicationOutbox,
    )

    outbox: ReplicationOutbox
    if settings.state_in_postgres:
        outbox = PostgresReplicationOutbox(settings.audit_dsn(), schema=settings.pg_schema)
    else:
        outbox = SqliteReplicationOutbox(SqliteDatabase(settings.sqlite_path))
    return RegionalVaults(
        AzureKeyVaultStore.from_settings(settings),
        [SecondaryVault.from_settings(settings, url) for url in settings.azure_secondaries],
        outbox,
        cooldown_seconds=settings.azure_failover_cooldown_seconds,
        interval_seconds=settings.azure_replication_seconds,
    )


def build_cache(settings: Settings, store: SecretStore, metrics: Metrics) -> SecretStore:
    """A remote store behind the read-through cache; its generation counters live with the
    rest of the state (PostgreSQL or the SQLite file), so every process sees every change."""
    from strongroom.backends.cache import CachedStore  # noqa: PLC0415
    from strongroom.db.cache_invalidation import (  # noqa: PLC0415
        CacheGenerations,
        PostgresCacheGenerations,
        SqliteCacheGenerations,
    )

    generations: CacheGenerations
    if settings.state_in_postgres:
        generations = PostgresCacheGenerations(settings.audit_dsn(), schema=settings.pg_schema)
    else:
        generations = SqliteCacheGenerations(SqliteDatabase(settings.sqlite_path))
    return CachedStore(
        store,
        ttl_seconds=settings.cache_ttl_seconds,
        max_entries=settings.cache_max_entries,
        stale_seconds=settings.cache_stale_seconds,
        generations=generations,
        metrics=metrics,
    )


#: Each state store beside the audit store: its module under strongroom.db, its class name
#: after the Sqlite/Postgres prefix, and whether it takes the row MAC.
_STATE_PARTS = {
    "rotation": ("rotation_store", "RotationStore", False),
    "revocation": ("revocation_store", "RevocationStore", False),
    "subscriptions": ("subscription_store", "SubscriptionStore", False),
    "access": ("access_store", "AccessStore", True),
    "sessions": ("session_store", "SessionStore", True),
}


def _builder(module: str, name: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """Build ``strongroom.db.<module>.<name>(*args, **kwargs)``, importing it only then."""

    def build() -> Any:
        return getattr(importlib.import_module(f"strongroom.db.{module}"), name)(*args, **kwargs)

    return build


def build_state_stores(settings: Settings, integrity: RowMac) -> StateStores:
    """State lives beside the secrets: the same SQLite file or PostgreSQL database (or the one
    named by STRONGROOM_AUDIT_DATABASE_URL); the memory profile keeps it in an in-process
    SQLite database. A store's module loads when the store is built
    (:mod:`strongroom.services.state_stores` says when)."""
    if settings.state_in_postgres:
        from strongroom.db.audit_postgres import PostgresAuditStore  # noqa: PLC0415

        dsn, schema = settings.audit_dsn(), settings.pg_schema
        return StateStores(
            PostgresAuditStore(dsn, schema=schema),
            {
                part: _builder(
                    module,
                    f"Postgres{name}",
                    dsn,
                    schema=schema,
                    **({"mac": integrity} if with_mac else {}),
                )
                for part, (module, name, with_mac) in _STATE_PARTS.items()
            },
        )
    db = SqliteDatabase(None if settings.backend is Backend.MEMORY else settings.sqlite_path)
    return StateStores(
        SqliteAuditStore(db, sync=settings.audit_fsync),
        {
            part: _builder(module, f"Sqlite{name}", db, *((integrity,) if with_mac else ()))
            for part, (module, name, with_mac) in _STATE_PARTS.items()
        },
        shared=db,
        mac=integrity,
    )


def build_access_invalidation(settings: Settings) -> AccessInvalidation:
    """Access changes reach every process through the state database's generation counters
    (and PostgreSQL's LISTEN/NOTIFY); the memory profile is one process and needs neither."""
    from strongroom.db.cache_invalidation import (  # noqa: PLC0415
        PostgresCacheGenerations,
        SqliteCacheGenerations,
    )

    if settings.state_in_postgres:
        return AccessInvalidation(
            PostgresCacheGenerations(settings.audit_dsn(), schema=settings.pg_schema, pool_max=1)
        )
    if settings.backend is Backend.MEMORY:
        return AccessInvalidation()
    return AccessInvalidation(SqliteCacheGenerations(SqliteDatabase(settings.sqlite_path)))


def threat_rules_from(settings: Settings) -> ThreatRules:
    """Threat rules from settings: business hours as "7-19" (off when unset: 24/7 dispatch)."""
    from strongroom.services.audit.threats import ThreatRules  # noqa: PLC0415 (see wiring)

    hours = None
    if settings.business_hours:
        try:
            start, end = (int(part) for part in settings.business_hours.split("-", 1))
        except ValueError:
            raise ConfigurationError("STRONGROOM_BUSINESS_HOURS must look like 7-19") from None
        hours = (start, end)
    return ThreatRules(business_hours=hours, business_timezone=settings.business_timezone)
