"""Cache generations: how processes that share a state database tell one another that a secret
changed, for the read-through cache in front of a remote store (:mod:`strongroom.backends.cache`).

One row per secret name holds a counter that every write, rotation or revocation through
strongroom increments before it returns (the row ``*`` stands for every name). A cached entry
remembers the generations it was filled under and is served only while they are unchanged, so
a change made in another process is never hidden by a cache, however late any notification is.
Reading the counters is one indexed read: microseconds in SQLite, one local round trip in
PostgreSQL, far cheaper than a call to Key Vault.

On PostgreSQL an increment also sends ``pg_notify('strongroom_cache', '<schema>:<name key>')``
in the same statement (so, at commit), and a dedicated connection LISTENs for them: other
processes drop their entries at once. That is memory hygiene, not correctness, which comes
from the counters alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from strongroom.core.errors import StoreUnavailableError
from strongroom.core.logging import get_logger
from strongroom.db.dialect import POSTGRES, SQLITE
from strongroom.db.pg import check_schema, driver_errors, open_pool, pooled
from strongroom.db.sqlite_db import SqliteDatabase
from strongroom.db.sqlite_writer import connect

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "ALL_NAMES",
    "CHANNEL",
    "CacheGenerations",
    "Generation",
    "InvalidationListener",
    "PostgresCacheGenerations",
    "SqliteCacheGenerations",
    "bump_statement",
]

log = get_logger("strongroom.cache")

#: The name key that stands for every secret (no secret name can contain ``*``).
ALL_NAMES = "*"
#: The PostgreSQL notification channel; payloads are ``<schema>:<name key>``.
CHANNEL = "strongroom_cache"

#: How long an inline SQLite read may wait on a lock before it moves to a worker thread.
_INLINE_BUSY_MS = 5

#: (the name's generation, the generation of ``*``); 0 for a row not written yet.
Generation = tuple[int, int]
#: Called with a name key (or :data:`ALL_NAMES`) when another process announces a change.
InvalidationListener = Callable[[str], None]

_CURRENT = (
    "SELECT name_key, generation FROM strongroom_cache_generations "
    "WHERE name_key IN (:name_key, :all_names)"
)
#: Read on every authenticated request and cached read: compiled once, not per call.
_CURRENT_SQLITE = SQLITE.prepare(_CURRENT)
_CURRENT_POSTGRES = POSTGRES.prepare(_CURRENT)
_BUMP = (
    "INSERT INTO strongroom_cache_generations (name_key, generation) VALUES (:name_key, 1) "
    "ON CONFLICT (name_key) DO UPDATE "
    "SET generation = strongroom_cache_generations.generation + 1"
)
# One statement, so one round trip and one transaction: the notification leaves at commit.
_BUMP_AND_NOTIFY = (
    "WITH bumped AS ("
    "INSERT INTO strongroom_cache_generations (name_key, generation) VALUES (:name_key, 1) "
    "ON CONFLICT (name_key) DO UPDATE "
    "SET generation = strongroom_cache_generations.generation + 1 "
    "RETURNING generation) "
    "SELECT pg_notify(:channel, :payload) FROM bumped"
)


def bump_statement(dialect: str, schema: str, name_key: str) -> tuple[str, dict[str, Any]]:
    """The statement that increments ``name_key``'s generation (and on PostgreSQL notifies the
    other processes when it commits), for a store to run inside the transaction of the change
    it announces: the change and its announcement commit together or not at all."""
    if dialect == "postgres":
        return _BUMP_AND_NOTIFY, {
            "name_key": name_key, "channel": CHANNEL, "payload": f"{schema}:{name_key}",
        }  # fmt: skip
    return _BUMP, {"name_key": name_key}


class CacheGenerations(Protocol):
    """Per-name change counters shared by every process of one deployment."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def current(self, name_key: str) -> Generation:
        """The generations of ``name_key`` and of every name; StoreUnavailableError if the
        state database cannot answer."""
        ...

    async def bump(self, name_key: str) -> None:
        """Increment ``name_key``'s generation (:data:`ALL_NAMES` for every name), durably
        visible to other processes when this returns."""
        ...

    def add_listener(self, listener: InvalidationListener) -> None:
        """Call ``listener`` when another process announces a change (if this store can)."""
        ...

    def remove_listener(self, listener: InvalidationListener) -> None: ...


def _generation(rows: Iterable[Any], name_key: str) -> Generation:
    found = {row[0]: int(row[1]) for row in rows}
    return found.get(name_key, 0), found.get(ALL_NAMES, 0)


