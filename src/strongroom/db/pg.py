"""What strongroom's PostgreSQL stores share: schema checks, pools and error translation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from strongroom.core.errors import ConfigurationError, StoreUnavailableError, StrongroomError
from strongroom.db.migrate import SCHEMA_NAME, PostgresHooks, migrate_postgres

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "STATEMENT_TIMEOUT",
    "check_schema",
    "driver_errors",
    "keep_session",
    "open_pool",
    "pooled",
]

#: No statement, connection or wait for a pooled connection lasts longer: a server that stops
#: answering without closing anything makes calls fail (StoreUnavailableError), never hang.
STATEMENT_TIMEOUT = 30.0


def driver_errors() -> tuple[type[BaseException], ...]:
    """What asyncpg raises when the server or the network fails us, including the client's
    connection-state errors after a terminated backend (``InternalClientError``).

    asyncpg is imported here, on first use, not when this module loads: processes that never
    touch PostgreSQL (the embedded profile, the CLI's start-up) do not pay its import time.
    """
    import asyncpg  # noqa: PLC0415

    return (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


def check_schema(schema: str) -> str:
    if not SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError("the PostgreSQL schema name must match [a-z_][a-z0-9_]*")
    return schema


async def keep_session(_conn: Any) -> None:
    """Pool reset hook that skips asyncpg's default reset query (one round trip per release).

    asyncpg still rolls back any open transaction before calling it. strongroom sets no session
    state beyond the pool's start-up ``search_path``, and releases its advisory locks itself.
    """
    return


async def open_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int,
    max_size: int,
    what: str,
    hooks: PostgresHooks | None = None,
    migrate: bool = True,
) -> asyncpg.Pool:
    """Migrate ``schema`` (``hooks``: see strongroom.db.migrate; ``migrate=False`` for a
    reader that finds it made) and open a pool whose connections work inside it."""
    import asyncpg  # noqa: PLC0415 (see driver_errors)

    try:
        if migrate:
            bootstrap = await asyncpg.connect(dsn, timeout=STATEMENT_TIMEOUT)
            try:
                await migrate_postgres(bootstrap, schema, hooks)
            finally:
                await bootstrap.close()
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings={"search_path": schema},
            reset=keep_session,
            command_timeout=STATEMENT_TIMEOUT,
            timeout=STATEMENT_TIMEOUT,
        )
    except driver_errors() as exc:
        raise StoreUnavailableError(f"cannot open {what} ({type(exc).__name__})") from exc


@asynccontextmanager
async def pooled(
    pool: asyncpg.Pool | None, what: str, passthrough: tuple[type[BaseException], ...] = ()
) -> AsyncIterator[Any]:
    """A pooled connection; driver and server errors become StoreUnavailableError (strongroom
    errors and ``passthrough`` types pass unchanged)."""
    if pool is None:
        raise StoreUnavailableError(f"{what} is closed")
    unchanged: tuple[type[BaseException], ...] = (StrongroomError, *passthrough)
    failures = driver_errors()
    try:
        async with pool.acquire(timeout=STATEMENT_TIMEOUT) as conn:
            yield conn
    except unchanged:
        raise
    except failures as exc:
        raise StoreUnavailableError(f"{what} failed ({type(exc).__name__})") from exc
