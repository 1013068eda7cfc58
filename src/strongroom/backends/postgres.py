"""The cluster profile: PostgreSQL through an asyncpg pool, values envelope-encrypted.

Safe for many processes at once: version numbers come from a row lock on the secret
(``SELECT ... FOR UPDATE``), every state change is one transaction, and master-key rotation
holds an advisory lock while foreign keys keep a retired keyring version alive until no row
needs it.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import asyncpg

from strongroom.backends.base import (
    KeyRotationResult,
    RewrapProgress,
    WriteMode,
    is_deleted,
    name_conflict,
    name_key,
    not_found,
)
from strongroom.core.crypto import (
    Envelope,
    Keyring,
    KeyringRow,
    MasterKey,
    Sealed,
    UnknownKeyVersion,
)
from strongroom.core.errors import (
    DecryptionError,
    StoreUnavailableError,
)
from strongroom.core.models import (
    DeletedSecret,
    NewVersion,
    PropertyChanges,
    SecretBundle,
    SecretValue,
    VersionProperties,
)
from strongroom.db.pg import check_schema, open_pool, pooled
from strongroom.db.rows import props_from_row, tags_to_json

__all__ = ["PostgresStore"]

_KEY_ROTATION_LOCK = 0x53524B524F54  # advisory lock: one master-key rotation at a time
_REWRAP_BATCH = 500
_COLUMNS = (
    "s.name, s.deleted_at, s.purge_at, s.current_seq, v.seq, v.version, v.secret_type, "
    "v.content_type, v.tags::text AS tags, v.enabled, v.created_at, v.updated_at, "
    "v.expires_at, v.not_before, v.revoked_at"
)
_SEALED = ", v.ciphertext, v.wrapped_dek, v.kek_version"
# Every query below is joined at import time from these fixed fragments; values are bound.
_FROM = " FROM secrets s "
_CURRENT = "JOIN secret_versions v ON v.name_key = s.name_key AND v.seq = s.current_seq "
_SELECT_CURRENT = (
    "SELECT " + _COLUMNS + _SEALED + _FROM + "LEFT " + _CURRENT + "WHERE s.name_key = $1"
)
_SELECT_VERSION = (
    "SELECT "
    + _COLUMNS
    + _SEALED
    + _FROM
    + "LEFT JOIN secret_versions v ON v.name_key = s.name_key AND v.version = $2 "
    + "WHERE s.name_key = $1"
)
_LIST_LIVE = (
    "SELECT " + _COLUMNS + _FROM + _CURRENT + "WHERE s.deleted_at IS NULL ORDER BY s.name_key"
)
_LIST_VERSIONS = (
    "SELECT "
    + _COLUMNS
    + _FROM
    + "LEFT JOIN secret_versions v ON v.name_key = s.name_key "
    + "WHERE s.name_key = $1 ORDER BY v.seq DESC"
)
_LIST_DELETED = (
    "SELECT " + _COLUMNS + _FROM + _CURRENT + "WHERE s.deleted_at IS NOT NULL ORDER BY s.name_key"
)
_GET_DELETED = (
    "SELECT " + _COLUMNS + _FROM + _CURRENT + "WHERE s.deleted_at IS NOT NULL AND s.name_key = $1"
)
_INSERT_VERSION = (
    "INSERT INTO secret_versions (name_key, seq, version, secret_type, content_type, tags, "
    "enabled, created_at, updated_at, expires_at, not_before, ciphertext, wrapped_dek, "
    "kek_version) SELECT $1, $2, $3, $4, $5, $6::jsonb, $7, $8, $8, $9, $10, $11, $12, $13 "
    "WHERE EXISTS (SELECT 1 FROM secret_keyring WHERE version = $13 AND retired_at IS NULL)"
)

_INSERT_KEYRING = (
    "INSERT INTO secret_keyring (version, wrapped_key, created_at, wrapping) "
    "VALUES ($1, $2, now(), 2)"
)


class _StaleKeyring(Exception):
    """The keyring version used to seal was retired by a key rotation: reseal and retry."""


def _current(row: Any) -> bool:
    return bool(row["seq"] == row["current_seq"])


def _check_live(row: Any, name: str, version: str | None) -> Any:
    if row is None:
        raise not_found(name)
    if row["deleted_at"] is not None:
        raise is_deleted(name)
    if row["version"] is None:
        raise not_found(name, version)
    return row


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
    ) -> None:
        self._dsn = dsn
        self._master = master_key
        self.schema = check_schema(schema)
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._envelope: Envelope | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._pool = await open_pool(
            self._dsn,
            self.schema,
            min_size=self._min,
            max_size=self._max,
            what="the PostgreSQL store",
        )
        async with self._conn() as conn, conn.transaction():
            await conn.execute("LOCK TABLE secret_keyring IN EXCLUSIVE MODE")
            found = await conn.fetch("SELECT version, wrapped_key, wrapping FROM secret_keyring")
            rows = [KeyringRow(r["version"], r["wrapped_key"], r["wrapping"]) for r in found]
            if not rows:
                row = Keyring.new_row(self._master, 1)
                await conn.execute(_INSERT_KEYRING, row.version, row.wrapped_key)
            # A store made before the derived wrapping key: re-wrap its keyring once.
            for row in Keyring.upgrade(self._master, rows):
                await conn.execute(
                    "UPDATE secret_keyring SET wrapped_key = $1, wrapping = $2 WHERE version = $3",
                    row.wrapped_key,
                    row.wrapping,
                    row.version,
                )
        try:
            await self._load_keyring()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _conn(self) -> AbstractAsyncContextManager[Any]:
        return pooled(self._pool, "the PostgreSQL store", (_StaleKeyring,))

    async def _load_keyring(self, conn: Any = None) -> Envelope:
        if conn is None:
            async with self._conn() as own:
                return await self._load_keyring(own)
        rows = await conn.fetch("SELECT version, wrapped_key, wrapping FROM secret_keyring")
        self._envelope = Envelope(
            Keyring.load(
                self._master,
                [KeyringRow(r["version"], r["wrapped_key"], r["wrapping"]) for r in rows],
            )
        )
        return self._envelope

    async def _ensure_envelope(self) -> Envelope:
        return self._envelope or await self._load_keyring()

    # -- the protocol ----------------------------------------------------------------------

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        for _attempt in range(3):
            envelope = await self._ensure_envelope()
            sealed = envelope.seal(key, new.version, value)
            try:
                async with self._conn() as conn, conn.transaction():
                    return await self._insert(conn, key, new, sealed, mode)
            except _StaleKeyring:
                await self._load_keyring()
        raise StoreUnavailableError("the keyring kept changing during the write; try again")

    @staticmethod
    async def _insert(
        conn: asyncpg.Connection, key: str, new: NewVersion, sealed: Sealed, mode: WriteMode
    ) -> VersionProperties:
        if mode is WriteMode.CREATE:
            created = await conn.fetchval(
                "INSERT INTO secrets (name_key, name, current_seq, created_at) "
                "VALUES ($1, $2, 1, $3) ON CONFLICT (name_key) DO NOTHING RETURNING 1",
                key,
                new.name,
                new.created_at,
            )
            if created is None:
                deleted = await conn.fetchval(
                    "SELECT deleted_at IS NOT NULL FROM secrets WHERE name_key = $1", key
                )
                raise name_conflict(new.name, deleted=bool(deleted))
            name, seq = new.name, 1
        else:
            row = await conn.fetchrow(
                "UPDATE secrets SET current_seq = current_seq + 1 "
                "WHERE name_key = $1 AND deleted_at IS NULL RETURNING name, current_seq",
                key,
            )
            if row is None:
                deleted = await conn.fetchval(
                    "SELECT deleted_at IS NOT NULL FROM secrets WHERE name_key = $1", key
                )
                raise is_deleted(new.name) if deleted else not_found(new.name)
            name, seq = row["name"], row["current_seq"]
        status = await conn.execute(
            _INSERT_VERSION,
            key, seq, new.version, new.secret_type.value, new.content_type,
            tags_to_json(new.tags), new.enabled, new.created_at, new.expires_at,
            new.not_before, sealed.ciphertext, sealed.wrapped_dek, sealed.kek_version,
        )  # fmt: skip
        if status != "INSERT 0 1":
            raise _StaleKeyring
        return VersionProperties(
            name=name, version=new.version, secret_type=new.secret_type,
            content_type=new.content_type, tags=dict(new.tags), enabled=new.enabled,
            created_at=new.created_at, updated_at=new.created_at, expires_at=new.expires_at,
            not_before=new.not_before, current=True,
        )  # fmt: skip

    async def _fetch_live(self, name: str, version: str | None) -> Any:
        async with self._conn() as conn:
            if version is None:
                row = await conn.fetchrow(_SELECT_CURRENT, name_key(name))
            else:
                row = await conn.fetchrow(_SELECT_VERSION, name_key(name), version)
        return _check_live(row, name, version)

    async def get_version(self, name: str, version: str | None = None) -> SecretBundle:
        for _attempt in range(3):
            row = await self._fetch_live(name, version)
            props = props_from_row(row, micros=False, current=_current(row))
            sealed = Sealed(row["ciphertext"], row["wrapped_dek"], row["kek_version"])
            envelope = await self._ensure_envelope()
            try:
                data = envelope.open(name_key(name), props.version, sealed)
            except UnknownKeyVersion:
                # A key rotation is under way or has finished: learn the keyring again and
                # re-read the row, which may have been re-wrapped meanwhile.
                await self._load_keyring()
                continue
            return SecretBundle(
                props, SecretValue(props.name, props.version, data, props.content_type)
            )
        # Still naming a keyring version the store does not hold: the row cannot be opened.
        raise DecryptionError("cannot decrypt")

    async def get_properties(self, name: str, version: str | None = None) -> VersionProperties:
        row = await self._fetch_live(name, version)
        return props_from_row(row, micros=False, current=_current(row))

    async def update_properties(
        self, name: str, version: str | None, changes: PropertyChanges
    ) -> VersionProperties:
        key = name_key(name)
        async with self._conn() as conn, conn.transaction():
            if version is None:
                row = await conn.fetchrow(_SELECT_CURRENT + " FOR UPDATE OF s", key)
            else:
                row = await conn.fetchrow(_SELECT_VERSION + " FOR UPDATE OF s", key, version)
            row = _check_live(row, name, version)
            props = changes.apply(props_from_row(row, micros=False, current=_current(row)))
            await conn.execute(
                "UPDATE secret_versions SET enabled = $1, expires_at = $2, not_before = $3, "
                "tags = $4::jsonb, content_type = $5, updated_at = $6 "
                "WHERE name_key = $7 AND seq = $8",
                props.enabled, props.expires_at, props.not_before, tags_to_json(props.tags),
                props.content_type, props.updated_at, key, row["seq"],
            )  # fmt: skip
        return props

    async def list_secrets(self) -> list[VersionProperties]:
        async with self._conn() as conn:
            rows = await conn.fetch(_LIST_LIVE)
        return [props_from_row(r, micros=False, current=True) for r in rows]

    async def list_versions(self, name: str) -> list[VersionProperties]:
        async with self._conn() as conn:
            rows = await conn.fetch(_LIST_VERSIONS, name_key(name))
        _check_live(rows[0] if rows else None, name, None)
        return [props_from_row(r, micros=False, current=_current(r)) for r in rows]

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        async with self._conn() as conn:
            status = await conn.execute(
                "UPDATE secrets SET deleted_at = $2, purge_at = $3 "
                "WHERE name_key = $1 AND deleted_at IS NULL",
                name_key(name),
                deleted_at,
                purge_at,
            )
            if status != "UPDATE 1":
                exists = await conn.fetchval(
                    "SELECT 1 FROM secrets WHERE name_key = $1", name_key(name)
                )
                raise is_deleted(name) if exists else not_found(name)
        return await self.get_deleted(name)

    async def _deleted_rows(self, sql: str, *params: Any) -> list[DeletedSecret]:
        async with self._conn() as conn:
            rows = await conn.fetch(sql, *params)
        return [
            DeletedSecret(
                props_from_row(r, micros=False, current=True), r["deleted_at"], r["purge_at"]
            )
            for r in rows
        ]

    async def get_deleted(self, name: str) -> DeletedSecret:
        found = await self._deleted_rows(_GET_DELETED, name_key(name))
        if not found:
            raise not_found(name)
        return found[0]

    async def list_deleted(self) -> list[DeletedSecret]:
        return await self._deleted_rows(_LIST_DELETED)

    async def recover(self, name: str) -> VersionProperties:
        async with self._conn() as conn:
            status = await conn.execute(
                "UPDATE secrets SET deleted_at = NULL, purge_at = NULL "
                "WHERE name_key = $1 AND deleted_at IS NOT NULL",
                name_key(name),
            )
        if status != "UPDATE 1":
            raise not_found(name)
        return await self.get_properties(name)

    async def purge(self, name: str, *, deleted_only: bool = True) -> None:
        sql = "DELETE FROM secrets WHERE name_key = $1"
        if deleted_only:
            sql += " AND deleted_at IS NOT NULL"
        async with self._conn() as conn:
            status = await conn.execute(sql, name_key(name))
        if status != "DELETE 1":
            raise not_found(name)

    async def purge_expired(self, now: datetime) -> int:
        async with self._conn() as conn:
            status = await conn.execute(
                "DELETE FROM secrets WHERE purge_at IS NOT NULL AND purge_at <= $1", now
            )
        return int(status.split()[-1])

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        key = name_key(name)
        async with self._conn() as conn, conn.transaction():
            if (
                await conn.fetchval("SELECT 1 FROM secrets WHERE name_key = $1 FOR UPDATE", key)
                is None
            ):
                raise not_found(name)
            status = await conn.execute(
                "UPDATE secret_versions SET enabled = false, revoked_at = $2, updated_at = $2 "
                "WHERE name_key = $1 AND revoked_at IS NULL",
                key,
                revoked_at,
            )
        return int(status.split()[-1])

    async def key_version(self) -> int:
        return (await self._load_keyring()).keyring.current_version

    async def count(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM secrets WHERE deleted_at IS NULL"))

    # -- master key rotation ---------------------------------------------------------------

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        """Add a keyring version, re-wrap every data key under it, drop the old versions.

        Readers in any process keep working: a row names the keyring version that wraps it, a
        process that meets an unknown version reloads the keyring, and a foreign key keeps each
        old version until no row refers to it. Writers that sealed under a retired version are
        refused by the insert and reseal.
        """
        # One connection does the whole rotation, so a rotation waiting for the lock never
        # holds a second connection that the running one needs (small pools stay live).
        async with self._conn() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", _KEY_ROTATION_LOCK)
            try:
                return await self._rotate_locked(conn, progress)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _KEY_ROTATION_LOCK)

    async def _rotate_locked(self, conn: Any, progress: RewrapProgress | None) -> KeyRotationResult:
        async with conn.transaction():
            previous = [
                r["version"] for r in await conn.fetch("SELECT version FROM secret_keyring")
            ]
            row = Keyring.new_row(self._master, max(previous) + 1)
            await conn.execute(_INSERT_KEYRING, row.version, row.wrapped_key)
            await conn.execute(
                "UPDATE secret_keyring SET retired_at = now() "
                "WHERE version < $1 AND retired_at IS NULL",
                row.version,
            )
        envelope = await self._load_keyring(conn)
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
                try:
                    await conn.execute(
                        "DELETE FROM secret_keyring WHERE version <> $1", row.version
                    )
                except asyncpg.ForeignKeyViolationError:
                    continue  # a writer sealed under a retired key meanwhile
                break
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
            async with conn.transaction():
                await conn.executemany(
                    "UPDATE secret_versions SET wrapped_dek = $1, kek_version = $2 "
                    "WHERE name_key = $3 AND seq = $4 AND kek_version = $5",
                    updates,
                )
            rewrapped += len(updates)
        await self._load_keyring(conn)
        return KeyRotationResult(row.version, previous, rewrapped)
