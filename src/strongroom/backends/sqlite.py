"""The embedded default: one SQLite file in WAL mode, values envelope-encrypted.

Reads run on the caller's thread on a read connection (a primary-key lookup takes
microseconds, less than a hop to a thread pool); writes go to a group-committing writer thread
with ``synchronous=FULL``, so a write is on disk when its call returns. Every row read is
checked against its MAC before it is trusted (``secret_sql.checked``).
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
from typing import TYPE_CHECKING, Any, TypeVar

from strongroom.backends import sqlite_keys
from strongroom.backends.base import (
    KeyRotationResult,
    RewrapProgress,
    VersionBuilder,
    WriteMode,
    is_deleted,
    name_conflict,
    name_key,
    not_found,
)
from strongroom.backends.opened import OpenedVersions
from strongroom.backends.secret_sql import (
    QUERIES,
    SECRETS,
    adoption,
    advance,
    checked,
    checked_live,
    checked_secret,
    revoked_params,
    secret_fields,
    version_params,
)
from strongroom.core.crypto import Envelope, Keyring, MasterKey, Sealed, UnknownKeyVersion
from strongroom.core.errors import DecryptionError, StoreUnavailableError, TamperedError
from strongroom.core.integrity import RowMac
from strongroom.core.keys import Purpose
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    SecretValue,
    VersionProperties,
)
from strongroom.db.access_store import sqlite_access_hook
from strongroom.db.migrate import migrate_sqlite
from strongroom.db.rows import from_micros, tags_to_json, to_micros
from strongroom.db.sqlite_writer import SqliteWriter, acquire_writer, connect, release_writer

if TYPE_CHECKING:
    from strongroom.backends.vault_keys import SqlKeyStore

__all__ = ["SqliteStore", "sqlite_secret_hook"]

T = TypeVar("T")
Q = QUERIES["sqlite"]


class _StaleKeyring(Exception):
    """The keyring version used to seal was retired by a key rotation: reseal and retry."""


def _run(conn: sqlite3.Connection, key: str, params: dict[str, Any]) -> sqlite3.Cursor:
    return conn.execute(Q[key].text, Q[key].args(params))


def sqlite_secret_hook(mac: RowMac) -> Callable[[sqlite3.Connection], None]:
    """Migration 10's hook: MAC the secret rows a store made before row MACs."""

    def adopt(conn: sqlite3.Connection) -> None:
        for secret in _run(conn, "all_secrets", {}).fetchall():
            versions = _run(conn, "versions_of", {"key": secret["name_key"]}).fetchall()
            secret_params, version_rows = adoption(mac, secret, versions)
            _run(conn, "adopt_secret", secret_params)
            for params in version_rows:
                _run(conn, "revoke_version", params)  # writes exactly the MACed columns

    return adopt