class SqliteCacheGenerations:
    """Generations in the state SQLite database (the embedded profiles). Processes on one
    host share the file; there is no push channel, so other processes find a change by the
    generation check on their next read.

    A file database is read inline, on a connection of this object's own: one indexed read
    takes a few microseconds, where a hop to a worker thread costs well over a hundred. WAL
    readers do not wait for writers; should SQLite still answer "busy" within a few
    milliseconds, the read is retried on the database's reader threads.
    """

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self.db.open()
        if self.db.path is None:
            return
        try:
            conn = connect(str(self.db.path), synchronous="NORMAL")
            conn.execute("PRAGMA query_only=ON")
            conn.execute(f"PRAGMA busy_timeout={_INLINE_BUSY_MS}")
        except sqlite3.Error as exc:
            await self.db.close()
            raise StoreUnavailableError(f"cannot open the SQLite database: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        await self.db.close()

    async def current(self, name_key: str) -> Generation:
        text = _CURRENT_SQLITE.text
        params = _CURRENT_SQLITE.args({"name_key": name_key, "all_names": ALL_NAMES})
        if (done := self.db.read_now(lambda c: c.execute(text, params).fetchall())) is not None:
            return _generation(done[0], name_key)
        conn = self._conn
        if conn is not None:
            try:
                return _generation(conn.execute(text, params).fetchall(), name_key)
            except sqlite3.Error:
                pass  # busy or worse: the reader threads wait longer and report failures
        rows = await self.db.read(lambda c: c.execute(text, params).fetchall())
        return _generation(rows, name_key)

    async def bump(self, name_key: str) -> None:
        text, params = SQLITE.compile(_BUMP, {"name_key": name_key})
        # No fsync: other processes see the commit at once, and a power cut that could undo
        # it also ends every process whose cache it was meant to invalidate.
        await self.db.write(lambda c: c.execute(text, params), sync=False)

    def add_listener(self, listener: InvalidationListener) -> None:
        return None

    def remove_listener(self, listener: InvalidationListener) -> None:
        return None


_WHAT = "the PostgreSQL cache generations"


class PostgresCacheGenerations:
    """Generations in the state PostgreSQL schema, with LISTEN/NOTIFY to drop entries early.

    ``listen=False`` keeps only the counters (no dedicated connection). ``timeout_seconds``
    bounds each read or increment, pool wait included: a stuck database makes cached reads
    fall through to the remote store instead of hanging.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        listen: bool = True,
        pool_max: int = 4,
        timeout_seconds: float = 2.0,
        reconnect_seconds: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self.schema = check_schema(schema)
        self._listen = listen
        self._pool_max = max(1, pool_max)
        self._timeout = timeout_seconds
        self._reconnect_seconds = reconnect_seconds
        self._pool: asyncpg.Pool | None = None
        self._listener_conn: asyncpg.Connection | None = None
        self._listeners: list[InvalidationListener] = []
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def listening(self) -> bool:
        """True while the LISTEN connection is up."""
        conn = self._listener_conn
        return conn is not None and not conn.is_closed()

    async def open(self) -> None:
        self._closing = False
        self._pool = await open_pool(
            self._dsn, self.schema, min_size=1, max_size=self._pool_max, what=_WHAT
        )
        if not self._listen:
            return
        try:
            await self._connect_listener()
        except driver_errors() as exc:
            await self.close()
            raise StoreUnavailableError(f"cannot LISTEN for cache invalidations ({exc})") from exc

    async def close(self) -> None:
        self._closing = True
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._listener_conn = self._listener_conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*driver_errors()):
                await conn.remove_listener(CHANNEL, self._on_notification)
            await conn.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def current(self, name_key: str) -> Generation:
        text = _CURRENT_POSTGRES.text
        params = _CURRENT_POSTGRES.args({"name_key": name_key, "all_names": ALL_NAMES})
        try:
            async with asyncio.timeout(self._timeout), pooled(self._pool, _WHAT) as conn:
                rows = await conn.fetch(text, *params)
        except TimeoutError as exc:
            raise StoreUnavailableError(f"{_WHAT} did not answer in time") from exc
        return _generation(((r["name_key"], r["generation"]) for r in rows), name_key)

    async def bump(self, name_key: str) -> None:
        text, params = POSTGRES.compile(_BUMP_AND_NOTIFY, {
            "name_key": name_key, "channel": CHANNEL, "payload": f"{self.schema}:{name_key}",
        })  # fmt: skip
        try:
            async with asyncio.timeout(self._timeout), pooled(self._pool, _WHAT) as conn:
                await conn.execute(text, *params)
        except TimeoutError as exc:
            raise StoreUnavailableError(f"{_WHAT} did not answer in time") from exc

    def add_listener(self, listener: InvalidationListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: InvalidationListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # -- LISTEN ---------------------------------------------------------------------------

    async def _connect_listener(self) -> None:
        import asyncpg  # noqa: PLC0415 (loaded on use, as in strongroom.db.pg)

        conn = await asyncpg.connect(self._dsn, timeout=self._timeout * 5)
        try:
            await conn.add_listener(CHANNEL, self._on_notification)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_connection_lost)
        self._listener_conn = conn

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        schema, sep, name_key = str(payload).partition(":")
        if not sep or schema != self.schema:
            return  # another deployment's schema in the same database
        for listener in list(self._listeners):
            try:
                listener(name_key)
            except Exception as exc:  # a listener's bug must not stop the others
                log.warning("cache invalidation listener failed", error=type(exc).__name__)

    def _on_connection_lost(self, _conn: Any) -> None:
        if self._closing or self._reconnect_task is not None:
            return
        self._listener_conn = None
        log.warning("cache invalidation channel lost; reconnecting", channel=CHANNEL)
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Re-LISTEN with backoff. Notifications sent meanwhile are lost, which costs nothing
        but memory: the generation check still refuses every entry they were about."""
        delay = self._reconnect_seconds
        attempt = 0
        failures: tuple[type[BaseException], ...] = (*driver_errors(), StoreUnavailableError)
        try:
            while not self._closing:
                await asyncio.sleep(delay)
                attempt += 1
                try:
                    await self._connect_listener()
                except failures as exc:
                    log.warning(
                        "cache invalidation channel still down",
                        error=type(exc).__name__,
                        attempt=attempt,
                    )
                    delay = min(delay * 2, 30.0)
                else:
                    return
        finally:
            self._reconnect_task = None
