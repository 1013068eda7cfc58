"""The SQLite store's write jobs: each runs on the writer thread, inside the transaction of the
group commit that carries it.

:class:`~strongroom.backends.sqlite.SqliteStore` owns the connections, the keyring and the
caches; what each change writes, row by row and MAC by MAC, is here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from strongroom.backends.base import (
    VersionBuilder,
    WriteMode,
    is_deleted,
    name_conflict,
    name_key,
    not_found,
)
from strongroom.backends.secret_sql import (
    QUERIES,
    SECRETS,
    adoption,
    advance,
    checked,
    checked_live,
    checked_secret,
    revoked_params,
    revoking,
    secret_fields,
    version_params,
)
from strongroom.core.crypto import Envelope, Sealed
from strongroom.core.integrity import RowMac
from strongroom.core.models import NewVersion, PropertyChanges, VersionProperties
from strongroom.db.rows import tags_to_json, to_micros

__all__ = [
    "Q",
    "StaleKeyring",
    "insert",
    "move",
    "purge",
    "revoke_versions",
    "run",
    "sqlite_secret_hook",
    "update_built",
    "update_properties",
]

Q = QUERIES["sqlite"]


class StaleKeyring(Exception):
    """The keyring version used to seal was retired by a key rotation: reseal and retry."""


def run(conn: sqlite3.Connection, key: str, params: dict[str, Any]) -> sqlite3.Cursor:
    return conn.execute(Q[key].text, Q[key].args(params))


def sqlite_secret_hook(mac: RowMac) -> Callable[[sqlite3.Connection], None]:
    """Migration 10's hook: MAC the secret rows a store made before row MACs."""

    def adopt(conn: sqlite3.Connection) -> None:
        for secret in run(conn, "all_secrets", {}).fetchall():
            versions = run(conn, "versions_of", {"key": secret["name_key"]}).fetchall()
            secret_params, version_rows = adoption(mac, secret, versions)
            run(conn, "adopt_secret", secret_params)
            for params in version_rows:
                run(conn, "revoke_version", params)  # writes exactly the MACed columns

    return adopt


def _secret(conn: sqlite3.Connection, key: str, name: str) -> Any:
    row = run(conn, "secret_row", {"key": key}).fetchone()
    if row is None:
        raise not_found(name)
    return row


def update_built(
    conn: sqlite3.Connection, mac: RowMac, name: str, build: VersionBuilder, envelope: Envelope
) -> VersionProperties:
    """A new version built from the current one's properties, read in this transaction."""
    key = name_key(name)
    row = run(conn, "select_current", {"key": key, "version": None}).fetchone()
    new, value = build(checked(mac, checked_live(row, name, None), micros=True))
    return insert(conn, mac, new, envelope.seal(key, new.version, value), WriteMode.UPDATE)


def insert(
    conn: sqlite3.Connection, mac: RowMac, new: NewVersion, sealed: Sealed, mode: WriteMode
) -> VersionProperties:
    """A new secret (CREATE) or a new current version of a live one (UPDATE)."""
    key = name_key(new.name)
    created = to_micros(new.created_at)
    row = run(conn, "secret_row", {"key": key}).fetchone()
    if mode is WriteMode.CREATE:
        if row is not None:
            raise name_conflict(new.name, deleted=row["deleted_at"] is not None)
        name, seq, gen = new.name, 1, 1
        first = {"name": name, "current_seq": 1, "created_at": created, "gen": 1,
                 "revoked_gen": None, "deleted_at": None, "purge_at": None}  # fmt: skip
        secret_mac = mac.mac(SECRETS, secret_fields(key, first))
        run(
            conn, "insert_secret", {"key": key, "name": name, "created": created, "mac": secret_mac}
        )
    else:
        if row is None:
            raise not_found(new.name)
        state = checked_secret(mac, key, row)
        if state.deleted_at is not None:
            raise is_deleted(new.name)
        moved, params = advance(mac, key, state, current_seq=state.current_seq + 1)
        run(conn, "update_secret", params)
        name, seq, gen = state.name, moved.current_seq, moved.gen
    values = {
        "seq": seq, "version": new.version, "secret_type": new.secret_type.value,
        "content_type": new.content_type, "tags": tags_to_json(new.tags),
        "enabled": int(new.enabled), "created": created, "revoked_at": None,
        "expires_at": to_micros(new.expires_at), "not_before": to_micros(new.not_before),
        "ciphertext": sealed.ciphertext, "wrapped_dek": sealed.wrapped_dek,
        "kek_version": sealed.kek_version,
    }  # fmt: skip
    if run(conn, "insert_version", version_params(mac, key, values, gen)).rowcount != 1:
        raise StaleKeyring
    return new.written_as(name)


def update_properties(
    conn: sqlite3.Connection,
    mac: RowMac,
    name: str,
    version: str | None,
    changes: PropertyChanges,
) -> VersionProperties:
    """Apply ``changes`` to one version (None: the current one)."""
    key = name_key(name)
    which = "select_current" if version is None else "select_version"
    row = checked_live(run(conn, which, {"key": key, "version": version}).fetchone(), name, version)
    props = changes.apply(checked(mac, row, micros=True))
    moved, params = advance(mac, key, checked_secret(mac, key, row, "s_"))
    run(conn, "update_secret", params)
    values = {
        "seq": row["seq"], "version": row["version"], "enabled": int(props.enabled),
        "expires_at": to_micros(props.expires_at),
        "not_before": to_micros(props.not_before), "tags": tags_to_json(props.tags),
        "content_type": props.content_type, "updated_at": to_micros(props.updated_at),
        "revoked_at": row["revoked_at"], "created": row["created_at"],
    }  # fmt: skip
    run(conn, "update_version", version_params(mac, key, values, moved.gen))
    return props


def move(conn: sqlite3.Connection, mac: RowMac, name: str, deleted: bool, **changes: Any) -> None:
    """Soft-delete (``deleted=False``: the secret must be live) or recover it."""
    key = name_key(name)
    state = checked_secret(mac, key, _secret(conn, key, name))
    if (state.deleted_at is not None) != deleted:
        raise is_deleted(name) if not deleted else not_found(name)
    run(conn, "update_secret", advance(mac, key, state, **changes)[1])


def purge(conn: sqlite3.Connection, name: str, deleted_only: bool) -> None:
    """Remove a secret and its versions (only a soft-deleted one unless ``deleted_only`` is
    False)."""
    key = name_key(name)
    row = _secret(conn, key, name)
    if deleted_only and row["deleted_at"] is None:
        raise not_found(name)
    run(conn, "purge", {"key": key})


def revoke_versions(conn: sqlite3.Connection, mac: RowMac, name: str, when: int | None) -> int:
    """Revoke every version, even of a secret whose rows fail their MACs (the failure is
    alerted): an emergency is never blocked by what it responds to."""
    key = name_key(name)
    moved, params = revoking(mac, key, _secret(conn, key, name))
    run(conn, "update_secret", params)
    count = 0
    for version in run(conn, "versions_of", {"key": key}).fetchall():
        values, fresh = revoked_params(mac, key, version, moved.gen, when)
        run(conn, "revoke_version", values)
        count += int(fresh)
    return count