class SqliteStore:
    backend = "sqlite"

    def __init__(self, path: Path, master_key: MasterKey, *, integrity: RowMac | None = None):
        self.path = path
        self._master = master_key
        self._mac = integrity or RowMac(master_key.derive(Purpose.METADATA_MAC))
        self._writer: SqliteWriter | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._envelope: Envelope | None = None
        self._opened = OpenedVersions()  # rows already checked and decrypted
        self._rotation_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Owner-only from the first byte; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            bootstrap = connect(str(self.path))
            try:
                hooks = {10: sqlite_secret_hook(self._mac), 11: sqlite_access_hook(self._mac)}
                migrate_sqlite(bootstrap, hooks)
            finally:
                bootstrap.close()
            self._writer = acquire_writer(str(self.path))
            self._read = connect(str(self.path), synchronous="NORMAL")
        except sqlite3.Error as exc:
            await self.close()
            raise StoreUnavailableError(f"cannot open SQLite store {self.path}: {exc}") from exc
        try:
            await self._write(functools.partial(sqlite_keys.ensure_keyring, self._master))
            self._load_keyring()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._opened.clear()
        if self._writer is not None:
            release_writer(self._writer)
            self._writer = None
        if self._read is not None:
            self._read.close()
            self._read = None

    def _load_keyring(self) -> Envelope:
        rows = sqlite_keys.keyring_rows(
            self._query("SELECT version, wrapped_key, wrapping FROM secret_keyring")
        )
        self._envelope = Envelope(Keyring.load(self._master, rows))
        return self._envelope

    def vault_keys(self) -> SqlKeyStore:
        """Key Vault keys, in this file beside the secrets and sealed by the same keyring."""
        # Imported here: RSA and key serialization cost every command's start-up, and only the
        # Key Vault keys API uses them.
        from strongroom.backends.vault_keys import SqliteRunner, SqlKeyStore  # noqa: PLC0415

        async def current() -> Envelope:
            return self._envelope or self._load_keyring()

        async def reload() -> Envelope:
            return self._load_keyring()

        return SqlKeyStore(SqliteRunner(self._query, self._write), self._mac, current, reload)

    # -- plumbing --------------------------------------------------------------------------

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreUnavailableError("the SQLite store is closed")
        return await self._writer.submit(job)

    def _query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        if self._read is None:
            raise StoreUnavailableError("the SQLite store is closed")
        writer = self._writer
        if writer is not None and (
            done := writer.read_now(lambda conn: conn.execute(sql, params).fetchall())
        ):
            return done[0]
        try:
            with self._read_lock:
                return self._read.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite read failed ({type(exc).__name__})") from exc

    def _rows(self, key: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        return self._query(Q[key].text, Q[key].args(params))

    def _live_row(self, name: str, version: str | None) -> sqlite3.Row:
        params = {"key": name_key(name), "version": version}
        rows = self._rows("select_current" if version is None else "select_version", params)
        found: sqlite3.Row = checked_live(rows[0] if rows else None, name, version)
        return found

    def _secret(self, conn: sqlite3.Connection, key: str, name: str) -> Any:
        row = _run(conn, "secret_row", {"key": key}).fetchone()
        if row is None:
            raise not_found(name)
        return row

    # -- the protocol ----------------------------------------------------------------------

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        return await self._sealing(
            lambda envelope: functools.partial(
                self._insert, new=new, sealed=envelope.seal(key, new.version, value), mode=mode
            )
        )

    async def write_update(self, name: str, build: VersionBuilder) -> VersionProperties:
        """A new version built from the current one's properties, read in the transaction
        that writes it (see :func:`strongroom.backends.base.write_update`)."""
        return await self._sealing(
            lambda envelope: functools.partial(
                self._update_built, name=name, build=build, envelope=envelope
            )
        )

    async def _sealing(
        self, job_for: Callable[[Envelope], Callable[[sqlite3.Connection], VersionProperties]]
    ) -> VersionProperties:
        """Write ``job_for(envelope)``, sealed under the current keyring; again when the
        keyring changed meanwhile."""
        for _attempt in range(3):
            envelope = self._envelope or self._load_keyring()
            try:
                return await self._write(job_for(envelope))
            except _StaleKeyring:
                self._load_keyring()
        raise StoreUnavailableError("the keyring kept changing during the write; try again")

    def _update_built(
        self, conn: sqlite3.Connection, name: str, build: VersionBuilder, envelope: Envelope
    ) -> VersionProperties:
        key = name_key(name)
        row = _run(conn, "select_current", {"key": key, "version": None}).fetchone()
        new, value = build(checked(self._mac, checked_live(row, name, None), micros=True))
        return self._insert(conn, new, envelope.seal(key, new.version, value), WriteMode.UPDATE)

    def _insert(
        self, conn: sqlite3.Connection, new: NewVersion, sealed: Sealed, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        created = to_micros(new.created_at)
        row = _run(conn, "secret_row", {"key": key}).fetchone()
        if mode is WriteMode.CREATE:
            if row is not None:
                raise name_conflict(new.name, deleted=row["deleted_at"] is not None)
            name, seq, gen = new.name, 1, 1
            first = {"name": name, "current_seq": 1, "created_at": created, "gen": 1,
                     "revoked_gen": None, "deleted_at": None, "purge_at": None}  # fmt: skip
            mac = self._mac.mac(SECRETS, secret_fields(key, first))
            _run(conn, "insert_secret", {"key": key, "name": name, "created": created, "mac": mac})
        else:
            if row is None:
                raise not_found(new.name)
            state = checked_secret(self._mac, key, row)
            if state.deleted_at is not None:
                raise is_deleted(new.name)
            moved, params = advance(self._mac, key, state, current_seq=state.current_seq + 1)
            _run(conn, "update_secret", params)
            name, seq, gen = state.name, moved.current_seq, moved.gen
        values = {
            "seq": seq, "version": new.version, "secret_type": new.secret_type.value,
            "content_type": new.content_type, "tags": tags_to_json(new.tags),
            "enabled": int(new.enabled), "created": created, "revoked_at": None,
            "expires_at": to_micros(new.expires_at), "not_before": to_micros(new.not_before),
            "ciphertext": sealed.ciphertext, "wrapped_dek": sealed.wrapped_dek,
            "kek_version": sealed.kek_version,
        }  # fmt: skip
        if _run(conn, "insert_version", version_params(self._mac, key, values, gen)).rowcount != 1:
            raise _StaleKeyring
        return new.written_as(name)

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        key = name_key(name)
        for _attempt in range(3):
            row = self._live_row(name, version)
            if (opened := self._opened.get(key, version, row)) is not None:
                return opened  # the very row checked and opened before: the same answer
            props = checked(self._mac, row, micros=True)
            sealed = Sealed(row["ciphertext"], row["wrapped_dek"], row["kek_version"])
            envelope = self._envelope or self._load_keyring()
            try:
                data = envelope.open(key, props.version, sealed)
            except UnknownKeyVersion:
                # Another process rotated the key: learn the keyring again, re-read the row.
                self._load_keyring()
                continue
            bundle = SecretBundle(
                props, SecretValue(props.name, props.version, data, props.content_type)
            )
            self._opened.put(key, version, row, bundle)
            return bundle
        # Still naming a keyring version the store does not hold: the row cannot be opened.
        raise DecryptionError("cannot decrypt")

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        return checked(self._mac, self._live_row(name, version), micros=True)

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        key = name_key(name)

        def job(conn: sqlite3.Connection) -> VersionProperties:
            which = "select_current" if version is None else "select_version"
            row = checked_live(
                _run(conn, which, {"key": key, "version": version}).fetchone(), name, version
            )
            props = changes.apply(checked(self._mac, row, micros=True))
            moved, params = advance(self._mac, key, checked_secret(self._mac, key, row, "s_"))
            _run(conn, "update_secret", params)
            values = {
                "seq": row["seq"], "version": row["version"], "enabled": int(props.enabled),
                "expires_at": to_micros(props.expires_at),
                "not_before": to_micros(props.not_before), "tags": tags_to_json(props.tags),
                "content_type": props.content_type, "updated_at": to_micros(props.updated_at),
                "revoked_at": row["revoked_at"], "created": row["created_at"],
            }  # fmt: skip
            _run(conn, "update_version", version_params(self._mac, key, values, moved.gen))
            return props

        return await self._write(job)

    async def list_secrets(self) -> list[VersionProperties]:
        return [
            checked(self._mac, r, micros=True, current=True) for r in self._rows("list_live", {})
        ]

    async def list_versions(self, name: str) -> list[VersionProperties]:
        self._live_row(name, None)
        rows = self._rows("list_versions", {"key": name_key(name)})
        return [checked(self._mac, r, micros=True) for r in rows]

    async def _move(self, name: str, deleted: bool, **changes: Any) -> None:
        """Soft-delete (``deleted=False``: the secret must be live) or recover it."""
        key = name_key(name)

        def job(conn: sqlite3.Connection) -> None:
            state = checked_secret(self._mac, key, self._secret(conn, key, name))
            if (state.deleted_at is not None) != deleted:
                raise is_deleted(name) if not deleted else not_found(name)
            _run(conn, "update_secret", advance(self._mac, key, state, **changes)[1])

        await self._write(job)

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        self._opened.drop(name_key(name))
        await self._move(
            name, False, deleted_at=to_micros(deleted_at), purge_at=to_micros(purge_at)
        )
        return await self.get_deleted(name)

    def _deleted_rows(self, key: str, params: dict[str, Any]) -> list[DeletedSecret]:
        return [
            DeletedSecret(
                checked(self._mac, r, micros=True, current=True),
                from_micros(r["deleted_at"]),  # type: ignore[arg-type]
                from_micros(r["purge_at"]),  # type: ignore[arg-type]
            )
            for r in self._rows(key, params)
        ]

    async def get_deleted(self, name: str) -> DeletedSecret:
        found = self._deleted_rows("get_deleted", {"key": name_key(name)})
        if not found:
            raise not_found(name)
        return found[0]

    async def list_deleted(self) -> list[DeletedSecret]:
        return self._deleted_rows("list_deleted", {})

    async def recover(self, name: str) -> VersionProperties:
        await self._move(name, True, deleted_at=None, purge_at=None)
        return await self.get_properties(name)

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        self._opened.drop(name_key(name))
        key = name_key(name)

        def job(conn: sqlite3.Connection) -> None:
            row = self._secret(conn, key, name)
            if deleted_only and row["deleted_at"] is None:
                raise not_found(name)
            _run(conn, "purge", {"key": key})

        await self._write(job)

    async def purge_expired(self, now: datetime) -> int:
        self._opened.clear()
        return await self._write(
            lambda c: _run(c, "purge_expired", {"now": to_micros(now)}).rowcount
        )

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        """Revoke every version, even of a secret whose rows fail their MACs (the failure is
        alerted): an emergency is never blocked by what it responds to."""
        key = name_key(name)
        when = to_micros(revoked_at)

        def job(conn: sqlite3.Connection) -> int:
            row = self._secret(conn, key, name)
            try:
                state = checked_secret(self._mac, key, row)
            except TamperedError:
                state = checked_secret(self._mac, key, row, verify=False)
            moved, params = advance(self._mac, key, state, revoked_gen=state.gen + 1)
            _run(conn, "update_secret", params)
            count = 0
            for version in _run(conn, "versions_of", {"key": key}).fetchall():
                values, fresh = revoked_params(self._mac, key, version, moved.gen, when)
                _run(conn, "revoke_version", values)
                count += int(fresh)
            return count

        return await self._write(job)

    async def key_version(self) -> int:
        envelope = self._envelope or self._load_keyring()
        return envelope.keyring.current_version

    async def count(self) -> int:
        return int(self._rows("count", {})[0]["n"])

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        """Add a keyring version and re-wrap every data key under it (see sqlite_keys);
        rotations in this process take turns."""
        async with self._rotation_lock:
            return await sqlite_keys.rotate(
                self._master, self._write, self._query, self._load_keyring, progress
            )
