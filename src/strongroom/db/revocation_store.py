"""Revocation requests in the seed's ``secrets_revocation_log`` (SQLite or PostgreSQL).

Every state change is one conditional UPDATE (``WHERE id = ... AND status = <expected>``), so
two approvers, or an approver and a canceller, racing on one request never both win.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from strongroom.db.dialect import POSTGRES, SQLITE, Dialect
from strongroom.db.pg import open_pool, pooled
from strongroom.db.review_store import PostgresReviews, SqliteReviews
from strongroom.db.rows import from_micros, to_micros
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = ["PostgresRevocationStore", "RevocationStore", "SqliteRevocationStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_COLUMNS = (
    "id", "secret_name", "reason", "status", "severity", "requested_by", "requested_at",
    "approved_by", "revoked_at", "notify_recipients", "details", "required_approvals",
    "approvals", "closed_by", "closed_at", "updated_at",
)  # fmt: skip
_TIMES = ("requested_at", "revoked_at", "closed_at", "updated_at")
_JSON = ("details", "approvals")
_WRITABLE = (
    "status", "approved_by", "revoked_at", "details", "approvals", "closed_by", "closed_at",
    "updated_at",
)  # fmt: skip


class RevocationStore(Protocol):
    backend: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def insert(self, row: dict[str, Any]) -> int: ...
    async def get(self, revocation_id: int) -> dict[str, Any] | None: ...
    async def update(self, revocation_id: int, expected: str, changes: dict[str, Any]) -> bool:
        """Apply ``changes`` only if the request is still in status ``expected``."""
        ...

    async def history(self, secret_name: str | None, limit: int) -> list[dict[str, Any]]: ...
    async def pending(self) -> list[dict[str, Any]]: ...
    async def add_tombstone(self, name_key: str, revocation_id: int, revoked_at: datetime) -> None:
        """Remember that every version of ``name_key`` up to ``revoked_at`` was revoked."""
        ...

    async def tombstones(self, name_key: str) -> list[tuple[int, datetime]]:
        """(revocation id, revoked at) of every revocation of ``name_key``, oldest first."""
        ...

    # Break-glass reviews (strongroom.db.review_store).
    async def open_review(
        self, revocation_id: int, secret_name: str, used_by: str, opened_at: datetime,
        due_at: datetime,
    ) -> None: ...  # fmt: skip
    async def get_review(self, revocation_id: int) -> dict[str, Any] | None: ...
    async def list_reviews(self, *, open_only: bool, limit: int) -> list[dict[str, Any]]: ...
    async def overdue_reviews(self, now: datetime) -> list[dict[str, Any]]: ...
    async def acknowledge_review(
        self, revocation_id: int, by: str, at: datetime, note: str
    ) -> bool: ...
    async def claim_escalation(self, revocation_id: int, seen: int, at: datetime) -> bool: ...


def _select(dialect: Dialect) -> str:
    columns = ", ".join(
        f"{c}::text AS {c}" if dialect is POSTGRES and c in _JSON else c for c in _COLUMNS
    )
    return f"SELECT {columns} FROM secrets_revocation_log"  # noqa: S608 (fixed columns)


def _insert(dialect: Dialect) -> str:
    cols = [c for c in _COLUMNS if c != "id"]
    marks = [f":{c}::jsonb" if dialect is POSTGRES and c in _JSON else f":{c}" for c in cols]
    return (
        f"INSERT INTO secrets_revocation_log ({', '.join(cols)}) "  # noqa: S608 (fixed columns)
        f"VALUES ({', '.join(marks)}) RETURNING id"
    )


def _update(dialect: Dialect, keys: list[str]) -> str:
    sets = ", ".join(
        f"{k} = :{k}::jsonb" if dialect is POSTGRES and k in _JSON else f"{k} = :{k}" for k in keys
    )
    return (
        f"UPDATE secrets_revocation_log SET {sets} "  # noqa: S608 (keys from _WRITABLE only)
        "WHERE id = :id AND status = :expected"
    )


class _Convert:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        return {key: self._param(key, value) for key, value in values.items()}

    def _param(self, key: str, value: Any) -> Any:
        if key in _JSON:
            return json.dumps(value, sort_keys=True, default=str)
        if key == "notify_recipients" and self.dialect is SQLITE:
            return json.dumps(value)
        if isinstance(value, datetime) and self.dialect is SQLITE:
            return to_micros(value)
        return value

    def row(self, row: Any) -> dict[str, Any]:
        out = {c: row[c] for c in _COLUMNS}
        for key in _JSON:
            out[key] = json.loads(out[key]) if out[key] else ({} if key == "details" else [])
        if self.dialect is SQLITE:
            out["notify_recipients"] = json.loads(out["notify_recipients"] or "[]")
            for key in _TIMES:
                out[key] = from_micros(out[key])
        else:
            out["notify_recipients"] = list(out["notify_recipients"] or [])
        return out


_ADD_TOMBSTONE = (
    "INSERT INTO secrets_revocation_tombstones (name_key, revocation_id, revoked_at) "
    "VALUES (:name_key, :revocation_id, :revoked_at) ON CONFLICT DO NOTHING"
)
_TOMBSTONES = (
    "SELECT revocation_id, revoked_at FROM secrets_revocation_tombstones "
    "WHERE name_key = :name_key ORDER BY revoked_at, revocation_id"
)


def _check_keys(changes: dict[str, Any]) -> list[str]:
    keys = sorted(changes)
    if not set(keys) <= set(_WRITABLE):
        raise ValueError(f"not writable: {sorted(set(keys) - set(_WRITABLE))}")
    return keys


class SqliteRevocationStore(SqliteReviews):
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self.backend = "memory" if db.in_memory else "sqlite"
        self._conv = _Convert(SQLITE)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def insert(self, row: dict[str, Any]) -> int:
        sql, params = SQLITE.compile(_insert(SQLITE), self._conv.params(row))
        return int(await self.db.write(lambda c: c.execute(sql, params).fetchone()[0]))

    async def _fetch(self, sql: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        text, params = SQLITE.compile(sql, self._conv.params(values))
        rows = await self.db.read(lambda c: c.execute(text, params).fetchall())
        return [self._conv.row(r) for r in rows]

    async def get(self, revocation_id: int) -> dict[str, Any] | None:
        rows = await self._fetch(f"{_select(SQLITE)} WHERE id = :id", {"id": revocation_id})
        return rows[0] if rows else None

    async def update(self, revocation_id: int, expected: str, changes: dict[str, Any]) -> bool:
        sql = _update(SQLITE, _check_keys(changes))
        values = self._conv.params({**changes, "id": revocation_id, "expected": expected})
        text, params = SQLITE.compile(sql, values)
        return bool(await self.db.write(lambda c: c.execute(text, params).rowcount))

    async def history(self, secret_name: str | None, limit: int) -> list[dict[str, Any]]:
        where = " WHERE lower(secret_name) = lower(:name)" if secret_name is not None else ""
        sql = f"{_select(SQLITE)}{where} ORDER BY requested_at DESC, id DESC LIMIT :limit"
        return await self._fetch(sql, {"name": secret_name, "limit": limit})

    async def pending(self) -> list[dict[str, Any]]:
        sql = f"{_select(SQLITE)} WHERE status = 'PENDING' ORDER BY requested_at, id"
        return await self._fetch(sql, {})

    async def add_tombstone(self, name_key: str, revocation_id: int, revoked_at: datetime) -> None:
        text, params = SQLITE.compile(
            _ADD_TOMBSTONE,
            {"name_key": name_key, "revocation_id": revocation_id,
             "revoked_at": to_micros(revoked_at)},
        )  # fmt: skip
        await self.db.write(lambda c: c.execute(text, params))

    async def tombstones(self, name_key: str) -> list[tuple[int, datetime]]:
        text, params = SQLITE.compile(_TOMBSTONES, {"name_key": name_key})
        rows = await self.db.read(lambda c: c.execute(text, params).fetchall())
        return [(int(r[0]), _EPOCH + timedelta(microseconds=r[1])) for r in rows]


class PostgresRevocationStore(PostgresReviews):
    backend = "postgres"

    def __init__(self, dsn: str, *, schema: str) -> None:
        self._dsn = dsn
        self.schema = schema
        self._pool: Any = None
        self._conv = _Convert(POSTGRES)

    async def open(self) -> None:
        self._pool = await open_pool(
            self._dsn, self.schema, min_size=1, max_size=4, what="the PostgreSQL revocation log"
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def insert(self, row: dict[str, Any]) -> int:
        sql, params = POSTGRES.compile(_insert(POSTGRES), self._conv.params(row))
        async with pooled(self._pool, "the PostgreSQL revocation log") as conn:
            return int(await conn.fetchval(sql, *params))

    async def _fetch(self, sql: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        text, params = POSTGRES.compile(sql, self._conv.params(values))
        async with pooled(self._pool, "the PostgreSQL revocation log") as conn:
            rows = await conn.fetch(text, *params)
        return [self._conv.row(r) for r in rows]

    async def get(self, revocation_id: int) -> dict[str, Any] | None:
        rows = await self._fetch(f"{_select(POSTGRES)} WHERE id = :id", {"id": revocation_id})
        return rows[0] if rows else None

    async def update(self, revocation_id: int, expected: str, changes: dict[str, Any]) -> bool:
        sql = _update(POSTGRES, _check_keys(changes))
        values = self._conv.params({**changes, "id": revocation_id, "expected": expected})
        text, params = POSTGRES.compile(sql, values)
        async with pooled(self._pool, "the PostgreSQL revocation log") as conn:
            status = await conn.execute(text, *params)
        return bool(status == "UPDATE 1")

    async def history(self, secret_name: str | None, limit: int) -> list[dict[str, Any]]:
        if secret_name is None:
            sql = f"{_select(POSTGRES)} ORDER BY requested_at DESC, id DESC LIMIT :limit"
            return await self._fetch(sql, {"limit": limit})
        sql = (
            f"{_select(POSTGRES)} WHERE lower(secret_name) = lower(:name) "
            "ORDER BY requested_at DESC, id DESC LIMIT :limit"
        )
        return await self._fetch(sql, {"name": secret_name, "limit": limit})

    async def pending(self) -> list[dict[str, Any]]:
        sql = f"{_select(POSTGRES)} WHERE status = 'PENDING' ORDER BY requested_at, id"
        return await self._fetch(sql, {})

    async def add_tombstone(self, name_key: str, revocation_id: int, revoked_at: datetime) -> None:
        text, params = POSTGRES.compile(
            _ADD_TOMBSTONE,
            {"name_key": name_key, "revocation_id": revocation_id, "revoked_at": revoked_at},
        )
        async with pooled(self._pool, "the PostgreSQL revocation log") as conn:
            await conn.execute(text, *params)

    async def tombstones(self, name_key: str) -> list[tuple[int, datetime]]:
        text, params = POSTGRES.compile(_TOMBSTONES, {"name_key": name_key})
        async with pooled(self._pool, "the PostgreSQL revocation log") as conn:
            rows = await conn.fetch(text, *params)
        return [(int(r[0]), r[1]) for r in rows]
