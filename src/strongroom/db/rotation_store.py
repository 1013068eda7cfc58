"""Rotation configurations and schedule in ``secrets_rotation_config`` (SQLite or PostgreSQL).

The scheduler's due check is one indexed query that also takes a lease on what it returns
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; the single writer on SQLite), so schedulers on
several replicas never rotate the same secret in the same cycle. Schedules marked ``external``
are left to rotation workers, which claim them with the same leases (``worker_claim``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from strongroom.db.dialect import POSTGRES, SQLITE, Dialect
from strongroom.db.pg import open_pool, pooled
from strongroom.db.rotation_absence import KnownAbsent
from strongroom.db.rows import from_micros, to_micros
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = [
    "CLAIM_POSTGRES",
    "COLUMNS",
    "DUE_POSTGRES",
    "DUE_SQLITE",
    "PostgresRotationStore",
    "RotationStore",
    "SqliteRotationStore",
    "WorkerFilter",
]

COLUMNS = (
    "secret_name", "rotation_days", "rotation_hours_before_expiry", "enabled", "description",
    "force_on_next", "last_rotation", "next_rotation", "display_name", "generator",
    "generator_options", "has_callback", "rotator", "secret_type", "grace_period_hours",
    "expires_at", "due_at", "attempts", "last_attempt", "last_result", "last_error",
    "lease_owner", "lease_until", "previous_version", "previous_disable_at", "created_at",
    "updated_at", "external",
)  # fmt: skip
_TIMES = frozenset(
    {"last_rotation", "next_rotation", "expires_at", "due_at", "last_attempt", "lease_until",
     "previous_disable_at", "created_at", "updated_at"}
)  # fmt: skip
_BOOLS = frozenset({"enabled", "force_on_next", "has_callback", "external"})
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM secrets_rotation_config"
_GET = f"{_SELECT} WHERE secret_name = :n"

_UPSERT = (
    f"INSERT INTO secrets_rotation_config ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in COLUMNS)}) "
    "ON CONFLICT (secret_name) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}"
        for c in COLUMNS
        if c not in ("secret_name", "created_at", "lease_owner", "lease_until", "attempts")
    )
)

# The due check: enabled, due, not leased by a live scheduler, not left to external workers;
# oldest first. "{enabled}" is the literal each dialect's partial index is defined with, so
# every plan can use the index.
_DUE = (
    "SELECT secret_name FROM secrets_rotation_config "
    "WHERE {enabled} AND due_at <= :now AND (lease_until IS NULL OR lease_until < :now) "
    "AND {internal} ORDER BY due_at LIMIT :limit"
)
# One statement claims what the due check finds. PostgreSQL: ANY(ARRAY(...)) keeps the plan on
# the primary key whatever the row estimate, and SKIP LOCKED lets replicas share the work.
DUE_SQLITE = _DUE.replace("{enabled}", "enabled = 1").replace("{internal}", "external = 0")
DUE_POSTGRES = _DUE.replace("{enabled}", "enabled").replace("{internal}", "NOT external")
CLAIM_POSTGRES = (
    "UPDATE secrets_rotation_config SET lease_owner = :owner, lease_until = :lease_until "
    "WHERE secret_name = ANY(ARRAY("
    + DUE_POSTGRES
    + f" FOR UPDATE SKIP LOCKED)) RETURNING {', '.join(COLUMNS)}"
)
_CLAIM_SQLITE = (
    "UPDATE secrets_rotation_config SET lease_owner = :owner, lease_until = :lease_until "
    "WHERE secret_name IN (" + DUE_SQLITE + f") RETURNING {', '.join(COLUMNS)}"
)
_CLAIM_ONE = (
    "UPDATE secrets_rotation_config SET lease_owner = :owner, lease_until = :lease_until "
    "WHERE secret_name = :secret_name AND (lease_until IS NULL OR lease_until < :now OR "
    "lease_owner = :owner)"
)
_FINISH = (
    "UPDATE secrets_rotation_config SET last_rotation = :last_rotation, "
    "next_rotation = :next_rotation, expires_at = :expires_at, due_at = :due_at, "
    "attempts = :attempts, last_attempt = :last_attempt, last_result = :last_result, "
    "last_error = :last_error, force_on_next = :force_on_next, lease_owner = NULL, "
    "lease_until = NULL, previous_version = :previous_version, "
    "previous_disable_at = :previous_disable_at, updated_at = :updated_at "
    "WHERE secret_name = :secret_name"
)
_SCHEDULE = (
    "UPDATE secrets_rotation_config SET due_at = :due_at, force_on_next = :force_on_next, "
    "last_rotation = :last_rotation, next_rotation = :next_rotation, expires_at = :expires_at, "
    "updated_at = :updated_at WHERE secret_name = :secret_name"
)
# Rotation workers. What a worker may take: enabled, due, unleased, served by workers, and
# (optionally) among the names it holds callbacks for, matching its LIKE pattern, made by a
# generator, of a type. Each filter is off when its parameter is NULL.
_WORKER_DUE = (
    "SELECT secret_name FROM secrets_rotation_config "
    "WHERE {enabled} AND {external} AND due_at <= :now "
    "AND (lease_until IS NULL OR lease_until < :now) "
    "AND (:like IS NULL OR secret_name LIKE :like) "
    "AND (:generated = {false} OR generator IS NOT NULL) "
    "AND (:secret_type IS NULL OR secret_type = :secret_type) "
)
# The worker's candidates (no lock: the claim below takes them, skipping what others hold).
_WORKER_DUE_SQLITE = (
    _WORKER_DUE.replace("{enabled}", "enabled = 1")
    .replace("{external}", "external = 1")
    .replace("{false}", "0")
    + "AND (:names IS NULL OR secret_name IN (SELECT value FROM json_each(:names))) "
    "ORDER BY due_at LIMIT :limit"
)
_WORKER_DUE_POSTGRES = (
    _WORKER_DUE.replace(":like", ":like::text")
    .replace(":secret_type", ":secret_type::text")
    .replace("{enabled}", "enabled")
    .replace("{external}", "external")
    .replace("{false}", "false")
    + "AND (:names::text[] IS NULL OR secret_name = ANY(:names::text[])) "
    "ORDER BY due_at LIMIT :limit"
)
# Claim the names a worker chose among the candidates, if they are still due and free.
_WORKER_CLAIM_SQLITE = (
    "UPDATE secrets_rotation_config SET lease_owner = :owner, lease_until = :lease_until "
    "WHERE secret_name IN (SELECT value FROM json_each(:chosen)) AND enabled = 1 "
    "AND external = 1 AND due_at <= :now AND (lease_until IS NULL OR lease_until < :now) "
    f"RETURNING {', '.join(COLUMNS)}"
)
_WORKER_CLAIM_POSTGRES = (
    "UPDATE secrets_rotation_config SET lease_owner = :owner, lease_until = :lease_until "
    "WHERE secret_name = ANY(ARRAY(SELECT secret_name FROM secrets_rotation_config "
    "WHERE secret_name = ANY(:chosen::text[]) AND enabled AND external AND due_at <= :now "
    "AND (lease_until IS NULL OR lease_until < :now) FOR UPDATE SKIP LOCKED)) "
    f"RETURNING {', '.join(COLUMNS)}"
)
_RELEASE = (
    "UPDATE secrets_rotation_config SET lease_owner = NULL, lease_until = NULL "
    "WHERE secret_name = :secret_name AND lease_owner = :owner"
)
_RENEW = (
    "UPDATE secrets_rotation_config SET lease_until = :lease_until "
    "WHERE secret_name = :secret_name AND lease_owner = :owner"
)
_GRACE = (
    f"{_SELECT} WHERE previous_disable_at IS NOT NULL AND previous_disable_at <= :now "
    "ORDER BY previous_disable_at LIMIT :limit"
)


class RotationStore(Protocol):
    backend: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def upsert(self, row: dict[str, Any]) -> None: ...
    async def delete(self, name: str) -> bool: ...
    async def get(self, name: str) -> dict[str, Any] | None: ...
    async def restart_target(self, name: str) -> dict[str, Any] | None: ...
    async def list_all(self) -> list[dict[str, Any]]: ...
    async def claim_due(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[dict[str, Any]]: ...
    async def claim(
        self, name: str, now: datetime, owner: str, lease_until: datetime
    ) -> dict[str, Any] | None: ...
    async def finish(self, values: dict[str, Any]) -> None: ...
    async def schedule(self, values: dict[str, Any]) -> None: ...
    async def grace_expired(self, now: datetime, limit: int) -> list[dict[str, Any]]: ...
    async def worker_due(self, now: datetime, limit: int, wanted: WorkerFilter) -> list[str]: ...
    async def worker_claim(
        self, chosen: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> list[dict[str, Any]]: ...
    async def renew(
        self, name: str, owner: str, lease_until: datetime
    ) -> dict[str, Any] | None: ...
    async def release(self, name: str, owner: str) -> bool: ...
    async def clear_grace(self, name: str, version: str) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerFilter:
    """What one rotation worker can rotate: the names it holds callbacks for, a LIKE pattern
    of names, generator-made schedules only, one secret type (None: no such filter)."""

    names: tuple[str, ...] | None = None
    like: str | None = None
    generated: bool = False
    secret_type: str | None = None


class _Sql:
    """Parameter and row conversion for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        if self.dialect is POSTGRES:
            return values
        return {
            k: (to_micros(v) if isinstance(v, datetime) else int(v) if isinstance(v, bool) else v)
            for k, v in values.items()
        }

    def row(self, row: Any) -> dict[str, Any]:
        out = {c: row[c] for c in COLUMNS}
        if self.dialect is SQLITE:
            for c in _TIMES:
                out[c] = from_micros(out[c])
            for c in _BOOLS:
                out[c] = bool(out[c])
        return out

    def compile(self, sql: str, values: dict[str, Any]) -> tuple[str, Sequence[Any]]:
        return self.dialect.compile(sql, self.params(values))


