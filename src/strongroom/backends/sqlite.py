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
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from strongroom.backends import sqlite_keys
from strongroom.backends import sqlite_rows as rows
from strongroom.backends.base import (
    KeyRotationResult,
    RewrapProgress,
    VersionBuilder,
    WriteMode,
    name_key,
    not_found,
)
from strongroom.backends.opened import OpenedVersions
from strongroom.backends.recent_rows import DEFAULT_WINDOW_SECONDS, RecentRows
from strongroom.backends.secret_sql import checked, checked_live
from strongroom.backends.sqlite_rows import Q, StaleKeyring, sqlite_secret_hook
from strongroom.core.crypto import Envelope, Keyring, MasterKey, Sealed, UnknownKeyVersion
from strongroom.core.errors import DecryptionError, StoreUnavailableError
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
from strongroom.db.migrate import deferred_hook, migrate_sqlite
from strongroom.db.rows import from_micros, to_micros
from strongroom.db.sqlite_writer import SqliteWriter, acquire_writer, connect, release_writer

if TYPE_CHECKING:
    from strongroom.backends.vault_keys import SqlKeyStore

__all__ = ["SqliteStore", "sqlite_secret_hook"]

T = TypeVar("T")


class SqliteStore:
    backend = "sqlite"

    def __init__(
        self,
        path: Path,
        master_key: MasterKey,
        *,
        integrity: RowMac | None = None,
        read_window_seconds: float = DEFAULT_WINDOW_SECONDS,
        read_clock: Callable[[], float] = time.monotonic,
    ):
        self.path = path
        self._master = master_key
        self._mac = integrity or RowMac(master_key.derive(Purpose.METADATA_MAC))
        self._writer: SqliteWriter | None = None
        self._read: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._envelope: Envelope | None = None
        self._opened = OpenedVersions()  # rows already checked and decrypted
        #: Rows read within the last ``read_window_seconds`` answer the reads that follow
        #: (another process's change reaches this one within that bound; see recent_rows).
        self._recent = RecentRows(read_window_seconds, clock=read_clock)
        self._rotation_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Owner-only from the first byte; SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            bootstrap = connect(str(self.path))
            try:
                hooks = {
                    10: sqlite_secret_hook(self._mac),
                    11: deferred_hook("strongroom.db.access_rows", "sqlite_access_hook", self._mac),
                }
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

    async def _write(self, job: Callable[[sqlite3.Connection], T], name: str | None = None) -> T:
        """Run ``job`` in the writer's next commit; whatever its outcome, this process's next
        reads of secret ``name`` (None: of every secret) go to the file."""
        if self._writer is None:
            raise StoreUnavailableError("the SQLite store is closed")
        try:
            return await self._writer.submit(job)
        finally:
            if name is None:
                self._recent.clear()
            else:
                self._recent.drop(name_key(name))

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
        key = name_key(name)
        which = "select_current" if version is None else "select_version"

        def load() -> sqlite3.Row:
            found = self._rows(which, {"key": key, "version": version})
            row: sqlite3.Row = checked_live(found[0] if found else None, name, version)
            return row

        row: sqlite3.Row = self._recent.fetch_now(key, version, load)
        return row

    # -- the protocol ----------------------------------------------------------------------

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        return await self._sealing(
            new.name,
            lambda envelope: functools.partial(
                rows.insert, mac=self._mac, new=new,
                sealed=envelope.seal(key, new.version, value), mode=mode,
            ),
        )  # fmt: skip

    async def write_update(self, name: str, build: VersionBuilder) -> VersionProperties:
        """A new version built from the current one's properties, read in the transaction
        that writes it (see :func:`strongroom.backends.base.write_update`)."""
        return await self._sealing(
            name,
            lambda envelope: functools.partial(
                rows.update_built, mac=self._mac, name=name, build=build, envelope=envelope
            ),
        )

    async def _sealing(
        self,
        name: str,
        job_for: Callable[[Envelope], Callable[[sqlite3.Connection], VersionProperties]],
    ) -> VersionProperties:
        """Write ``job_for(envelope)``, sealed under the current keyring; again when the
        keyring changed meanwhile."""
        for _attempt in range(3):
            envelope = self._envelope or self._load_keyring()
            try:
                return await self._write(job_for(envelope), name)
            except StaleKeyring:
                self._load_keyring()
        raise StoreUnavailableError("the keyring kept changing during the write; try again")

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
                self._recent.drop(key)
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
        return await self._write(
            functools.partial(
                rows.update_properties, mac=self._mac, name=name, version=version, changes=changes
            ),
            name,
        )

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
        await self._write(
            functools.partial(rows.move, mac=self._mac, name=name, deleted=deleted, **changes),
            name,
        )

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
        await self._write(functools.partial(rows.purge, name=name, deleted_only=deleted_only), name)

    async def purge_expired(self, now: datetime) -> int:
        self._opened.clear()
        return await self._write(
            lambda c: rows.run(c, "purge_expired", {"now": to_micros(now)}).rowcount
        )

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        """Revoke every version, even of a secret whose rows fail their MACs (the failure is
        alerted): an emergency is never blocked by what it responds to."""
        when = to_micros(revoked_at)
        return await self._write(
            functools.partial(rows.revoke_versions, mac=self._mac, name=name, when=when), name
        )

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
