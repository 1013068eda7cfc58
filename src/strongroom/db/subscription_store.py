"""Event subscriptions and sent expiry notices (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

from strongroom.db.dialect import POSTGRES, SQLITE, Dialect
from strongroom.db.pg import open_pool, pooled
from strongroom.db.rows import from_micros, to_micros
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = ["PostgresSubscriptionStore", "SqliteSubscriptionStore", "SubscriptionStore"]

_SELECT = "SELECT id, url, pattern, events, created_by, created_at FROM secrets_subscriptions"
_INSERT = (
    "INSERT INTO secrets_subscriptions (url, pattern, events, created_by, created_at) "
    "VALUES (:url, :pattern, :events, :created_by, :created_at) RETURNING id"
)
_DELETE = "DELETE FROM secrets_subscriptions WHERE id = :id"
_NOTICE = (
    "INSERT INTO secrets_expiry_notices (secret_name, version, kind, sent_at) "
    "VALUES (:name, :version, :kind, :sent_at) ON CONFLICT DO NOTHING"
)


class SubscriptionStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def add(
        self, url: str, pattern: str, events: list[str], by: str, at: datetime
    ) -> int: ...

    async def remove(self, subscription_id: int) -> bool: ...
    async def list_all(self) -> list[dict[str, Any]]: ...
    async def claim_notice(self, name: str, version: str, kind: str, at: datetime) -> bool:
        """True the first time (name, version, kind) is claimed: each notice goes out once."""
        ...


def _row(row: Any, dialect: Dialect) -> dict[str, Any]:
    created = row["created_at"]
    return {
        "id": row["id"],
        "url": row["url"],
        "pattern": row["pattern"],
        "events": json.loads(row["events"]),
        "created_by": row["created_by"],
        "created_at": from_micros(created) if dialect is SQLITE else created,
    }


class SqliteSubscriptionStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def _exec(self, sql: str, values: dict[str, Any]) -> Any:
        text, params = SQLITE.compile(sql, values)
        return await self.db.write(lambda c: c.execute(text, params))

    async def add(self, url: str, pattern: str, events: list[str], by: str, at: datetime) -> int:
        text, params = SQLITE.compile(_INSERT, {
            "url": url, "pattern": pattern, "events": json.dumps(events), "created_by": by,
            "created_at": to_micros(at),
        })  # fmt: skip
        return int(await self.db.write(lambda c: c.execute(text, params).fetchone()[0]))

    async def remove(self, subscription_id: int) -> bool:
        text, params = SQLITE.compile(_DELETE, {"id": subscription_id})
        return bool(await self.db.write(lambda c: c.execute(text, params).rowcount))

    async def list_all(self) -> list[dict[str, Any]]:
        rows = await self.db.read(lambda c: c.execute(f"{_SELECT} ORDER BY id").fetchall())
        return [_row(r, SQLITE) for r in rows]

    async def claim_notice(self, name: str, version: str, kind: str, at: datetime) -> bool:
        text, params = SQLITE.compile(
            _NOTICE, {"name": name, "version": version, "kind": kind, "sent_at": to_micros(at)}
        )
        return bool(await self.db.write(lambda c: c.execute(text, params).rowcount))


class PostgresSubscriptionStore:
    def __init__(self, dsn: str, *, schema: str) -> None:
        self._dsn = dsn
        self.schema = schema
        self._pool: Any = None

    async def open(self) -> None:
        self._pool = await open_pool(
            self._dsn, self.schema, min_size=1, max_size=2, what="the PostgreSQL event store"
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def add(self, url: str, pattern: str, events: list[str], by: str, at: datetime) -> int:
        text, params = POSTGRES.compile(_INSERT, {
            "url": url, "pattern": pattern, "events": json.dumps(events), "created_by": by,
            "created_at": at,
        })  # fmt: skip
        async with pooled(self._pool, "the PostgreSQL event store") as conn:
            return int(await conn.fetchval(text, *params))

    async def remove(self, subscription_id: int) -> bool:
        text, params = POSTGRES.compile(_DELETE, {"id": subscription_id})
        async with pooled(self._pool, "the PostgreSQL event store") as conn:
            return bool(await conn.execute(text, *params) == "DELETE 1")

    async def list_all(self) -> list[dict[str, Any]]:
        async with pooled(self._pool, "the PostgreSQL event store") as conn:
            rows = await conn.fetch(f"{_SELECT} ORDER BY id")
        return [_row(r, POSTGRES) for r in rows]

    async def claim_notice(self, name: str, version: str, kind: str, at: datetime) -> bool:
        text, params = POSTGRES.compile(
            _NOTICE, {"name": name, "version": version, "kind": kind, "sent_at": at}
        )
        async with pooled(self._pool, "the PostgreSQL event store") as conn:
            return bool(await conn.execute(text, *params) == "INSERT 0 1")