class _RotationQueries:
    """The queries both stores share; subclasses say how to run a statement."""

    absent: KnownAbsent

    async def _write(self, sql: str, values: dict[str, Any]) -> int:
        raise NotImplementedError

    async def _fetch(self, sql: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def upsert(self, row: dict[str, Any]) -> None:
        # Forgotten before and after the write: a lookup begun in between may predate it.
        self.absent.forget(row["secret_name"])
        try:
            await self._write(_UPSERT, {"lease_owner": None, "lease_until": None, **row})
        finally:
            self.absent.forget(row["secret_name"])

    async def delete(self, name: str) -> bool:
        sql = "DELETE FROM secrets_rotation_config WHERE secret_name = :secret_name"
        return await self._write(sql, {"secret_name": name}) > 0

    async def get(self, name: str) -> dict[str, Any] | None:
        rows = await self._fetch(_GET, {"n": name})
        return rows[0] if rows else None

    async def restart_target(self, name: str) -> dict[str, Any] | None:
        """The configuration a version written by hand restarts: :meth:`get`, except that a
        name found without one is believed to have none for a while (db.rotation_absence)."""
        if self.absent.believed(name):
            return None
        since = self.absent.epoch
        row = await self.get(name)
        if row is None:
            self.absent.note(name, since)
        return row

    async def list_all(self) -> list[dict[str, Any]]:
        return await self._fetch(f"{_SELECT} ORDER BY secret_name", {})

    async def claim(
        self, name: str, now: datetime, owner: str, lease_until: datetime
    ) -> dict[str, Any] | None:
        values = {"now": now, "owner": owner, "lease_until": lease_until, "secret_name": name}
        if await self._write(_CLAIM_ONE, values) == 0:
            return None
        return await self.get(name)

    async def finish(self, values: dict[str, Any]) -> None:
        await self._write(_FINISH, values)

    async def schedule(self, values: dict[str, Any]) -> None:
        await self._write(_SCHEDULE, values)

    async def grace_expired(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        return await self._fetch(_GRACE, {"now": now, "limit": limit})

    async def renew(self, name: str, owner: str, lease_until: datetime) -> dict[str, Any] | None:
        """Extend a lease only while ``owner`` holds it (an expired one nobody took counts)."""
        values = {"secret_name": name, "owner": owner, "lease_until": lease_until}
        if await self._write(_RENEW, values) == 0:
            return None
        return await self.get(name)

    async def release(self, name: str, owner: str) -> bool:
        return await self._write(_RELEASE, {"secret_name": name, "owner": owner}) > 0

    async def clear_grace(self, name: str, version: str) -> None:
        await self._write(
            "UPDATE secrets_rotation_config SET previous_disable_at = NULL "
            "WHERE secret_name = :secret_name AND previous_version = :version",
            {"secret_name": name, "version": version},
        )


class SqliteRotationStore(_RotationQueries):
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.backend = "memory" if db.in_memory else "sqlite"
        self._sql = _Sql(SQLITE)
        self.absent = KnownAbsent()

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def _write(self, sql: str, values: dict[str, Any]) -> int:
        text, params = self._sql.compile(sql, values)
        return await self.db.write(lambda c: c.execute(text, params).rowcount)

    async def _fetch(self, sql: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        text, params = self._sql.compile(sql, values)
        rows = await self.db.read(lambda c: c.execute(text, params).fetchall())
        return [self._sql.row(r) for r in rows]

    async def get(self, name: str) -> dict[str, Any] | None:
        """A lookup by key (every update of a secret looks for its schedule)."""
        text, params = self._sql.compile(_GET, {"n": name})
        rows = await self.db.lookup(lambda c: c.execute(text, params).fetchall())
        return self._sql.row(rows[0]) if rows else None

    async def claim_due(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[dict[str, Any]]:
        values = {"now": now, "owner": owner, "lease_until": lease_until, "limit": limit}
        text, params = self._sql.compile(_CLAIM_SQLITE, values)
        rows = await self.db.write(lambda c: c.execute(text, params).fetchall())
        return sorted((self._sql.row(r) for r in rows), key=lambda r: r["due_at"])

    async def worker_due(self, now: datetime, limit: int, wanted: WorkerFilter) -> list[str]:
        names = None if wanted.names is None else json.dumps(list(wanted.names))
        values = {"now": now, "limit": limit, "names": names, "like": wanted.like,
                  "generated": wanted.generated, "secret_type": wanted.secret_type}  # fmt: skip
        text, params = self._sql.compile(_WORKER_DUE_SQLITE, values)
        rows = await self.db.read(lambda c: c.execute(text, params).fetchall())
        return [str(r["secret_name"]) for r in rows]

    async def worker_claim(
        self, chosen: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> list[dict[str, Any]]:
        values = {"chosen": json.dumps(list(chosen)), "now": now, "owner": owner,
                  "lease_until": lease_until}  # fmt: skip
        text, params = self._sql.compile(_WORKER_CLAIM_SQLITE, values)
        rows = await self.db.write(lambda c: c.execute(text, params).fetchall())
        return sorted((self._sql.row(r) for r in rows), key=lambda r: r["due_at"])


class PostgresRotationStore(_RotationQueries):
    backend = "postgres"

    def __init__(self, dsn: str, *, schema: str) -> None:
        self._dsn = dsn
        self.schema = schema
        self._pool: Any = None
        self._sql = _Sql(POSTGRES)
        self.absent = KnownAbsent()

    async def open(self) -> None:
        self._pool = await open_pool(
            self._dsn, self.schema, min_size=1, max_size=4, what="the PostgreSQL rotation store"
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _write(self, sql: str, values: dict[str, Any]) -> int:
        text, params = self._sql.compile(sql, values)
        async with pooled(self._pool, "the PostgreSQL rotation store") as conn:
            status = await conn.execute(text, *params)
        return int(status.split()[-1])

    async def _fetch(self, sql: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        text, params = self._sql.compile(sql, values)
        async with pooled(self._pool, "the PostgreSQL rotation store") as conn:
            rows = await conn.fetch(text, *params)
        return [self._sql.row(r) for r in rows]

    async def claim_due(
        self, now: datetime, owner: str, lease_until: datetime, limit: int
    ) -> list[dict[str, Any]]:
        values = {"now": now, "owner": owner, "lease_until": lease_until, "limit": limit}
        rows = await self._fetch(CLAIM_POSTGRES, values)
        return sorted(rows, key=lambda r: r["due_at"])

    async def worker_due(self, now: datetime, limit: int, wanted: WorkerFilter) -> list[str]:
        values = {"now": now, "limit": limit, "like": wanted.like, "generated": wanted.generated,
                  "secret_type": wanted.secret_type,
                  "names": None if wanted.names is None else list(wanted.names)}  # fmt: skip
        text, params = self._sql.compile(_WORKER_DUE_POSTGRES, values)
        async with pooled(self._pool, "the PostgreSQL rotation store") as conn:
            rows = await conn.fetch(text, *params)
        return [str(r["secret_name"]) for r in rows]

    async def worker_claim(
        self, chosen: Sequence[str], now: datetime, owner: str, lease_until: datetime
    ) -> list[dict[str, Any]]:
        values = {"chosen": list(chosen), "now": now, "owner": owner, "lease_until": lease_until}
        rows = await self._fetch(_WORKER_CLAIM_POSTGRES, values)
        return sorted(rows, key=lambda r: r["due_at"])
