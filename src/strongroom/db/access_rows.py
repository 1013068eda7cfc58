"""The rows of the access tables: token and policy records, the SQL written once for both
databases (``:name`` parameters), what each row's MAC covers, and migration 11's hook that
MACs the rows made before row MACs existed (db.access_store runs them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strongroom.core.integrity import RowMac
from strongroom.db.dialect import POSTGRES, SQLITE
from strongroom.db.rows import from_micros

TIMES = ("created_at", "expires_at", "revoked_at", "updated_at", "max_expires_at")
TOKEN_COLUMNS = (
    "id, identity, digest, description, created_by, created_at, expires_at, revoked_at, "
    "revoked_by, meta, max_expires_at, mac"
)
GET_TOKEN = f"SELECT {TOKEN_COLUMNS} FROM strongroom_tokens WHERE id = :id"
LIST_TOKENS = f"SELECT {TOKEN_COLUMNS} FROM strongroom_tokens ORDER BY created_at, id"
LIST_TOKENS_OF = (
    f"SELECT {TOKEN_COLUMNS} FROM strongroom_tokens WHERE identity = :identity "
    "ORDER BY created_at, id"
)
ADD_TOKEN = (
    "INSERT INTO strongroom_tokens (id, identity, digest, description, created_by, created_at, "
    "expires_at, meta, max_expires_at, mac) VALUES (:id, :identity, :digest, :description, "
    ":created_by, :created_at, :expires_at, :meta, :max_expires_at, :mac)"
)
RENEW_TOKEN = (
    "UPDATE strongroom_tokens SET expires_at = :expires_at, mac = :mac "
    "WHERE id = :id AND revoked_at IS NULL"
)
REVOKE_TOKEN = (
    "UPDATE strongroom_tokens SET revoked_at = :at, revoked_by = :by, mac = :mac "
    "WHERE id = :id AND revoked_at IS NULL"
)
SET_TOKEN_MAC = "UPDATE strongroom_tokens SET mac = :mac WHERE id = :id"
POLICY_COLUMNS = "name, description, grants, updated_by, updated_at, mac"
LIST_POLICIES = f"SELECT {POLICY_COLUMNS} FROM strongroom_policies ORDER BY name"
GET_POLICY = f"SELECT {POLICY_COLUMNS} FROM strongroom_policies WHERE name = :name"
PUT_POLICY = {
    "sqlite": (
        "INSERT INTO strongroom_policies (name, description, grants, updated_by, updated_at, mac) "
        "VALUES (:name, :description, :grants, :by, :at, :mac) ON CONFLICT (name) DO UPDATE SET "
        "description = excluded.description, grants = excluded.grants, "
        "updated_by = excluded.updated_by, updated_at = excluded.updated_at, mac = excluded.mac"
    ),
    "postgres": (
        "INSERT INTO strongroom_policies (name, description, grants, updated_by, updated_at, mac) "
        "VALUES (:name, :description, :grants::jsonb, :by, :at, :mac) ON CONFLICT (name) DO "
        "UPDATE SET description = excluded.description, grants = excluded.grants, "
        "updated_by = excluded.updated_by, updated_at = excluded.updated_at, mac = excluded.mac"
    ),
}
DELETE_POLICY = "DELETE FROM strongroom_policies WHERE name = :name"
UNBIND_POLICY = "DELETE FROM strongroom_identity_policies WHERE policy = :name"
POLICIES_OF = (
    "SELECT identity, policy, mac FROM strongroom_identity_policies WHERE identity = :identity "
    "ORDER BY policy"
)
LIST_BINDINGS = (
    "SELECT identity, policy, mac FROM strongroom_identity_policies ORDER BY identity, policy"
)
ATTACH = (
    "INSERT INTO strongroom_identity_policies (identity, policy, mac) "
    "VALUES (:identity, :policy, :mac) ON CONFLICT DO NOTHING"
)
SET_POLICY_MAC = "UPDATE strongroom_policies SET mac = :mac WHERE name = :name"
SET_BINDING_MAC = (
    "UPDATE strongroom_identity_policies SET mac = :mac "
    "WHERE identity = :identity AND policy = :policy"
)
TOKENS, POLICIES, BINDINGS = (
    "strongroom_tokens",
    "strongroom_policies",
    "strongroom_identity_policies",
)
DETACH = "DELETE FROM strongroom_identity_policies WHERE identity = :identity AND policy = :policy"


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
    #: A login token's provenance and role policies (None for a token made by hand).
    meta: dict[str, Any] | None = None
    #: How far renewals may extend a login token (None: it cannot be renewed).
    max_expires_at: datetime | None = None

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
            "auth_method": (self.meta or {}).get("method", "token"),
            "role": (self.meta or {}).get("role"),
            "max_expires_at": self.max_expires_at,
        }


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    name: str
    description: str
    grants: list[dict[str, Any]]
    updated_by: str
    updated_at: datetime


def token_from_row(row: Any, micros: bool) -> tuple[TokenRecord, bytes | None]:
    data = dict(row)
    mac = data.pop("mac")
    if micros:
        for key in TIMES:
            if key in data:
                data[key] = from_micros(data[key])
    data["digest"] = bytes(data["digest"])
    data["meta"] = json.loads(data["meta"]) if data.get("meta") else None
    return TokenRecord(**data), mac


def policy_from_row(row: Any, micros: bool) -> tuple[PolicyRecord, bytes | None]:
    data = dict(row)
    mac = data.pop("mac")
    data["grants"] = json.loads(data["grants"])
    if micros:
        data["updated_at"] = from_micros(data["updated_at"])
    return PolicyRecord(**data), mac


def token_fields(record: TokenRecord) -> tuple[object, ...]:
    base = (record.id, record.identity, record.digest, record.created_at, record.expires_at,
            record.revoked_at)  # fmt: skip
    if record.meta is None and record.max_expires_at is None:
        return base  # as before login tokens existed, so older rows keep their MACs
    return (*base, meta_text(record.meta), record.max_expires_at)


def meta_text(meta: dict[str, Any] | None) -> str | None:
    return None if meta is None else json.dumps(meta, sort_keys=True, separators=(",", ":"))


def policy_fields(name: str, grants: list[dict[str, Any]]) -> tuple[object, ...]:
    """A policy's name and grants, canonical (PostgreSQL's jsonb reorders keys as it likes)."""
    return (name, json.dumps(grants, sort_keys=True, separators=(",", ":")))


def _adopt_params(mac: RowMac, table: str, row: Any, micros: bool) -> dict[str, Any]:
    if table == TOKENS:
        record, _ = token_from_row({**dict(row), "mac": None}, micros)
        return {"id": record.id, "mac": mac.mac(TOKENS, token_fields(record))}
    if table == POLICIES:
        grants = json.loads(row["grants"])
        return {"name": row["name"], "mac": mac.mac(POLICIES, policy_fields(row["name"], grants))}
    fields = (row["identity"], row["policy"])
    return {"identity": row["identity"], "policy": row["policy"], "mac": mac.mac(BINDINGS, fields)}


# Migration 11 runs before the login columns of migration 13 exist: it reads the columns of then.
LEGACY_TOKENS = (
    "SELECT id, identity, digest, description, created_by, created_at, expires_at, revoked_at, "
    "revoked_by, mac FROM strongroom_tokens ORDER BY created_at, id"
)
ADOPT = (
    (TOKENS, LEGACY_TOKENS, SET_TOKEN_MAC),
    (POLICIES, LIST_POLICIES, SET_POLICY_MAC),
    (BINDINGS, LIST_BINDINGS, SET_BINDING_MAC),
)


def sqlite_access_hook(mac: RowMac) -> Any:
    """Migration 11's hook: MAC the token, policy and binding rows made before row MACs."""

    def adopt(conn: Any) -> None:
        for table, select, update in ADOPT:
            for row in conn.execute(SQLITE.compile(select, {})[0]).fetchall():
                conn.execute(*SQLITE.compile(update, _adopt_params(mac, table, row, True)))

    return adopt


def postgres_access_hook(mac: RowMac) -> Any:
    async def adopt(conn: Any) -> None:
        for table, select, update in ADOPT:
            text = select.replace("grants,", "grants::text AS grants,")
            for row in await conn.fetch(POSTGRES.compile(text, {})[0]):
                sql, values = POSTGRES.compile(update, _adopt_params(mac, table, row, False))
                await conn.execute(sql, *values)

    return adopt
