"""Policies, identity-policy bindings and token records (SQLite or PostgreSQL).

The SQL is written once; a small runner per database binds it (``:name`` parameters) and
converts times (microseconds in SQLite, ``timestamptz`` in PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from strongroom.db.dialect import POSTGRES, SQLITE
from strongroom.db.pg import open_pool, pooled
from strongroom.db.rows import from_micros, to_micros
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = [
    "AccessStore",
    "PolicyRecord",
    "PostgresAccessStore",
    "SqliteAccessStore",
    "TokenRecord",
]

_TIMES = ("created_at", "expires_at", "revoked_at", "updated_at")
_TOKEN_COLUMNS = (
    "id, identity, digest, description, created_by, created_at, expires_at, revoked_at, revoked_by"
)
_GET_TOKEN = f"SELECT {_TOKEN_COLUMNS} FROM strongroom_tokens WHERE id = :id"
_LIST_TOKENS = f"SELECT {_TOKEN_COLUMNS} FROM strongroom_tokens ORDER BY created_at, id"
_LIST_TOKENS_OF = (
    f"SELECT {_TOKEN_COLUMNS} FROM strongroom_tokens WHERE identity = :identity "
    "ORDER BY created_at, id"
)
_ADD_TOKEN = (
    "INSERT INTO strongroom_tokens (id, identity, digest, description, created_by, created_at, "
    "expires_at) VALUES (:id, :identity, :digest, :description, :created_by, :created_at, "
    ":expires_at)"
)
_REVOKE_TOKEN = (
    "UPDATE strongroom_tokens SET revoked_at = :at, revoked_by = :by "
    "WHERE id = :id AND revoked_at IS NULL"
)
_POLICY_COLUMNS = "name, description, grants, updated_by, updated_at"
_LIST_POLICIES = f"SELECT {_POLICY_COLUMNS} FROM strongroom_policies ORDER BY name"
_GET_POLICY = f"SELECT {_POLICY_COLUMNS} FROM strongroom_policies WHERE name = :name"
_PUT_POLICY = {
    "sqlite": (
        "INSERT INTO strongroom_policies (name, description, grants, updated_by, updated_at) "
        "VALUES (:name, :description, :grants, :by, :at) ON CONFLICT (name) DO UPDATE SET "
        "description = excluded.description, grants = excluded.grants, "
        "updated_by = excluded.updated_by, updated_at = excluded.updated_at"
    ),
    "postgres": (
        "INSERT INTO strongroom_policies (name, description, grants, updated_by, updated_at) "
        "VALUES (:name, :description, :grants::jsonb, :by, :at) ON CONFLICT (name) DO UPDATE "
        "SET description = excluded.description, grants = excluded.grants, "
        "updated_by = excluded.updated_by, updated_at = excluded.updated_at"
    ),
}
_DELETE_POLICY = "DELETE FROM strongroom_policies WHERE name = :name"
_UNBIND_POLICY = "DELETE FROM strongroom_identity_policies WHERE policy = :name"
_POLICIES_OF = (
    "SELECT policy FROM strongroom_identity_policies WHERE identity = :identity ORDER BY policy"
)
_BINDINGS = "SELECT identity, policy FROM strongroom_identity_policies ORDER BY identity, policy"
_ATTACH = (
    "INSERT INTO strongroom_identity_policies (identity, policy) VALUES (:identity, :policy) "
    "ON CONFLICT DO NOTHING"
)
_DETACH = "DELETE FROM strongroom_identity_policies WHERE identity = :identity AND policy = :policy"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as stored: never the token itself, only its keyed hash."""

    id: str
    identity: str
    digest: bytes
    description: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity,
            "description": self.description,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    name: str
    description: str
    grants: list[dict[str, Any]]
    updated_by: str
    updated_at: datetime


class AccessStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def add_token(self, record: TokenRecord) -> None: ...
    async def get_token(self, token_id: str) -> TokenRecord | None: ...
    async def list_tokens(self, identity: str | None = None) -> list[TokenRecord]: ...
    async def revoke_token(self, token_id: str, by: str, at: datetime) -> bool: ...
    async def put_policy(
        self, name: str, description: str, grants: list[dict[str, Any]], by: str, at: datetime
    ) -> None: ...
    async def get_policy(self, name: str) -> PolicyRecord | None: ...
    async def list_policies(self) -> list[PolicyRecord]: ...
    async def delete_policy(self, name: str) -> bool:
        """Delete the policy and every binding to it, in one transaction."""
        ...

    async def attach(self, identity: str, policy: str) -> bool: ...
    async def detach(self, identity: str, policy: str) -> bool: ...
    async def policies_of(self, identity: str) -> list[str]: ...
    async def bindings(self) -> list[tuple[str, str]]: ...


