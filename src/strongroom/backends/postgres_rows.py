"""The PostgreSQL store's statements, each run inside a transaction its caller holds.

:class:`~strongroom.backends.postgres.PostgresStore` owns the pool, the keyring and the
caches; what each change writes, row by row and MAC by MAC, is here, so that the store reads
as the protocol and this module as the SQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from strongroom.backends.base import (
    VersionBuilder,
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
from strongroom.backends.write_batches import Failed
from strongroom.core.crypto import Envelope, Sealed
from strongroom.core.errors import StrongroomError
from strongroom.core.integrity import RowMac
from strongroom.core.models import NewVersion, PropertyChanges, VersionProperties
from strongroom.db.rows import tags_to_json

__all__ = [
    "Q",
    "StaleKeyring",
    "create",
    "fetch_live",
    "move",
    "postgres_secret_hook",
    "revoke_versions",
    "row",
    "run",
    "update_batch",
    "update_properties",
]

Q = QUERIES["postgres"]
_LOCKED = Q["secret_row"].text + " FOR UPDATE"


class StaleKeyring(Exception):
    """The keyring version used to seal was retired by a key rotation: reseal and retry."""


async def run(conn: Any, key: str, params: dict[str, Any]) -> str:
    status: str = await conn.execute(Q[key].text, *Q[key].args(params))
    return status


async def row(conn: Any, key: str, params: dict[str, Any]) -> Any:
    return await conn.fetchrow(Q[key].text, *Q[key].args(params))


def postgres_secret_hook(mac: RowMac) -> Any:
    """Migration 10's hook: MAC the secret rows a store made before row MACs."""

    async def adopt(conn: Any) -> None:
        for secret in await conn.fetch(Q["all_secrets"].text):
            versions = await conn.fetch(Q["versions_of"].text, secret["name_key"])
            secret_params, version_rows = adoption(mac, secret, list(versions))
            await run(conn, "adopt_secret", secret_params)
            for params in version_rows:
                await run(conn, "revoke_version", params)  # writes exactly the MACed columns

    return adopt


async def fetch_live(conn: Any, name: str, version: str | None) -> Any:
    """The joined row of ``version`` (None: the current one) of a live secret."""
    which = "select_current" if version is None else "select_version"
    found = await row(conn, which, {"key": name_key(name), "version": version})
    return checked_live(found, name, version)


async def _locked_secret(conn: Any, key: str, name: str) -> Any:
    found = await conn.fetchrow(_LOCKED, key)
    if found is None:
        raise not_found(name)
    return found


async def create(
    conn: Any, mac: RowMac, key: str, new: NewVersion, sealed: Sealed
) -> VersionProperties:
    """A new secret and its first version."""
    first = {"name": new.name, "current_seq": 1, "created_at": new.created_at, "gen": 1,
             "revoked_gen": None, "deleted_at": None, "purge_at": None}  # fmt: skip
    params = {"key": key, "name": new.name, "created": new.created_at,
              "mac": mac.mac(SECRETS, secret_fields(key, first))}  # fmt: skip
    if await run(conn, "insert_secret", params) != "INSERT 0 1":
        existing = await row(conn, "secret_row", {"key": key})
        raise name_conflict(new.name, deleted=existing is not None and bool(existing["deleted_at"]))
    return await _insert_version(conn, mac, key, new.name, (1, 1), new, sealed)


