"""The cluster profile: PostgreSQL through an asyncpg pool, values envelope-encrypted.

Safe for many processes at once: a secret's changes are serialised by a row lock on it
(``SELECT ... FOR UPDATE``), every state change is one transaction, and master-key rotation
holds an advisory lock while foreign keys keep a retired keyring version alive until no row
needs it. Every row read is checked against its MAC before it is trusted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from strongroom.backends import postgres_keys
from strongroom.backends import postgres_rows as rows
from strongroom.backends.base import (
    KeyRotationResult,
    RewrapProgress,
    VersionBuilder,
    WriteMode,
    name_key,
    not_found,
)
from strongroom.backends.opened import OpenedVersions
from strongroom.backends.postgres_rows import Q, StaleKeyring, postgres_secret_hook, run
from strongroom.backends.recent_rows import DEFAULT_WINDOW_SECONDS, RecentRows
from strongroom.backends.secret_sql import checked, checked_live
from strongroom.backends.vault_keys import PostgresRunner, SqlKeyStore
from strongroom.backends.write_batches import Failed, NameBatches
from strongroom.core.crypto import Envelope, MasterKey, Sealed, UnknownKeyVersion
from strongroom.core.errors import (
    DecryptionError,
    StoreUnavailableError,
)
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
from strongroom.db.access_store import postgres_access_hook
from strongroom.db.migrate import PostgresHooks
from strongroom.db.pg import check_schema, open_pool, pooled

__all__ = ["PostgresStore", "postgres_secret_hook"]

T = TypeVar("T")


class PostgresStore:
    backend = "postgres"

    def __init__(
        self,
        dsn: str,
        master_key: MasterKey,
        *,
        schema: str = "strongroom",
        min_size: int = 2,
        max_size: int = 10,
        integrity: RowMac | None = None,
        read_window_seconds: float = DEFAULT_WINDOW_SECONDS,
        read_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._master = master_key
        self._mac = integrity or RowMac(master_key.derive(Purpose.METADATA_MAC))
        self.schema = check_schema(schema)
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._envelope: Envelope | None = None
        self._opened = OpenedVersions()  # rows already checked and decrypted
        #: Rows fetched within the last ``read_window_seconds`` answer the reads that follow
        #: (another process's change reaches this one within that bound; see recent_rows).
        self._recent = RecentRows(read_window_seconds, clock=read_clock)
        #: New versions of one name are committed in batches, one batch at a time from this
        #: process: writers of a hot secret wait in line here rather than as a crowd of
        #: sessions on its row lock (each woken and put back at every commit), and share
        #: a transaction and its WAL flush. Each writer brings the name and a builder of its
        #: version from the current one's properties, read under the batch's lock.
        self._updates: NameBatches[tuple[str, VersionBuilder], VersionProperties] = NameBatches(
            self._commit_updates
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        hooks: PostgresHooks = {
            10: postgres_secret_hook(self._mac),
            11: postgres_access_hook(self._mac),
        }
        self._pool = await open_pool(
            self._dsn, self.schema, min_size=self._min, max_size=self._max,
            what="the PostgreSQL store", hooks=hooks,
        )  # fmt: skip
        try:
            async with self._conn() as conn, conn.transaction():
                await postgres_keys.ensure_keyring(self._master, conn)
            await self._load_keyring()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._opened.clear()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _conn(self) -> AbstractAsyncContextManager[Any]:
        return pooled(self._pool, "the PostgreSQL store", (StaleKeyring,))

    async def _load_keyring(self, conn: Any = None) -> Envelope:
        if conn is None:
            async with self._conn() as own:
                return await self._load_keyring(own)
        self._envelope = await postgres_keys.load_keyring(self._master, conn)
        return self._envelope

    async def _ensure_envelope(self) -> Envelope:
        return self._envelope or await self._load_keyring()

    @contextmanager
    def _changing(self, key: str | None) -> Iterator[None]:
        """Around a change of ``key`` (None: any secret): whatever its outcome, this process's
        next reads of it go to the database."""
        try:
            yield
        finally:
            if key is None:
                self._recent.clear()
            else:
                self._recent.drop(key)

    def vault_keys(self) -> SqlKeyStore:
        """Key Vault keys, in this schema beside the secrets and sealed by the same keyring."""
        runner = PostgresRunner(self._conn)
        return SqlKeyStore(runner, self._mac, self._ensure_envelope, self._load_keyring)

    # -- the protocol ----------------------------------------------------------------------

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        with self._changing(key):
            if mode is WriteMode.UPDATE:
                return await self._updates.submit(key, (new.name, lambda _current: (new, value)))
            return await self._write_sealed(
                lambda conn, envelope: rows.create(
                    conn, self._mac, key, new, envelope.seal(key, new.version, value)
                )
            )

    async def write_update(self, name: str, build: VersionBuilder) -> VersionProperties:
        """A new version built from the current one's properties, read under the row lock of
        the batch that writes it (see :func:`strongroom.backends.base.write_update`)."""
        key = name_key(name)
        with self._changing(key):
            return await self._updates.submit(key, (name, build))

    async def _commit_updates(
        self, key: str, items: list[tuple[str, VersionBuilder]]
    ) -> list[VersionProperties | Failed]:
        """New versions of one secret in one transaction (see :class:`NameBatches`)."""
        return await self._write_sealed(
            lambda conn, envelope: rows.update_batch(conn, self._mac, key, items, envelope)
        )

    async def _write_sealed(self, write: Callable[[Any, Envelope], Awaitable[T]]) -> T:
        """``write(conn, envelope)`` in a transaction, sealing under the current keyring; done
        again when the keyring changed meanwhile."""
        for _attempt in range(3):
            envelope = await self._ensure_envelope()
            try:
                async with self._conn() as conn, conn.transaction():
                    return await write(conn, envelope)
            except StaleKeyring:
                await self._load_keyring()
        raise StoreUnavailableError("the keyring kept changing during the write; try again")

    async def _fetch_live(self, name: str, version: str | None) -> Any:
        async def load() -> Any:
            async with self._conn() as conn:
                return await rows.fetch_live(conn, name, version)

        return await self._recent.fetch(name_key(name), version, load)

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        key = name_key(name)
        for _attempt in range(3):
            row = await self._fetch_live(name, version)
            if (opened := self._opened.get(key, version, row)) is not None:
                return opened  # the very row checked and opened before: the same answer
            props = checked(self._mac, row, micros=False)
            sealed = Sealed(row["ciphertext"], row["wrapped_dek"], row["kek_version"])
            envelope = await self._ensure_envelope()
            try:
                data = envelope.open(key, props.version, sealed)
            except UnknownKeyVersion:
                # A key rotation is under way or has finished: learn the keyring again and
                # re-read the row, which may have been re-wrapped meanwhile.
                await self._load_keyring()
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
        return checked(self._mac, await self._fetch_live(name, version), micros=False)

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        key = name_key(name)
        with self._changing(key):
            async with self._conn() as conn, conn.transaction():
                return await rows.update_properties(conn, self._mac, key, name, version, changes)

    async def list_secrets(self) -> list[VersionProperties]:
        async with self._conn() as conn:
            found = await conn.fetch(Q["list_live"].text)
        return [checked(self._mac, r, micros=False, current=True) for r in found]

    async def list_versions(self, name: str) -> list[VersionProperties]:
        async with self._conn() as conn:
            found = await conn.fetch(Q["list_versions"].text, name_key(name))
        checked_live(found[0] if found else None, name, None)
        return [checked(self._mac, r, micros=False) for r in found]

    async def _move(self, name: str, deleted: bool, **changes: Any) -> None:
        """Soft-delete (``deleted=False``: the secret must be live) or recover it."""
        key = name_key(name)
        with self._changing(key):
            async with self._conn() as conn, conn.transaction():
                await rows.move(conn, self._mac, key, name, deleted, **changes)

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        self._opened.drop(name_key(name))
        await self._move(name, False, deleted_at=deleted_at, purge_at=purge_at)
        return await self.get_deleted(name)

    async def _deleted_rows(self, key: str, *params: Any) -> list[DeletedSecret]:
        async with self._conn() as conn:
            found = await conn.fetch(Q[key].text, *params)
        return [
            DeletedSecret(
                checked(self._mac, r, micros=False, current=True), r["deleted_at"], r["purge_at"]
            )
            for r in found
        ]

    async def get_deleted(self, name: str) -> DeletedSecret:
        found = await self._deleted_rows("get_deleted", name_key(name))
        if not found:
            raise not_found(name)
        return found[0]

    async def list_deleted(self) -> list[DeletedSecret]:
        return await self._deleted_rows("list_deleted")

    async def recover(self, name: str) -> VersionProperties:
        await self._move(name, True, deleted_at=None, purge_at=None)
        return await self.get_properties(name)

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        key = name_key(name)
        self._opened.drop(key)
        sql = Q["purge"].text + (" AND deleted_at IS NOT NULL" if deleted_only else "")
        with self._changing(key):
            async with self._conn() as conn:
                status = await conn.execute(sql, key)
        if status != "DELETE 1":
            raise not_found(name)

    async def purge_expired(self, now: datetime) -> int:
        self._opened.clear()
        with self._changing(None):
            async with self._conn() as conn:
                status = await run(conn, "purge_expired", {"now": now})
        return int(status.split()[-1])

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        """Revoke every version, even of a secret whose rows fail their MACs (the failure is
        alerted): an emergency is never blocked by what it responds to."""
        key = name_key(name)
        with self._changing(key):
            async with self._conn() as conn, conn.transaction():
                return await rows.revoke_versions(conn, self._mac, key, name, revoked_at)

    async def key_version(self) -> int:
        return (await self._load_keyring()).keyring.current_version

    async def count(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval(Q["count"].text))

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        """Add a keyring version and re-wrap every data key under it (see postgres_keys)."""
        # One connection does the whole rotation, so a rotation waiting for the lock never
        # holds a second connection that the running one needs (small pools stay live).
        with self._changing(None):
            return await self._rotate_key(progress)

    async def _rotate_key(self, progress: RewrapProgress | None) -> KeyRotationResult:
        async with self._conn() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", postgres_keys.KEY_ROTATION_LOCK)
            try:
                result, self._envelope = await postgres_keys.rotate_locked(
                    self._master, conn, progress
                )
                return result
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", postgres_keys.KEY_ROTATION_LOCK)
