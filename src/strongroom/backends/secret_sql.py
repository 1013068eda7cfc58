"""The secret store's SQL, written once for SQLite and PostgreSQL, and the checks every row
read from it passes before it is trusted.

Queries use ``:name`` parameters, compiled once per dialect (``{tags}`` and ``{json}`` mark the
one column PostgreSQL keeps as jsonb). Only fixed fragments are joined into SQL text; values
are always bound. Each secret and version row carries a MAC over its security-relevant fields
(:mod:`strongroom.core.integrity`): :func:`checked` verifies them, and the counters that tie the
rows of one secret together, before a row becomes properties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strongroom.backends.base import is_deleted, name_key, not_found
from strongroom.core.errors import TamperedError
from strongroom.core.integrity import RowMac
from strongroom.core.models import VersionProperties
from strongroom.db.dialect import POSTGRES, SQLITE, Dialect, Prepared
from strongroom.db.rows import props_from_row

__all__ = [
    "QUERIES",
    "SECRETS",
    "VERSIONS",
    "Queries",
    "SecretState",
    "adoption",
    "advance",
    "checked",
    "checked_live",
    "checked_secret",
    "revoked_params",
    "revoking",
    "secret_fields",
    "version_fields",
    "version_params",
]

SECRETS, VERSIONS = "secrets", "secret_versions"

_COLUMNS = (
    "s.name, s.deleted_at, s.purge_at, s.current_seq, s.created_at AS s_created, "
    "s.gen AS s_gen, s.revoked_gen, s.mac AS s_mac, v.seq, v.version, v.secret_type, "
    "v.content_type, {tags}, v.enabled, v.created_at, v.updated_at, v.expires_at, "
    "v.not_before, v.revoked_at, v.gen AS v_gen, v.mac AS v_mac"
)
_SEALED = ", v.ciphertext, v.wrapped_dek, v.kek_version"
_MAX_SEQ = ", (SELECT max(m.seq) FROM secret_versions m WHERE m.name_key = s.name_key) AS max_seq"
_FROM = " FROM secrets s "
_CURRENT = "JOIN secret_versions v ON v.name_key = s.name_key AND v.seq = s.current_seq "
_TEXT = {
    "select_current": (
        "SELECT " + _COLUMNS + _SEALED + _MAX_SEQ + _FROM + "LEFT " + _CURRENT
        + "WHERE s.name_key = :key"
    ),
    "select_version": (
        "SELECT " + _COLUMNS + _SEALED + _MAX_SEQ + _FROM
        + "LEFT JOIN secret_versions v ON v.name_key = s.name_key AND v.version = :version "
        + "WHERE s.name_key = :key"
    ),
    "list_live": (
        "SELECT " + _COLUMNS + _MAX_SEQ + _FROM + _CURRENT
        + "WHERE s.deleted_at IS NULL ORDER BY s.name_key"
    ),
    "list_versions": (
        "SELECT " + _COLUMNS + _MAX_SEQ + _FROM
        + "LEFT JOIN secret_versions v ON v.name_key = s.name_key "
        + "WHERE s.name_key = :key ORDER BY v.seq DESC"
    ),
    "list_deleted": (
        "SELECT " + _COLUMNS + _MAX_SEQ + _FROM + _CURRENT
        + "WHERE s.deleted_at IS NOT NULL ORDER BY s.name_key"
    ),
    "get_deleted": (
        "SELECT " + _COLUMNS + _MAX_SEQ + _FROM + _CURRENT
        + "WHERE s.deleted_at IS NOT NULL AND s.name_key = :key"
    ),
    "secret_row": (
        "SELECT name, current_seq, created_at, gen, revoked_gen, deleted_at, purge_at, mac "
        "FROM secrets WHERE name_key = :key"
    ),
    "insert_secret": (
        "INSERT INTO secrets (name_key, name, current_seq, created_at, gen, mac) "
        "VALUES (:key, :name, 1, :created, 1, :mac) ON CONFLICT (name_key) DO NOTHING"
    ),
    "update_secret": (
        "UPDATE secrets SET current_seq = :seq, gen = :gen, revoked_gen = :revoked_gen, "
        "deleted_at = :deleted_at, purge_at = :purge_at, mac = :mac "
        "WHERE name_key = :key AND gen = :old_gen"
    ),
    "insert_version": (
        "INSERT INTO secret_versions (name_key, seq, version, secret_type, content_type, tags, "
        "enabled, created_at, updated_at, expires_at, not_before, ciphertext, wrapped_dek, "
        "kek_version, gen, mac) SELECT :key, :seq, :version, :secret_type, :content_type, "
        ":tags{json}, :enabled, :created, :created, :expires_at, :not_before, :ciphertext, "
        ":wrapped_dek, :kek_version, :gen, :mac WHERE EXISTS "
        "(SELECT 1 FROM secret_keyring WHERE version = :kek_version AND retired_at IS NULL)"
    ),
    "update_version": (
        "UPDATE secret_versions SET enabled = :enabled, expires_at = :expires_at, "
        "not_before = :not_before, tags = :tags{json}, content_type = :content_type, "
        "updated_at = :updated_at, revoked_at = :revoked_at, gen = :gen, mac = :mac "
        "WHERE name_key = :key AND seq = :seq"
    ),
    "versions_of": (
        "SELECT seq, version, enabled, created_at, updated_at, expires_at, not_before, "
        "revoked_at FROM secret_versions WHERE name_key = :key"
    ),
    "revoke_version": (
        "UPDATE secret_versions SET enabled = :enabled, revoked_at = :revoked_at, "
        "updated_at = :updated_at, gen = :gen, mac = :mac WHERE name_key = :key AND seq = :seq"
    ),
    "all_secrets": (
        "SELECT name_key, name, current_seq, created_at, deleted_at, purge_at FROM secrets"
    ),
    "adopt_secret": (
        "UPDATE secrets SET gen = 1, revoked_gen = :revoked_gen, mac = :mac "
        "WHERE name_key = :key"
    ),
    "purge": "DELETE FROM secrets WHERE name_key = :key",
    "purge_expired": "DELETE FROM secrets WHERE purge_at IS NOT NULL AND purge_at <= :now",
    "count": "SELECT count(*) AS n FROM secrets WHERE deleted_at IS NULL",
}  # fmt: skip


class Queries:
    """Every statement of the secret store, prepared for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        tags = "v.tags::text AS tags" if dialect is POSTGRES else "v.tags"
        json = "::jsonb" if dialect is POSTGRES else ""
        self.dialect = dialect
        self._prepared = {
            key: dialect.prepare(text.replace("{tags}", tags).replace("{json}", json))
            for key, text in _TEXT.items()
        }

    def __getitem__(self, key: str) -> Prepared:
        return self._prepared[key]


