"""The embedded default: one SQLite file in WAL mode, values envelope-encrypted.

Reads run on the caller's thread on a read connection (a primary-key lookup takes
microseconds, less than a hop to a thread pool); writes go to a group-committing writer thread
with ``synchronous=FULL``, so a write is on disk when its call returns.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from strongroom.backends.base import (
    KeyRotationResult,
    RewrapProgress,
    WriteMode,
    is_deleted,
    name_conflict,
    name_key,
    not_found,
)
from strongroom.core.clock import system_clock
from strongroom.core.crypto import (
    Envelope,
    Keyring,
    KeyringRow,
    MasterKey,
    Sealed,
    UnknownKeyVersion,
)
from strongroom.core.errors import DecryptionError, StoreUnavailableError
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    SecretValue,
    VersionProperties,
)
from strongroom.db.migrate import migrate_sqlite
from strongroom.db.rows import (
    from_micros,
    props_from_row,
    tags_to_json,
    to_micros,
)
from strongroom.db.sqlite_writer import SqliteWriter, acquire_writer, connect, release_writer

__all__ = ["SqliteStore"]

T = TypeVar("T")
_REWRAP_BATCH = 500
_COLUMNS = (
    "s.name, s.deleted_at, s.purge_at, s.current_seq, v.seq, v.version, v.secret_type, "
    "v.content_type, v.tags, v.enabled, v.created_at, v.updated_at, v.expires_at, v.not_before, "
    "v.revoked_at"
)
_SEALED = ", v.ciphertext, v.wrapped_dek, v.kek_version"
# Every query below is joined at import time from these fixed fragments; values are bound.
_FROM = " FROM secrets s "
_CURRENT = "JOIN secret_versions v ON v.name_key = s.name_key AND v.seq = s.current_seq "
_SELECT_CURRENT = (
    "SELECT " + _COLUMNS + _SEALED + _FROM + "LEFT " + _CURRENT + "WHERE s.name_key = ?"
)
_SELECT_VERSION = (
    "SELECT "
    + _COLUMNS
    + _SEALED
    + _FROM
    + "LEFT JOIN secret_versions v ON v.name_key = s.name_key AND v.version = ? "
    + "WHERE s.name_key = ?"
)
_LIST_LIVE = (
    "SELECT " + _COLUMNS + _FROM + _CURRENT + "WHERE s.deleted_at IS NULL ORDER BY s.name_key"
)
_LIST_VERSIONS = (
    "SELECT "
    + _COLUMNS
    + _FROM
    + "LEFT JOIN secret_versions v ON v.name_key = s.name_key "
    + "WHERE s.name_key = ? ORDER BY v.seq DESC"
)
_LIST_DELETED = (
    "SELECT " + _COLUMNS + _FROM + _CURRENT + "WHERE s.deleted_at IS NOT NULL ORDER BY s.name_key"
)
_GET_DELETED = (
    "SELECT " + _COLUMNS + _FROM + _CURRENT + "WHERE s.deleted_at IS NOT NULL AND s.name_key = ?"
)
_INSERT_VERSION = (
    "INSERT INTO secret_versions (name_key, seq, version, secret_type, content_type, tags, "
    "enabled, created_at, updated_at, expires_at, not_before, ciphertext, wrapped_dek, "
    "kek_version) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM secret_keyring WHERE version = ? AND retired_at IS NULL)"
)

_INSERT_KEYRING = (
    "INSERT INTO secret_keyring (version, wrapped_key, created_at, wrapping) VALUES (?, ?, ?, 2)"
)


class _StaleKeyring(Exception):
    """The keyring version used to seal was retired by a key rotation: reseal and retry."""


def _current(row: Any) -> bool:
    return bool(row["seq"] == row["current_seq"])


class SqliteStore:
    backend = "sqlite"

    def __init__(self, path: Path, master_key: MasterKey) -> None:
        self.path = path
        self._master = master_key
        self._writer: SqliteWriter | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._envelope: Envelope | None = None
        self._rotation_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Owner-only from the first byte; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            bootstrap = connect(str(self.path))
            try:
                migrate_sqlite(bootstrap)
            finally:
                bootstrap.close()
            self._writer = acquire_writer(str(self.path))
            self._read = connect(str(self.path), synchronous="NORMAL")
        except sqlite3.Error as exc:
            await self.close()
            raise StoreUnavailableError(f"cannot open SQLite store {self.path}: {exc}") from exc
        try:
            await self._write(self._ensure_keyring)
            self._load_keyring()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._writer is not None:
            release_writer(self._writer)
            self._writer = None
        if self._read is not None:
            self._read.close()
            self._read = None

    def _ensure_keyring(self, conn: sqlite3.Connection) -> None:
        """A first keyring version in a new store; in an old one, rows wrapped by the master
        key itself re-wrapped under the derived wrapping key."""
        rows = [
            KeyringRow(r["version"], r["wrapped_key"], r["wrapping"])
            for r in conn.execute("SELECT version, wrapped_key, wrapping FROM secret_keyring")
        ]
        if not rows:
            row = Keyring.new_row(self._master, 1)
            conn.execute(_INSERT_KEYRING, (row.version, row.wrapped_key, to_micros(system_clock())))
        for row in Keyring.upgrade(self._master, rows):
            conn.execute(
                "UPDATE secret_keyring SET wrapped_key = ?, wrapping = ? WHERE version = ?",
                (row.wrapped_key, row.wrapping, row.version),
            )

    def _load_keyring(self) -> Envelope:
        rows = [
            KeyringRow(r["version"], r["wrapped_key"], r["wrapping"])
            for r in self._query("SELECT version, wrapped_key, wrapping FROM secret_keyring")
        ]
        self._envelope = Envelope(Keyring.load(self._master, rows))
        return self._envelope

    # -- plumbing --------------------------------------------------------------------------

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailableError("the SQLite store is closed")
        return await self._writer.submit(job)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if self._read is None:
            raise StoreUnavailableError("the SQLite store is closed")
        try:
            with self._read_lock:
                return self._read.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite read failed ({type(exc).__name__})") from exc

    def _live_row(self, name: str, version: str | None) -> sqlite3.Row:
        key = name_key(name)
        rows = (
            self._query(_SELECT_CURRENT, (key,))
            if version is None
            else self._query(_SELECT_VERSION, (version, key))
        )
        if not rows:
            raise not_found(name)
        row = rows[0]
        if row["deleted_at"] is not None:
            raise is_deleted(name)
        if row["version"] is None:
            raise not_found(name, version)
        return row

    # -- the protocol ----------------------------------------------------------------------

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        for _attempt in range(3):
            envelope = self._envelope or self._load_keyring()
            sealed = envelope.seal(key, new.version, value)
            try:
                return await self._write(
                    functools.partial(self._insert, new=new, sealed=sealed, mode=mode)
                )
            except _StaleKeyring:
                self._load_keyring()
        raise StoreUnavailableError("the keyring kept changing during the write; try again")

    def _insert(
        self, conn: sqlite3.Connection, new: NewVersion, sealed: Sealed, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        created = to_micros(new.created_at)
        row = conn.execute(
            "SELECT name, current_seq, deleted_at FROM secrets WHERE name_key = ?", (key,)
        ).fetchone()
        if mode is WriteMode.CREATE:
            if row is not None:
                raise name_conflict(new.name, deleted=row["deleted_at"] is not None)
            name, seq = new.name, 1
            conn.execute(
                "INSERT INTO secrets (name_key, name, current_seq, created_at) VALUES (?, ?, 1, ?)",
                (key, name, created),
            )
        else:
            if row is None:
                raise not_found(new.name)
            if row["deleted_at"] is not None:
                raise is_deleted(new.name)
            name, seq = row["name"], row["current_seq"] + 1
            conn.execute("UPDATE secrets SET current_seq = ? WHERE name_key = ?", (seq, key))
        inserted = conn.execute(
            _INSERT_VERSION,
            (
                key, seq, new.version, new.secret_type.value, new.content_type,
                tags_to_json(new.tags), int(new.enabled), created, created,
                to_micros(new.expires_at), to_micros(new.not_before),
                sealed.ciphertext, sealed.wrapped_dek, sealed.kek_version, sealed.kek_version,
            ),
        )  # fmt: skip
        if inserted.rowcount != 1:
            raise _StaleKeyring
        return VersionProperties(
            name=name, version=new.version, secret_type=new.secret_type,
            content_type=new.content_type, tags=dict(new.tags), enabled=new.enabled,
            created_at=new.created_at, updated_at=new.created_at, expires_at=new.expires_at,
            not_before=new.not_before, current=True,
        )  # fmt: skip

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        for _attempt in range(3):
            row = self._live_row(name, version)
            props = props_from_row(row, micros=True, current=_current(row))
            sealed = Sealed(row["ciphertext"], row["wrapped_dek"], row["kek_version"])
            envelope = self._envelope or self._load_keyring()
            try:
                data = envelope.open(name_key(name), props.version, sealed)
            except UnknownKeyVersion:
                # Another process rotated the key: learn the keyring again, re-read the row.
                self._load_keyring()
                continue
            return SecretBundle(
                props, SecretValue(props.name, props.version, data, props.content_type)
            )
        # Still naming a keyring version the store does not hold: the row cannot be opened.
        raise DecryptionError("cannot decrypt")

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        row = self._live_row(name, version)
        return props_from_row(row, micros=True, current=_current(row))

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        key = name_key(name)

        def job(conn: sqlite3.Connection) -> VersionProperties:
            sql, params = (
                (_SELECT_CURRENT, (key,)) if version is None else (_SELECT_VERSION, (version, key))
            )
            row = conn.execute(sql, params).fetchone()
            if row is None:
                raise not_found(name)
            if row["deleted_at"] is not None:
                raise is_deleted(name)
            if row["version"] is None:
                raise not_found(name, version)
            props = changes.apply(props_from_row(row, micros=True, current=_current(row)))
            conn.execute(
                "UPDATE secret_versions SET enabled = ?, expires_at = ?, not_before = ?, "
                "tags = ?, content_type = ?, updated_at = ? WHERE name_key = ? AND seq = ?",
                (
                    int(props.enabled), to_micros(props.expires_at), to_micros(props.not_before),
                    tags_to_json(props.tags), props.content_type, to_micros(props.updated_at),
                    key, row["seq"],
                ),
            )  # fmt: skip
            return props

        return await self._write(job)

    async def list_secrets(self) -> list[VersionProperties]:
        rows = self._query(_LIST_LIVE)
        return [props_from_row(r, micros=True, current=True) for r in rows]

    async def list_versions(self, name: str) -> list[VersionProperties]:
        self._live_row(name, None)
        rows = self._query(_LIST_VERSIONS, (name_key(name),))
        return [props_from_row(r, micros=True, current=_current(r)) for r in rows]

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        key = name_key(name)

        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT deleted_at FROM secrets WHERE name_key = ?", (key,)
            ).fetchone()
            if row is None:
                raise not_found(name)
            if row["deleted_at"] is not None:
                raise is_deleted(name)
            conn.execute(
                "UPDATE secrets SET deleted_at = ?, purge_at = ? WHERE name_key = ?",
                (to_micros(deleted_at), to_micros(purge_at), key),
            )

        await self._write(job)
        return await self.get_deleted(name)

    def _deleted_rows(self, sql: str, params: tuple[Any, ...]) -> list[DeletedSecret]:
        rows = self._query(sql, params)
        return [
            DeletedSecret(
                props_from_row(r, micros=True, current=True),
                from_micros(r["deleted_at"]),  # type: ignore[arg-type]
                from_micros(r["purge_at"]),  # type: ignore[arg-type]
            )
            for r in rows
        ]

    async def get_deleted(self, name: str) -> DeletedSecret:
        found = self._deleted_rows(_GET_DELETED, (name_key(name),))
        if not found:
            raise not_found(name)
        return found[0]

    async def list_deleted(self) -> list[DeletedSecret]:
        return self._deleted_rows(_LIST_DELETED, ())

    async def recover(self, name: str) -> VersionProperties:
        key = name_key(name)

        def job(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE secrets SET deleted_at = NULL, purge_at = NULL "
                "WHERE name_key = ? AND deleted_at IS NOT NULL",
                (key,),
            )
            if updated.rowcount != 1:
                raise not_found(name)

        await self._write(job)
        return await self.get_properties(name)

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        key = name_key(name)

        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT deleted_at FROM secrets WHERE name_key = ?", (key,)
            ).fetchone()
            if row is None or (deleted_only and row["deleted_at"] is None):
                raise not_found(name)
            conn.execute("DELETE FROM secrets WHERE name_key = ?", (key,))

        await self._write(job)

    async def purge_expired(self, now: datetime) -> int:
        def job(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM secrets WHERE purge_at IS NOT NULL AND purge_at <= ?",
                (to_micros(now),),
            ).rowcount

        return await self._write(job)

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        key = name_key(name)
        when = to_micros(revoked_at)

        def job(conn: sqlite3.Connection) -> int:
            if conn.execute("SELECT 1 FROM secrets WHERE name_key = ?", (key,)).fetchone() is None:
                raise not_found(name)
            return conn.execute(
                "UPDATE secret_versions SET enabled = 0, revoked_at = ?, updated_at = ? "
                "WHERE name_key = ? AND revoked_at IS NULL",
                (when, when, key),
            ).rowcount

        return await self._write(job)

    async def key_version(self) -> int:
        envelope = self._envelope or self._load_keyring()
        return envelope.keyring.current_version

    async def count(self) -> int:
        rows = self._query("SELECT count(*) AS n FROM secrets WHERE deleted_at IS NULL")
        return int(rows[0]["n"])

    # -- master key rotation ---------------------------------------------------------------

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        """Add a keyring version, re-wrap every data key under it, then drop the old ones.

        Reads keep working throughout: each row names the keyring version that wraps it, and
        old versions are deleted only when no row refers to them (a foreign key enforces it).
        Rotations in this process take turns; one found unfinished in the file (another
        process's, or one cut short by a crash) is completed rather than stacked upon.
        """
        async with self._rotation_lock:
            return await self._rotate(progress)

    async def _rotate(self, progress: RewrapProgress | None) -> KeyRotationResult:
        now = to_micros(system_clock())

        def start(conn: sqlite3.Connection) -> tuple[int, list[int]]:
            previous = [r[0] for r in conn.execute("SELECT version FROM secret_keyring")]
            unfinished = conn.execute(
                "SELECT 1 FROM secret_keyring WHERE retired_at IS NOT NULL LIMIT 1"
            ).fetchone()
            if unfinished is not None:
                return max(previous), previous
            row = Keyring.new_row(self._master, max(previous) + 1)
            conn.execute(_INSERT_KEYRING, (row.version, row.wrapped_key, now))
            conn.execute(
                "UPDATE secret_keyring SET retired_at = ? WHERE version < ? AND retired_at IS NULL",
                (now, row.version),
            )
            return row.version, previous

        new_version, previous = await self._write(start)
        envelope = self._load_keyring()
        rewrapped = 0
        total = int(
            self._query(
                "SELECT count(*) AS n FROM secret_versions WHERE kek_version <> ?", (new_version,)
            )[0]["n"]
        )
        while True:
            if progress is not None:
                progress(rewrapped, max(total, rewrapped))
            batch = self._query(
                "SELECT name_key, seq, version, ciphertext, wrapped_dek, kek_version "
                "FROM secret_versions WHERE kek_version <> ? LIMIT ?",
                (new_version, _REWRAP_BATCH),
            )
            if not batch:
                if await self._write(lambda c: _drop_old_keys(c, new_version)):
                    break
                continue
            updates = []
            for r in batch:
                sealed = Sealed(r["ciphertext"], r["wrapped_dek"], r["kek_version"])
                fresh = envelope.rewrap(r["name_key"], r["version"], sealed)
                updates.append(
                    (
                        fresh.wrapped_dek,
                        fresh.kek_version,
                        r["name_key"],
                        r["seq"],
                        r["kek_version"],
                    )
                )

            def apply(conn: sqlite3.Connection, rows: list[Any] = updates) -> int:
                conn.executemany(
                    "UPDATE secret_versions SET wrapped_dek = ?, kek_version = ? "
                    "WHERE name_key = ? AND seq = ? AND kek_version = ?",
                    rows,
                )
                return len(rows)

            rewrapped += await self._write(apply)
        self._load_keyring()
        return KeyRotationResult(new_version, previous, rewrapped)


def _drop_old_keys(conn: sqlite3.Connection, keep: int) -> bool:
    """Delete retired keyring versions; False if a row still refers to one (caller re-wraps)."""
    try:
        conn.execute("DELETE FROM secret_keyring WHERE version <> ?", (keep,))
    except sqlite3.IntegrityError:
        return False
    return True
