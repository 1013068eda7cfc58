"""The SQLite store's keyring: made on first use, re-wrapped when older than the derived
wrapping key, and rotated (every data key re-wrapped) while reads go on."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from strongroom.backends.base import KeyRotationResult, RewrapProgress
from strongroom.core.clock import system_clock
from strongroom.core.crypto import Envelope, Keyring, KeyringRow, MasterKey, Sealed
from strongroom.db.rows import to_micros

__all__ = ["ensure_keyring", "keyring_rows", "rotate"]

T = TypeVar("T")
Write = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
Query = Callable[..., list[sqlite3.Row]]
_REWRAP_BATCH = 500
_INSERT_KEYRING = (
    "INSERT INTO secret_keyring (version, wrapped_key, created_at, wrapping) VALUES (?, ?, ?, 2)"
)


def keyring_rows(rows: list[Any]) -> list[KeyringRow]:
    return [KeyringRow(r["version"], r["wrapped_key"], r["wrapping"]) for r in rows]


def ensure_keyring(master: MasterKey, conn: sqlite3.Connection) -> None:
    """A first keyring version in a new store; in an old one, rows wrapped by the master key
    itself re-wrapped under the derived wrapping key."""
    rows = keyring_rows(
        conn.execute("SELECT version, wrapped_key, wrapping FROM secret_keyring").fetchall()
    )
    if not rows:
        row = Keyring.new_row(master, 1)
        conn.execute(_INSERT_KEYRING, (row.version, row.wrapped_key, to_micros(system_clock())))
    for row in Keyring.upgrade(master, rows):
        conn.execute(
            "UPDATE secret_keyring SET wrapped_key = ?, wrapping = ? WHERE version = ?",
            (row.wrapped_key, row.wrapping, row.version),
        )


async def rotate(
    master: MasterKey,
    write: Write[Any],
    query: Query,
    load: Callable[[], Envelope],
    progress: RewrapProgress | None,
) -> KeyRotationResult:
    """Add a keyring version, re-wrap every data key under it, then drop the old ones.

    Reads keep working throughout: each row names the keyring version that wraps it, and old
    versions are deleted only when no row refers to them (a foreign key enforces it). One
    found unfinished in the file (another process's, or one cut short by a crash) is
    completed rather than stacked upon. Data keys move, row MACs do not: they cover no key.
    """
    now = to_micros(system_clock())

    def start(conn: sqlite3.Connection) -> tuple[int, list[int]]:
        previous = [r[0] for r in conn.execute("SELECT version FROM secret_keyring")]
        unfinished = conn.execute(
            "SELECT 1 FROM secret_keyring WHERE retired_at IS NOT NULL LIMIT 1"
        ).fetchone()
        if unfinished is not None:
            return max(previous), previous
        row = Keyring.new_row(master, max(previous) + 1)
        conn.execute(_INSERT_KEYRING, (row.version, row.wrapped_key, now))
        conn.execute(
            "UPDATE secret_keyring SET retired_at = ? WHERE version < ? AND retired_at IS NULL",
            (now, row.version),
        )
        return row.version, previous

    new_version, previous = await write(start)
    envelope = load()
    rewrapped = 0
    total = int(
        query("SELECT count(*) AS n FROM secret_versions WHERE kek_version <> ?", (new_version,))[
            0
        ]["n"]
    )
    while True:
        if progress is not None:
            progress(rewrapped, max(total, rewrapped))
        batch = query(
            "SELECT name_key, seq, version, ciphertext, wrapped_dek, kek_version "
            "FROM secret_versions WHERE kek_version <> ? LIMIT ?",
            (new_version, _REWRAP_BATCH),
        )
        if not batch:
            # Imported here: Key Vault keys bring RSA and key serialization, which every
            # start of a store would pay for otherwise (and only a key rotation needs).
            from strongroom.backends.vault_keys import REWRAP, rewrap_params  # noqa: PLC0415

            select, update = REWRAP["sqlite"]
            keys = query(select.text, select.args({"kek": new_version}))
            if keys:  # Key Vault keys' private halves: a handful, in one transaction
                await write(
                    functools.partial(
                        _rewrap_keys, update.text, rewrap_params(envelope, keys, update)
                    )
                )
            if await write(lambda c: _drop_old_keys(c, new_version)):
                break
            continue
        updates = []
        for r in batch:
            sealed = Sealed(r["ciphertext"], r["wrapped_dek"], r["kek_version"])
            fresh = envelope.rewrap(r["name_key"], r["version"], sealed)
            updates.append(
                (fresh.wrapped_dek, fresh.kek_version, r["name_key"], r["seq"], r["kek_version"])
            )

        def apply(conn: sqlite3.Connection, rows: list[Any] = updates) -> int:
            conn.executemany(
                "UPDATE secret_versions SET wrapped_dek = ?, kek_version = ? "
                "WHERE name_key = ? AND seq = ? AND kek_version = ?",
                rows,
            )
            return len(rows)

        rewrapped += await write(apply)
    load()
    return KeyRotationResult(new_version, previous, rewrapped)


def _rewrap_keys(sql: str, rows: list[list[Any]], conn: sqlite3.Connection) -> None:
    conn.executemany(sql, rows)


def _drop_old_keys(conn: sqlite3.Connection, keep: int) -> bool:
    """Delete retired keyring versions; False if a row still refers to one (caller re-wraps)."""
    try:
        conn.execute("DELETE FROM secret_keyring WHERE version <> ?", (keep,))
    except sqlite3.IntegrityError:
        return False
    return True
