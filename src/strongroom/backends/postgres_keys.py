"""The PostgreSQL store's keyring: made on first use, re-wrapped when older than the derived
wrapping key, and rotated (every data key re-wrapped) under an advisory lock."""

from __future__ import annotations

from typing import Any

import asyncpg

from strongroom.backends.base import KeyRotationResult, RewrapProgress
from strongroom.backends.vault_keys import REWRAP, rewrap_params
from strongroom.core.crypto import Envelope, Keyring, KeyringRow, MasterKey, Sealed

__all__ = ["KEY_ROTATION_LOCK", "ensure_keyring", "load_keyring", "rotate_locked"]

KEY_ROTATION_LOCK = 0x53524B524F54  # advisory lock: one master-key rotation at a time
_REWRAP_BATCH = 500
_INSERT_KEYRING = (
    "INSERT INTO secret_keyring (version, wrapped_key, created_at, wrapping) "
    "VALUES ($1, $2, now(), 2)"
)


async def ensure_keyring(master: MasterKey, conn: Any) -> None:
    """A first keyring version in a new store; a store made before the derived wrapping key
    has its keyring re-wrapped once. Runs in the caller's transaction."""
    await conn.execute("LOCK TABLE secret_keyring IN EXCLUSIVE MODE")
    rows = await _rows(conn)
    if not rows:
        row = Keyring.new_row(master, 1)
        await conn.execute(_INSERT_KEYRING, row.version, row.wrapped_key)
    for row in Keyring.upgrade(master, rows):
        await conn.execute(
            "UPDATE secret_keyring SET wrapped_key = $1, wrapping = $2 WHERE version = $3",
            row.wrapped_key,
            row.wrapping,
            row.version,
        )


async def _rows(conn: Any) -> list[KeyringRow]:
    found = await conn.fetch("SELECT version, wrapped_key, wrapping FROM secret_keyring")
    return [KeyringRow(r["version"], r["wrapped_key"], r["wrapping"]) for r in found]


async def load_keyring(master: MasterKey, conn: Any) -> Envelope:
    return Envelope(Keyring.load(master, await _rows(conn)))


async def rotate_locked(
    master: MasterKey, conn: Any, progress: RewrapProgress | None
) -> tuple[KeyRotationResult, Envelope]:
    """Add a keyring version, re-wrap every data key under it, drop the old versions.

    Readers in any process keep working: a row names the keyring version that wraps it, a
    process that meets an unknown version reloads the keyring, and a foreign key keeps each
    old version until no row refers to it. Writers that sealed under a retired version are
    refused by the insert and reseal. Row MACs cover no key, so they stay as they are.
    """
    async with conn.transaction():
        previous = [r["version"] for r in await conn.fetch("SELECT version FROM secret_keyring")]
        row = Keyring.new_row(master, max(previous) + 1)
        await conn.execute(_INSERT_KEYRING, row.version, row.wrapped_key)
        await conn.execute(
            "UPDATE secret_keyring SET retired_at = now() "
            "WHERE version < $1 AND retired_at IS NULL",
            row.version,
        )
    envelope = await load_keyring(master, conn)
    rewrapped = 0
    total = int(
        await conn.fetchval(
            "SELECT count(*) FROM secret_versions WHERE kek_version <> $1", row.version
        )
    )
    while True:
        if progress is not None:
            progress(rewrapped, max(total, rewrapped))
        batch = await conn.fetch(
            "SELECT name_key, seq, version, ciphertext, wrapped_dek, kek_version "
            "FROM secret_versions WHERE kek_version <> $1 LIMIT $2",
            row.version,
            _REWRAP_BATCH,
        )
        if not batch:
            select, update = REWRAP["postgres"]
            keys = await conn.fetch(select.text, *select.args({"kek": row.version}))
            if keys:  # Key Vault keys' private halves: a handful, in one transaction
                async with conn.transaction():
                    await conn.executemany(update.text, rewrap_params(envelope, keys, update))
            try:
                await conn.execute("DELETE FROM secret_keyring WHERE version <> $1", row.version)
            except asyncpg.ForeignKeyViolationError:
                continue  # a writer sealed under a retired key meanwhile
            break
        updates = []
        for r in batch:
            sealed = Sealed(r["ciphertext"], r["wrapped_dek"], r["kek_version"])
            fresh = envelope.rewrap(r["name_key"], r["version"], sealed)
            updates.append(
                (fresh.wrapped_dek, fresh.kek_version, r["name_key"], r["seq"], r["kek_version"])
            )
        async with conn.transaction():
            await conn.executemany(
                "UPDATE secret_versions SET wrapped_dek = $1, kek_version = $2 "
                "WHERE name_key = $3 AND seq = $4 AND kek_version = $5",
                updates,
            )
        rewrapped += len(updates)
    envelope = await load_keyring(master, conn)
    return KeyRotationResult(row.version, previous, rewrapped), envelope