def _token(row: Any, micros: bool) -> TokenRecord:
    data = dict(row)
    if micros:
        for key in _TIMES:
            if key in data:
                data[key] = from_micros(data[key])
    data["digest"] = bytes(data["digest"])
    return TokenRecord(**data)


def _policy(row: Any, micros: bool) -> PolicyRecord:
    data = dict(row)
    data["grants"] = json.loads(data["grants"])
    if micros:
        data["updated_at"] = from_micros(data["updated_at"])
    return PolicyRecord(**data)


class _AccessSql:
    """The store's logic over four primitives each database implements."""

    micros: bool

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def _change(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Run ``statements`` in one transaction; the rows the first one changed."""
        raise NotImplementedError

    def _time(self, when: datetime | None) -> Any:
        return to_micros(when) if self.micros else when

    async def add_token(self, record: TokenRecord) -> None:
        await self._change([(_ADD_TOKEN, {
            "id": record.id, "identity": record.identity, "digest": record.digest,
            "description": record.description, "created_by": record.created_by,
            "created_at": self._time(record.created_at),
            "expires_at": self._time(record.expires_at),
        })])  # fmt: skip

    async def get_token(self, token_id: str) -> TokenRecord | None:
        rows = await self._rows(_GET_TOKEN, {"id": token_id})
        return _token(rows[0], self.micros) if rows else None

    async def list_tokens(self, identity: str | None = None) -> list[TokenRecord]:
        if identity is None:
            rows = await self._rows(_LIST_TOKENS, {})
        else:
            rows = await self._rows(_LIST_TOKENS_OF, {"identity": identity})
        return [_token(r, self.micros) for r in rows]

    async def revoke_token(self, token_id: str, by: str, at: datetime) -> bool:
        params = {"id": token_id, "by": by, "at": self._time(at)}
        return await self._change([(_REVOKE_TOKEN, params)]) > 0

    async def put_policy(
        self, name: str, description: str, grants: list[dict[str, Any]], by: str, at: datetime
    ) -> None:
        sql = _PUT_POLICY["sqlite" if self.micros else "postgres"]
        await self._change([(sql, {
            "name": name, "description": description, "grants": json.dumps(grants), "by": by,
            "at": self._time(at),
        })])  # fmt: skip

    async def get_policy(self, name: str) -> PolicyRecord | None:
        rows = await self._rows(_GET_POLICY, {"name": name})
        return _policy(rows[0], self.micros) if rows else None

    async def list_policies(self) -> list[PolicyRecord]:
        return [_policy(r, self.micros) for r in await self._rows(_LIST_POLICIES, {})]

    async def delete_policy(self, name: str) -> bool:
        changed = await self._change(
            [(_DELETE_POLICY, {"name": name}), (_UNBIND_POLICY, {"name": name})]
        )
        return changed > 0

    async def attach(self, identity: str, policy: str) -> bool:
        return await self._change([(_ATTACH, {"identity": identity, "policy": policy})]) > 0

    async def detach(self, identity: str, policy: str) -> bool:
        return await self._change([(_DETACH, {"identity": identity, "policy": policy})]) > 0

    async def policies_of(self, identity: str) -> list[str]:
        return [r["policy"] for r in await self._rows(_POLICIES_OF, {"identity": identity})]

    async def bindings(self) -> list[tuple[str, str]]:
        return [(r["identity"], r["policy"]) for r in await self._rows(_BINDINGS, {})]


class SqliteAccessStore(_AccessSql):
    micros = True

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, values = SQLITE.compile(sql, params)
        return await self.db.read(lambda c: c.execute(text, values).fetchall())

    async def _change(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> int:
        compiled = [SQLITE.compile(sql, params) for sql, params in statements]

        def run(conn: Any) -> int:
            counts = [conn.execute(text, values).rowcount for text, values in compiled]
            return int(counts[0])

        return await self.db.write(run)


class PostgresAccessStore(_AccessSql):
    micros = False
    _what = "the PostgreSQL access store"

    def __init__(self, dsn: str, *, schema: str) -> None:
        self._dsn = dsn
        self.schema = schema
        self._pool: Any = None

    async def open(self) -> None:
        self._pool = await open_pool(
            self._dsn, self.schema, min_size=1, max_size=4, what=self._what
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, values = POSTGRES.compile(sql, params)
        async with pooled(self._pool, self._what) as conn:
            return list(await conn.fetch(text, *values))

    async def _change(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> int:
        compiled = [POSTGRES.compile(sql, params) for sql, params in statements]
        counts: list[int] = []
        async with pooled(self._pool, self._what) as conn, conn.transaction():
            for text, values in compiled:
                status = await conn.execute(text, *values)
                counts.append(int(status.rsplit(" ", 1)[-1]))
        return counts[0]
