"""Wiring: one object that turns a configuration into open stores.

``Strongroom.open(settings)`` builds everything; the seed's facades (``SecretsManager()``, ...)
built with no arguments share the process default, so what one records another sees.
"""

from __future__ import annotations

import asyncio
from typing import Self

import structlog

from strongroom.backends.base import SecretStore
from strongroom.backends.memory import MemoryStore
from strongroom.core.clock import Clock, system_clock
from strongroom.core.config import Backend, Settings
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import ConfigurationError
from strongroom.core.keyfile import create_key_file, read_key_file
from strongroom.core.logging import configure_logging, get_logger

__all__ = ["Strongroom", "default_app", "load_master_key", "reset_default_app"]

log = get_logger("strongroom.app")


def load_master_key(settings: Settings) -> MasterKey:
    """The master key: ``STRONGROOM_MASTER_KEY``, else the key file; the embedded profile makes
    its key file (mode 0600) on first use."""
    if settings.master_key is not None:
        return MasterKey.from_base64(settings.master_key.get_secret_value())
    if settings.master_key_file is not None:
        return read_key_file(settings.master_key_file)
    path = settings.default_key_file
    if path.exists():
        return read_key_file(path)
    if settings.backend is Backend.SQLITE:
        key = create_key_file(path)
        log.info("master key file created", path=str(path))
        return key
    raise ConfigurationError(
        f"the {settings.backend.value} profile needs STRONGROOM_MASTER_KEY or "
        "STRONGROOM_MASTER_KEY_FILE (every replica must use the same key)"
    )


def build_store(settings: Settings) -> SecretStore:
    backend = settings.backend
    if backend is Backend.MEMORY:
        has_key = settings.master_key is not None or settings.master_key_file is not None
        return MemoryStore(load_master_key(settings) if has_key else None)
    if backend is Backend.SQLITE:
        from strongroom.backends.sqlite import SqliteStore  # noqa: PLC0415 (loaded on use)

        return SqliteStore(settings.sqlite_path, load_master_key(settings))
    if backend is Backend.POSTGRES:
        # Imported on use: asyncpg costs start-up time to every process that never needs it.
        from strongroom.backends.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(
            settings.postgres_dsn(),
            load_master_key(settings),
            schema=settings.pg_schema,
            min_size=settings.pg_pool_min,
            max_size=max(settings.pg_pool_min, settings.pg_pool_max),
        )
    raise ConfigurationError(
        "the azure backend is not available yet; unset AZURE_KEY_VAULT_URL or set "
        "STRONGROOM_BACKEND to sqlite, postgres or memory"
    )


class Strongroom:
    """A configuration wired to its open stores."""

    def __init__(self, settings: Settings, store: SecretStore, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.closed = False

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        store: SecretStore | None = None,
        clock: Clock = system_clock,
    ) -> Self:
        settings = settings or Settings()
        if not structlog.is_configured():
            configure_logging(settings.log_level, debug=settings.debug)
        store = store or build_store(settings)
        await store.open()
        app = cls(settings, store, clock)
        await store.purge_expired(clock())
        log.debug("opened", backend=store.backend)
        return app

    @property
    def profile(self) -> str:
        return self.store.backend

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
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