QUERIES = {"sqlite": Queries(SQLITE), "postgres": Queries(POSTGRES)}


def secret_fields(key: str, row: Any, prefix: str = "") -> tuple[object, ...]:
    """The MACed fields of a secret row (``prefix`` "s_" where a join renamed them)."""
    return (
        key, row["name"], row["current_seq"], row[f"{prefix}created" if prefix else "created_at"],
        row[f"{prefix}gen"], row["revoked_gen"], row["deleted_at"], row["purge_at"],
    )  # fmt: skip


def version_fields(key: str, row: Any, gen: int) -> tuple[object, ...]:
    """The MACed fields of a version row: what decides whether and when it may be read."""
    return (
        key, row["seq"], row["version"], bool(row["enabled"]), row["revoked_at"],
        row["expires_at"], row["not_before"], row["created_at"], gen,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class SecretState:
    """A secret row as verified: what a write needs to advance it."""

    name: str
    current_seq: int
    gen: int
    revoked_gen: int | None
    created_at: Any
    deleted_at: Any
    purge_at: Any


def checked_secret(
    mac: RowMac, key: str, row: Any, prefix: str = "", *, verify: bool = True
) -> SecretState:
    """The secret row's state once its MAC holds (``verify=False`` only for :func:`revoking`,
    which goes through whatever the row holds and rewrites it, revoked, with a fresh MAC)."""
    if verify:
        mac.check(SECRETS, secret_fields(key, row, prefix), row[f"{prefix}mac"], f"secret {key!r}")
    return SecretState(
        row["name"], row["current_seq"], row[f"{prefix}gen"], row["revoked_gen"],
        row[f"{prefix}created" if prefix else "created_at"], row["deleted_at"], row["purge_at"],
    )  # fmt: skip


def checked(
    mac: RowMac, row: Any, *, micros: bool, current: bool | None = None
) -> VersionProperties:
    """Properties of a joined secret/version row once both MACs and the counters hold.

    ``current=None`` means the row claims to be the current version (its seq is the pointer):
    then no newer version may exist, or the pointer was set back."""
    key = name_key(row["name"])
    state = checked_secret(mac, key, row, "s_")
    gen = row["v_gen"]
    what = f"secret {key!r} version {row['version']!r}"
    mac.check(VERSIONS, version_fields(key, row, gen), row["v_mac"], what)
    if gen > state.gen or (state.revoked_gen is not None and gen < state.revoked_gen):
        mac.tampered(VERSIONS, what + " (a row from another time)")
    is_current = row["seq"] == state.current_seq
    if is_current and row["max_seq"] is not None and row["max_seq"] != state.current_seq:
        mac.tampered(SECRETS, f"secret {key!r} (its current version was set back)")
    return props_from_row(row, micros=micros, current=is_current if current is None else current)


def checked_live(row: Any, name: str, version: str | None) -> Any:
    """The row of a live secret's version (not found and deleted raise; MACs: ``checked``)."""
    if row is None:
        raise not_found(name)
    if row["deleted_at"] is not None:
        raise is_deleted(name)
    if row["version"] is None:
        raise not_found(name, version)
    return row


def advance(
    mac: RowMac, key: str, state: SecretState, **changes: Any
) -> tuple[SecretState, dict[str, Any]]:
    """The secret's next state (generation + 1, with ``changes``) and the parameters of the
    conditional update that writes it (it applies only if nobody advanced it meanwhile)."""
    fields = {
        "current_seq": state.current_seq, "revoked_gen": state.revoked_gen,
        "deleted_at": state.deleted_at, "purge_at": state.purge_at, **changes,
    }  # fmt: skip
    new = SecretState(
        state.name, fields["current_seq"], state.gen + 1, fields["revoked_gen"],
        state.created_at, fields["deleted_at"], fields["purge_at"],
    )  # fmt: skip
    row = {
        "name": new.name, "current_seq": new.current_seq, "created_at": new.created_at,
        "gen": new.gen, "revoked_gen": new.revoked_gen, "deleted_at": new.deleted_at,
        "purge_at": new.purge_at,
    }  # fmt: skip
    params = {
        "key": key, "seq": new.current_seq, "gen": new.gen, "revoked_gen": new.revoked_gen,
        "deleted_at": new.deleted_at, "purge_at": new.purge_at, "old_gen": state.gen,
        "mac": mac.mac(SECRETS, secret_fields(key, row)),
    }  # fmt: skip
    return new, params


def revoking(mac: RowMac, key: str, row: Any) -> tuple[SecretState, dict[str, Any]]:
    """The secret revoked: its next state and the parameters of the update that writes it.
    A row whose MAC fails is revoked all the same (the failure is alerted by the check): an
    emergency is never blocked by what it responds to."""
    try:
        state = checked_secret(mac, key, row)
    except TamperedError:
        state = checked_secret(mac, key, row, verify=False)
    return advance(mac, key, state, revoked_gen=state.gen + 1)


def version_params(mac: RowMac, key: str, values: dict[str, Any], gen: int) -> dict[str, Any]:
    """``values`` (a version's columns, times as the dialect stores them) with gen and MAC."""
    row = {**values, "seq": values["seq"], "created_at": values["created"]}
    return {
        **values,
        "key": key,
        "gen": gen,
        "mac": mac.mac(VERSIONS, version_fields(key, row, gen)),
    }


def revoked_params(
    mac: RowMac, key: str, row: Any, gen: int, now: Any
) -> tuple[dict[str, Any], bool]:
    """A version row revoked (if it was not already) at generation ``gen``: the parameters of
    ``revoke_version`` and whether this revocation is the one that revoked it."""
    fresh = row["revoked_at"] is None
    values = {
        "seq": row["seq"], "version": row["version"], "enabled": False,
        "revoked_at": now if fresh else row["revoked_at"],
        "updated_at": now if fresh else row["updated_at"],
        "expires_at": row["expires_at"], "not_before": row["not_before"],
        "created": row["created_at"],
    }  # fmt: skip
    return version_params(mac, key, values, gen), fresh


def adoption(
    mac: RowMac, secret: Any, versions: list[Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """MACs for the rows of a store made before row MACs (the upgrade trusts them as they
    stand: there is nothing older to check them against). Generation 1 for everything; a
    secret with a revoked version counts as revoked at generation 1."""
    key = secret["name_key"]
    revoked_gen = 1 if any(v["revoked_at"] is not None for v in versions) else None
    row = {**dict(secret), "gen": 1, "revoked_gen": revoked_gen}
    secret_params = {
        "key": key, "revoked_gen": revoked_gen, "mac": mac.mac(SECRETS, secret_fields(key, row))
    }  # fmt: skip
    version_rows = []
    for v in versions:
        values = {
            "seq": v["seq"], "version": v["version"], "enabled": bool(v["enabled"]),
            "revoked_at": v["revoked_at"], "updated_at": v["updated_at"],
            "expires_at": v["expires_at"], "not_before": v["not_before"],
            "created": v["created_at"],
        }  # fmt: skip
        version_rows.append(version_params(mac, key, values, 1))
    return secret_params, version_rows
