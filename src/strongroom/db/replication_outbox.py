"""The durable outbox that copies the primary vault's writes to secondary vaults (SQLite or
PostgreSQL, beside the rest of the state).

A write records, before it reaches the primary vault, one row per secondary naming the secret
(never its value); the copier claims due rows under a lease, makes the secondary match the
primary for that name, and removes the row. Recording first means an acknowledged write always
has its row: a crash after the write leaves the row, a failed write leaves a harmless one (the
copy finds nothing to change). Rows coalesce per (vault, name), and each new write bumps the
row's generation, so a copy that raced a newer write leaves the row for another pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from strongroom.db.dialect import POSTGRES, SQLITE
from strongroom.db.pg import open_pool, pooled
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = [
    "HOLD_US",
    "Backlog",
    "Pending",
    "PostgresReplicationOutbox",
    "Recorded",
    "ReplicationOutbox",
    "SqliteReplicationOutbox",
]

_ENQUEUE = (
    "INSERT INTO azure_replication_outbox (target, name_key, name, generation, enqueued_at, "
    "next_at) VALUES (:target, :key, :name, 1, :now, :hold) ON CONFLICT (target, name_key) DO "
    "UPDATE SET generation = azure_replication_outbox.generation + 1, name = excluded.name, "
    "next_at = excluded.next_at, attempts = 0 RETURNING generation"
)
_READY = (
    "UPDATE azure_replication_outbox SET next_at = :now "
    "WHERE target = :target AND name_key = :key AND generation = :gen"
)
#: A recorded write is not copied until it is done (``ready``); if its process dies first, the
#: row falls due after this long anyway (the copy then finds whatever the write left).
HOLD_US = 60_000_000
_CLAIM_SQLITE = (
    "UPDATE azure_replication_outbox SET claimed_until = :until WHERE (target, name_key) IN "
    "(SELECT target, name_key FROM azure_replication_outbox WHERE next_at <= :now "
    "AND (claimed_until IS NULL OR claimed_until < :now) ORDER BY next_at LIMIT :limit) "
    "RETURNING target, name, generation, attempts"
)
# SKIP LOCKED: copiers in other processes claim other rows instead of waiting.
_CLAIM_POSTGRES = (
    "UPDATE azure_replication_outbox SET claimed_until = :until WHERE (target, name_key) IN "
    "(SELECT target, name_key FROM azure_replication_outbox WHERE next_at <= :now "
    "AND (claimed_until IS NULL OR claimed_until < :now) ORDER BY next_at LIMIT :limit "
    "FOR UPDATE SKIP LOCKED) RETURNING target, name, generation, attempts"
)
_DONE = (
    "DELETE FROM azure_replication_outbox "
    "WHERE target = :target AND name_key = :key AND generation = :gen"
)
_RELEASE = (
    "UPDATE azure_replication_outbox SET claimed_until = NULL "
    "WHERE target = :target AND name_key = :key"
)
_FAILED = (
    "UPDATE azure_replication_outbox SET claimed_until = NULL, attempts = attempts + 1, "
    "next_at = :retry, last_error = :error "
    "WHERE target = :target AND name_key = :key AND generation = :gen"
)
_PENDING = "SELECT 1 FROM azure_replication_outbox WHERE target = :target AND name_key = :key"
_BACKLOG = "SELECT target, count(*), min(enqueued_at) FROM azure_replication_outbox GROUP BY target"


@dataclass(frozen=True, slots=True)
class Pending:
    """A name to copy to one secondary vault, as claimed."""

    target: str
    name: str
    generation: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Recorded:
    """A write's rows: the generation it gave each secondary's row for the name."""

    name: str
    generations: dict[str, int]


@dataclass(frozen=True, slots=True)
class Backlog:
    """What is still to copy to one secondary: how many names, and since when (µs)."""

    target: str
    names: int
    oldest_us: int


class ReplicationOutbox(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def enqueue(self, targets: Sequence[str], name: str, now_us: int) -> Recorded:
        """Record a write about to be made; its rows fall due when ``ready`` says it is done."""
        ...

    async def ready(self, recorded: Recorded, now_us: int) -> None:
        """The write is done (or failed): copy now, unless a newer write is still in flight."""
        ...

    async def claim(self, now_us: int, lease_us: int, limit: int) -> list[Pending]: ...
    async def done(self, item: Pending) -> None: ...
    async def failed(self, item: Pending, error: str, retry_us: int) -> None: ...
    async def is_pending(self, target: str, name: str) -> bool: ...
    async def backlog(self) -> list[Backlog]: ...


def _key(name: str) -> str:
    return name.lower()


def _params(target: str, name: str, now_us: int) -> dict[str, Any]:
    return {"target": target, "key": _key(name), "name": name, "now": now_us,
            "hold": now_us + HOLD_US}  # fmt: skip


def _ready(recorded: Recorded, target: str, now_us: int) -> dict[str, Any]:
    return {"target": target, "key": _key(recorded.name), "now": now_us,
            "gen": recorded.generations[target]}  # fmt: skip


def _pending(row: Any) -> Pending:
    return Pending(str(row[0]), str(row[1]), int(row[2]), int(row[3]))


class SqliteReplicationOutbox:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def _write(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, args = SQLITE.compile(sql, params)
        return await self.db.write(lambda c: c.execute(text, args).fetchall())

    async def _read(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, args = SQLITE.compile(sql, params)
        return await self.db.read(lambda c: c.execute(text, args).fetchall())

    async def enqueue(self, targets: Sequence[str], name: str, now_us: int) -> Recorded:
        rows = [(t, *SQLITE.compile(_ENQUEUE, _params(t, name, now_us))) for t in targets]

        def run(conn: Any) -> Recorded:
            return Recorded(name, {t: int(conn.execute(q, a).fetchone()[0]) for t, q, a in rows})

        return await self.db.write(run)

    async def ready(self, recorded: Recorded, now_us: int) -> None:
        rows = [SQLITE.compile(_READY, _ready(recorded, t, now_us)) for t in recorded.generations]

        def run(conn: Any) -> None:
            for text, args in rows:
                conn.execute(text, args)

        await self.db.write(run)

    async def claim(self, now_us: int, lease_us: int, limit: int) -> list[Pending]:
        rows = await self._write(
            _CLAIM_SQLITE, {"until": now_us + lease_us, "now": now_us, "limit": limit}
        )
        return [_pending(r) for r in rows]

    async def done(self, item: Pending) -> None:
        params = {"target": item.target, "key": _key(item.name), "gen": item.generation}
        text, args = SQLITE.compile(_DONE, params)
        release, release_args = SQLITE.compile(_RELEASE, params)

        def run(conn: Any) -> None:
            if conn.execute(text, args).rowcount == 0:
                conn.execute(release, release_args)  # written again meanwhile: due at once

        await self.db.write(run)

    async def failed(self, item: Pending, error: str, retry_us: int) -> None:
        await self._write(_FAILED, {"target": item.target, "key": _key(item.name),
                                    "gen": item.generation, "retry": retry_us,
                                    "error": error[:64]})  # fmt: skip

    async def is_pending(self, target: str, name: str) -> bool:
        return bool(await self._read(_PENDING, {"target": target, "key": _key(name)}))

    async def backlog(self) -> list[Backlog]:
        rows = await self._read(_BACKLOG, {})
        return [Backlog(str(r[0]), int(r[1]), int(r[2])) for r in rows]


class PostgresReplicationOutbox:
    _what = "the PostgreSQL replication outbox"

    def __init__(self, dsn: str, *, schema: str) -> None:
        self._dsn = dsn
        self.schema = schema
        self._pool: Any = None

    async def open(self) -> None:
        self._pool = await open_pool(self._dsn, self.schema, min_size=1, max_size=4,
                                     what=self._what)  # fmt: skip

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _fetch(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, args = POSTGRES.compile(sql, params)
        async with pooled(self._pool, self._what) as conn:
            return list(await conn.fetch(text, *args))

    async def enqueue(self, targets: Sequence[str], name: str, now_us: int) -> Recorded:
        generations = {}
        async with pooled(self._pool, self._what) as conn, conn.transaction():
            for target in targets:
                text, args = POSTGRES.compile(_ENQUEUE, _params(target, name, now_us))
                generations[target] = int(await conn.fetchval(text, *args))
        return Recorded(name, generations)

    async def ready(self, recorded: Recorded, now_us: int) -> None:
        async with pooled(self._pool, self._what) as conn, conn.transaction():
            for target in recorded.generations:
                text, args = POSTGRES.compile(_READY, _ready(recorded, target, now_us))
                await conn.execute(text, *args)

    async def claim(self, now_us: int, lease_us: int, limit: int) -> list[Pending]:
        rows = await self._fetch(
            _CLAIM_POSTGRES, {"until": now_us + lease_us, "now": now_us, "limit": limit}
        )
        return [_pending(r) for r in rows]

    async def done(self, item: Pending) -> None:
        params = {"target": item.target, "key": _key(item.name), "gen": item.generation}
        text, args = POSTGRES.compile(_DONE, params)
        async with pooled(self._pool, self._what) as conn, conn.transaction():
            if await conn.execute(text, *args) == "DELETE 0":
                release, release_args = POSTGRES.compile(_RELEASE, params)
                await conn.execute(release, *release_args)

    async def failed(self, item: Pending, error: str, retry_us: int) -> None:
        await self._fetch(_FAILED, {"target": item.target, "key": _key(item.name),
                                    "gen": item.generation, "retry": retry_us,
                                    "error": error[:64]})  # fmt: skip

    async def is_pending(self, target: str, name: str) -> bool:
        return bool(await self._fetch(_PENDING, {"target": target, "key": _key(name)}))

    async def backlog(self) -> list[Backlog]:
        rows = await self._fetch(_BACKLOG, {})
        return [Backlog(str(r[0]), int(r[1]), int(r[2])) for r in rows]
