"""Policies, identity-policy bindings and token records (SQLite or PostgreSQL).

The SQL is written once; a small runner per database binds it (``:name`` parameters) and
converts times (microseconds in SQLite, ``timestamptz`` in PostgreSQL). Every row carries a MAC
over what decides access (a token's identity, digest, expiry and revocation; a policy's grants;
a binding's identity and policy): a row that fails it is dropped as if absent, and reported to
the integrity hook, which alerts and audits.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from strongroom.core.integrity import RowMac
from strongroom.db.access_rows import (
    ADD_TOKEN,
    ATTACH,
    BINDINGS,
    DELETE_POLICY,
    DETACH,
    GET_POLICY,
    GET_TOKEN,
    LIST_BINDINGS,
    LIST_POLICIES,
    LIST_TOKENS,
    LIST_TOKENS_OF,
    POLICIES,
    POLICIES_OF,
    PUT_POLICY,
    RENEW_TOKEN,
    REVOKE_TOKEN,
    TOKENS,
    UNBIND_POLICY,
    PolicyRecord,
    TokenRecord,
    meta_text,
    policy_fields,
    policy_from_row,
    postgres_access_hook,
    sqlite_access_hook,
    token_fields,
    token_from_row,
)
from strongroom.db.cache_invalidation import bump_statement
from strongroom.db.dialect import POSTGRES, SQLITE
from strongroom.db.migrate import PostgresHooks
from strongroom.db.pg import open_pool, pooled
from strongroom.db.rows import to_micros
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = [
    "AccessStore",
    "PolicyRecord",
    "PostgresAccessStore",
    "SqliteAccessStore",
    "TokenRecord",
    "postgres_access_hook",
    "sqlite_access_hook",
]


class AccessStore(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def add_token(self, record: TokenRecord) -> None: ...
    async def get_token(self, token_id: str) -> TokenRecord | None: ...
    async def list_tokens(self, identity: str | None = None) -> list[TokenRecord]: ...
    async def revoke_tokens(
        self, token_ids: Sequence[str], by: str, at: datetime, *, bump: str | None = None
    ) -> int:
        """Revoke the live ones of ``token_ids`` in one transaction, with the generation
        ``bump`` (if given) in the same one; how many were revoked."""
        ...

    async def renew_token(self, token_id: str, expires_at: datetime) -> bool: ...
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


class _AccessSql:
    """The store's logic over four primitives each database implements."""

    micros: bool
    _dialect: str
    _schema: str
    mac: RowMac

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def _change(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Run ``statements`` in one transaction; the rows the first one changed."""
        return (await self._changes(statements))[0]

    async def _changes(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> list[int]:
        """Run ``statements`` in one transaction; the rows each one changed."""
        raise NotImplementedError

    def _time(self, when: datetime | None) -> Any:
        return to_micros(when) if self.micros else when

    def _valid(self, table: str, fields: tuple[object, ...], stored: Any, what: str) -> bool:
        """True for a row whose MAC holds; a tampered row is reported and treated as absent."""
        if self.mac.valid(table, fields, stored):
            return True
        if self.mac.on_tamper is not None:
            self.mac.on_tamper(table, what)
        return False

    def _tokens(self, rows: list[Any]) -> list[TokenRecord]:
        found = []
        for row in rows:
            record, stored = token_from_row(row, self.micros)
            if self._valid(TOKENS, token_fields(record), stored, f"token {record.id}"):
                found.append(record)
        return found

    def _policies(self, rows: list[Any]) -> list[PolicyRecord]:
        found = []
        for row in rows:
            record, stored = policy_from_row(row, self.micros)
            fields = policy_fields(record.name, record.grants)
            if self._valid(POLICIES, fields, stored, f"policy {record.name!r}"):
                found.append(record)
        return found

    def _bindings(self, rows: list[Any]) -> list[tuple[str, str]]:
        return [
            (r["identity"], r["policy"])
            for r in rows
            if self._valid(
                BINDINGS, (r["identity"], r["policy"]), r["mac"],
                f"binding of {r['identity']!r} to {r['policy']!r}",
            )
        ]  # fmt: skip

    async def add_token(self, record: TokenRecord) -> None:
        await self._change([(ADD_TOKEN, {
            "id": record.id, "identity": record.identity, "digest": record.digest,
            "description": record.description, "created_by": record.created_by,
            "created_at": self._time(record.created_at),
            "expires_at": self._time(record.expires_at),
            "meta": meta_text(record.meta),
            "max_expires_at": self._time(record.max_expires_at),
            "mac": self.mac.mac(TOKENS, token_fields(record)),
        })])  # fmt: skip

    async def get_token(self, token_id: str) -> TokenRecord | None:
        found = self._tokens(await self._rows(GET_TOKEN, {"id": token_id}))
        return found[0] if found else None

    async def list_tokens(self, identity: str | None = None) -> list[TokenRecord]:
        if identity is None:
            rows = await self._rows(LIST_TOKENS, {})
        else:
            rows = await self._rows(LIST_TOKENS_OF, {"identity": identity})
        return self._tokens(rows)

    async def revoke_tokens(
        self, token_ids: Sequence[str], by: str, at: datetime, *, bump: str | None = None
    ) -> int:
        statements = []
        for token_id in token_ids:
            current = await self.get_token(token_id)
            if current is None or current.revoked_at is not None:
                continue
            revoked = dataclasses.replace(current, revoked_at=at, revoked_by=by)
            statements.append((REVOKE_TOKEN, {
                "id": token_id, "by": by, "at": self._time(at),
                "mac": self.mac.mac(TOKENS, token_fields(revoked)),
            }))  # fmt: skip
        live = len(statements)
        if not live:
            return 0
        if bump is not None:
            statements.append(bump_statement(self._dialect, self._schema, bump))
        return sum((await self._changes(statements))[:live])

    async def renew_token(self, token_id: str, expires_at: datetime) -> bool:
        current = await self.get_token(token_id)
        if current is None or current.revoked_at is not None:
            return False
        renewed = dataclasses.replace(current, expires_at=expires_at)
        params = {"id": token_id, "expires_at": self._time(expires_at),
                  "mac": self.mac.mac(TOKENS, token_fields(renewed))}  # fmt: skip
        return await self._change([(RENEW_TOKEN, params)]) > 0

    async def put_policy(
        self, name: str, description: str, grants: list[dict[str, Any]], by: str, at: datetime
    ) -> None:
        sql = PUT_POLICY["sqlite" if self.micros else "postgres"]
        await self._change([(sql, {
            "name": name, "description": description, "grants": json.dumps(grants), "by": by,
            "at": self._time(at), "mac": self.mac.mac(POLICIES, policy_fields(name, grants)),
        })])  # fmt: skip

    async def get_policy(self, name: str) -> PolicyRecord | None:
        found = self._policies(await self._rows(GET_POLICY, {"name": name}))
        return found[0] if found else None

    async def list_policies(self) -> list[PolicyRecord]:
        return self._policies(await self._rows(LIST_POLICIES, {}))

    async def delete_policy(self, name: str) -> bool:
        changed = await self._change(
            [(DELETE_POLICY, {"name": name}), (UNBIND_POLICY, {"name": name})]
        )
        return changed > 0

    async def attach(self, identity: str, policy: str) -> bool:
        mac = self.mac.mac(BINDINGS, (identity, policy))
        params = {"identity": identity, "policy": policy, "mac": mac}
        return await self._change([(ATTACH, params)]) > 0

    async def detach(self, identity: str, policy: str) -> bool:
        return await self._change([(DETACH, {"identity": identity, "policy": policy})]) > 0

    async def policies_of(self, identity: str) -> list[str]:
        rows = await self._rows(POLICIES_OF, {"identity": identity})
        return [policy for _, policy in self._bindings(rows)]

    async def bindings(self) -> list[tuple[str, str]]:
        return self._bindings(await self._rows(LIST_BINDINGS, {}))


class SqliteAccessStore(_AccessSql):
    micros = True
    _dialect = "sqlite"
    _schema = ""

    def __init__(self, db: SqliteDatabase, mac: RowMac) -> None:
        self.db = db
        self.mac = mac

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate({11: sqlite_access_hook(self.mac)})

    async def close(self) -> None:
        await self.db.close()

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, values = SQLITE.compile(sql, params)
        return await self.db.read(lambda c: c.execute(text, values).fetchall())

    async def _changes(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> list[int]:
        compiled = [SQLITE.compile(sql, params) for sql, params in statements]

        def run(conn: Any) -> list[int]:
            return [int(conn.execute(text, values).rowcount) for text, values in compiled]

        return await self.db.write(run)


class PostgresAccessStore(_AccessSql):
    micros = False
    _dialect = "postgres"
    _what = "the PostgreSQL access store"

    def __init__(self, dsn: str, *, schema: str, mac: RowMac) -> None:
        self._dsn = dsn
        self.schema = self._schema = schema
        self.mac = mac
        self._pool: Any = None

    async def open(self) -> None:
        hooks: PostgresHooks = {11: postgres_access_hook(self.mac)}
        self._pool = await open_pool(
            self._dsn, self.schema, min_size=1, max_size=4, what=self._what, hooks=hooks
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        text, values = POSTGRES.compile(sql, params)
        async with pooled(self._pool, self._what) as conn:
            return list(await conn.fetch(text, *values))

    async def _changes(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> list[int]:
        compiled = [POSTGRES.compile(sql, params) for sql, params in statements]
        counts: list[int] = []
        async with pooled(self._pool, self._what) as conn, conn.transaction():
            for text, values in compiled:
                status = await conn.execute(text, *values)
                counts.append(int(status.rsplit(" ", 1)[-1]))
        return counts