async def update_batch(
    conn: Any, mac: RowMac, key: str, items: list[tuple[str, VersionBuilder]], envelope: Envelope
) -> list[VersionProperties | Failed]:
    """Versions after the current one, each built from the one before it (a refused build
    fails its writer alone), the secret's row moved past all of them at once: the rows are
    those of the same writes one after another."""
    name = items[0][0]
    state = checked_secret(mac, key, await _locked_secret(conn, key, name))
    if state.deleted_at is not None:
        raise is_deleted(name)
    current = checked(mac, await fetch_live(conn, name, None), micros=False)
    built: list[tuple[NewVersion, bytes] | Failed] = []
    for _, build in items:
        try:
            new, value = build(current)
        except StrongroomError as exc:
            built.append(Failed(exc))
            continue
        built.append((new, value))
        current = new.written_as(state.name)
    moves, moved = [], state
    for _ in range(sum(not isinstance(one, Failed) for one in built)):
        moved, params = advance(mac, key, moved, current_seq=moved.current_seq + 1)
        moves.append((moved.current_seq, moved.gen))
    if moves:
        await run(conn, "update_secret", {**params, "old_gen": state.gen})
    at = iter(moves)
    results: list[VersionProperties | Failed] = []
    for one in built:
        if isinstance(one, Failed):
            results.append(one)
            continue
        new, value = one
        sealed = envelope.seal(key, new.version, value)
        results.append(await _insert_version(conn, mac, key, state.name, next(at), new, sealed))
    return results


async def _insert_version(
    conn: Any,
    mac: RowMac,
    key: str,
    name: str,
    at: tuple[int, int],
    new: NewVersion,
    sealed: Sealed,
) -> VersionProperties:
    """Insert version ``new`` at (sequence, generation) ``at``; its properties."""
    seq, gen = at
    values = {
        "seq": seq, "version": new.version, "secret_type": new.secret_type.value,
        "content_type": new.content_type, "tags": tags_to_json(new.tags),
        "enabled": new.enabled, "created": new.created_at, "revoked_at": None,
        "expires_at": new.expires_at, "not_before": new.not_before,
        "ciphertext": sealed.ciphertext, "wrapped_dek": sealed.wrapped_dek,
        "kek_version": sealed.kek_version,
    }  # fmt: skip
    status = await run(conn, "insert_version", version_params(mac, key, values, gen))
    if status != "INSERT 0 1":
        raise StaleKeyring
    return new.written_as(name)


async def update_properties(
    conn: Any, mac: RowMac, key: str, name: str, version: str | None, changes: PropertyChanges
) -> VersionProperties:
    """Apply ``changes`` to one version (None: the current one), under the secret's lock."""
    await _locked_secret(conn, key, name)
    found = await fetch_live(conn, name, version)
    props = changes.apply(checked(mac, found, micros=False))
    moved, params = advance(mac, key, checked_secret(mac, key, found, "s_"))
    await run(conn, "update_secret", params)
    values = {
        "seq": found["seq"], "version": found["version"], "enabled": props.enabled,
        "expires_at": props.expires_at, "not_before": props.not_before,
        "tags": tags_to_json(props.tags), "content_type": props.content_type,
        "updated_at": props.updated_at, "revoked_at": found["revoked_at"],
        "created": found["created_at"],
    }  # fmt: skip
    await run(conn, "update_version", version_params(mac, key, values, moved.gen))
    return props


async def move(conn: Any, mac: RowMac, key: str, name: str, deleted: bool, **changes: Any) -> None:
    """Soft-delete (``deleted=False``: the secret must be live) or recover it."""
    state = checked_secret(mac, key, await _locked_secret(conn, key, name))
    if (state.deleted_at is not None) != deleted:
        raise is_deleted(name) if not deleted else not_found(name)
    await run(conn, "update_secret", advance(mac, key, state, **changes)[1])


async def revoke_versions(conn: Any, mac: RowMac, key: str, name: str, revoked_at: datetime) -> int:
    """Revoke every version, even of a secret whose rows fail their MACs (the failure is
    alerted): an emergency is never blocked by what it responds to."""
    moved, params = revoking(mac, key, await _locked_secret(conn, key, name))
    await run(conn, "update_secret", params)
    count = 0
    for version in await conn.fetch(Q["versions_of"].text, key):
        values, fresh = revoked_params(mac, key, version, moved.gen, revoked_at)
        await run(conn, "revoke_version", values)
        count += int(fresh)
    return count
