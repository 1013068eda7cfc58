"""The cluster profile: PostgreSQL through an asyncpg pool, values envelope-encrypted.

Safe for many processes at once: a secret's changes are serialised by a row lock on it
(``SELECT ... FOR UPDATE``), every state change is one transaction, and master-key rotation
holds an advisory lock while foreign keys keep a retired keyring version alive until no row
needs it. Every row read is checked against its MAC before it is trusted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from strongroom.backends import postgres_keys
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
from strongroom.backends.vault_keys import PostgresRunner, SqlKeyStore
from strongroom.backends.write_batches import Failed, NameBatches
from strongroom.core.crypto import Envelope, MasterKey, Sealed, UnknownKeyVersion
from strongroom.core.errors import (
    DecryptionError,
    StoreUnavailableError,
    StrongroomError,
    TamperedError,
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
from strongroom.db.rows import tags_to_json

__all__ = ["PostgresStore", "postgres_secret_hook"]

T = TypeVar("T")

Q = QUERIES["postgres"]
_LOCKED = Q["secret_row"].text + " FOR UPDATE"


class _StaleKeyring(Exception):
    """The keyring version used to seal was retired by a key rotation: reseal and retry."""


async def _run(conn: Any, key: str, params: dict[str, Any]) -> str:
    status: str = await conn.execute(Q[key].text, *Q[key].args(params))
    return status


async def _row(conn: Any, key: str, params: dict[str, Any]) -> Any:
    return await conn.fetchrow(Q[key].text, *Q[key].args(params))


def postgres_secret_hook(mac: RowMac) -> Any:
    """Migration 10's hook: MAC the secret rows a store made before row MACs."""

    async def adopt(conn: Any) -> None:
        for secret in await conn.fetch(Q["all_secrets"].text):
            versions = await conn.fetch(Q["versions_of"].text, secret["name_key"])
            secret_params, version_rows = adoption(mac, secret, list(versions))
            await _run(conn, "adopt_secret", secret_params)
            for params in version_rows:
                await _run(conn, "revoke_version", params)  # writes exactly the MACed columns

    return adopt


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
    ) -> None:
        self._dsn = dsn
        self._master = master_key
        self._mac = integrity or RowMac(master_key.derive(Purpose.METADATA_MAC))
        self.schema = check_schema(schema)
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._envelope: Envelope | None = None
        self._opened = OpenedVersions()  # rows already checked and decrypted
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
        return pooled(self._pool, "the PostgreSQL store", (_StaleKeyring,))

    async def _load_keyring(self, conn: Any = None) -> Envelope:
        if conn is None:
            async with self._conn() as own:
                return await self._load_keyring(own)
        self._envelope = await postgres_keys.load_keyring(self._master, conn)
        return self._envelope

    async def _ensure_envelope(self) -> Envelope:
        return self._envelope or await self._load_keyring()

    def vault_keys(self) -> SqlKeyStore:
        """Key Vault keys, in this schema beside the secrets and sealed by the same keyring."""
        runner = PostgresRunner(self._conn)
        return SqlKeyStore(runner, self._mac, self._ensure_envelope, self._load_keyring)

    async def _locked_secret(self, conn: Any, key: str, name: str) -> Any:
        row = await conn.fetchrow(_LOCKED, key)
        if row is None:
            raise not_found(name)
        return row

    # -- the protocol ----------------------------------------------------------------------

    async def write_version(
        self, new: NewVersion, value: bytes, mode: WriteMode
    ) -> VersionProperties:
        key = name_key(new.name)
        if mode is WriteMode.UPDATE:
            return await self._updates.submit(key, (new.name, lambda _current: (new, value)))
        return await self._write_sealed(
            lambda conn, envelope: self._create(
                conn, key, new, envelope.seal(key, new.version, value)
            )
        )

    async def write_update(self, name: str, build: VersionBuilder) -> VersionProperties:
        """A new version built from the current one's properties, read under the row lock of
        the batch that writes it (see :func:`strongroom.backends.base.write_update`)."""
        return await self._updates.submit(name_key(name), (name, build))

    async def _commit_updates(
        self, key: str, items: list[tuple[str, VersionBuilder]]
    ) -> list[VersionProperties | Failed]:
        """New versions of one secret in one transaction (see :class:`NameBatches`)."""
        return await self._write_sealed(
            lambda conn, envelope: self._update(conn, key, items, envelope)
        )

    async def _write_sealed(self, write: Callable[[Any, Envelope], Awaitable[T]]) -> T:
        """``write(conn, envelope)`` in a transaction, sealing under the current keyring; done
        again when the keyring changed meanwhile."""
        for _attempt in range(3):
            envelope = await self._ensure_envelope()
            try:
                async with self._conn() as conn, conn.transaction():
                    return await write(conn, envelope)
            except _StaleKeyring:
                await self._load_keyring()
        raise StoreUnavailableError("the keyring kept changing during the write; try again")

    async def _create(
        self, conn: Any, key: str, new: NewVersion, sealed: Sealed
    ) -> VersionProperties:
        first = {"name": new.name, "current_seq": 1, "created_at": new.created_at, "gen": 1,
                 "revoked_gen": None, "deleted_at": None, "purge_at": None}  # fmt: skip
        mac = self._mac.mac(SECRETS, secret_fields(key, first))
        params = {"key": key, "name": new.name, "created": new.created_at, "mac": mac}
        if await _run(conn, "insert_secret", params) != "INSERT 0 1":
            row = await _row(conn, "secret_row", {"key": key})
            raise name_conflict(new.name, deleted=row is not None and bool(row["deleted_at"]))
        return await self._insert_version(conn, key, new.name, (1, 1), new, sealed)

    async def _update(
        self, conn: Any, key: str, items: list[tuple[str, VersionBuilder]], envelope: Envelope
    ) -> list[VersionProperties | Failed]:
        """Versions after the current one, each built from the one before it (a refused build
        fails its writer alone), the secret's row moved past all of them at once: the rows
        are those of the same writes one after another."""
        name = items[0][0]
        state = checked_secret(self._mac, key, await self._locked_secret(conn, key, name))
        if state.deleted_at is not None:
            raise is_deleted(name)
        current = checked(self._mac, await self._fetch_live(name, None, conn), micros=False)
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
            moved, params = advance(self._mac, key, moved, current_seq=moved.current_seq + 1)
            moves.append((moved.current_seq, moved.gen))
        if moves:
            await _run(conn, "update_secret", {**params, "old_gen": state.gen})
        at = iter(moves)
        results: list[VersionProperties | Failed] = []
        for one in built:
            if isinstance(one, Failed):
                results.append(one)
                continue
            new, value = one
            sealed = envelope.seal(key, new.version, value)
            results.append(await self._insert_version(conn, key, state.name, next(at), new, sealed))
        return results

    async def _insert_version(
        self, conn: Any, key: str, name: str, at: tuple[int, int], new: NewVersion, sealed: Sealed
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
        status = await _run(conn, "insert_version", version_params(self._mac, key, values, gen))
        if status != "INSERT 0 1":
            raise _StaleKeyring
        return new.written_as(name)

    async def _fetch_live(self, name: str, version: str | None, conn: Any = None) -> Any:
        which = "select_current" if version is None else "select_version"
        params = {"key": name_key(name), "version": version}
        if conn is None:
            async with self._conn() as own:
                return checked_live(await _row(own, which, params), name, version)
        return checked_live(await _row(conn, which, params), name, version)

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
        async with self._conn() as conn, conn.transaction():
            await self._locked_secret(conn, key, name)
            row = await self._fetch_live(name, version, conn)
            props = changes.apply(checked(self._mac, row, micros=False))
            moved, params = advance(self._mac, key, checked_secret(self._mac, key, row, "s_"))
            await _run(conn, "update_secret", params)
            values = {
                "seq": row["seq"], "version": row["version"], "enabled": props.enabled,
                "expires_at": props.expires_at, "not_before": props.not_before,
                "tags": tags_to_json(props.tags), "content_type": props.content_type,
                "updated_at": props.updated_at, "revoked_at": row["revoked_at"],
                "created": row["created_at"],
            }  # fmt: skip
            await _run(conn, "update_version", version_params(self._mac, key, values, moved.gen))
        return props

    async def list_secrets(self) -> list[VersionProperties]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["list_live"].text)
        return [checked(self._mac, r, micros=False, current=True) for r in rows]

    async def list_versions(self, name: str) -> list[VersionProperties]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q["list_versions"].text, name_key(name))
        checked_live(rows[0] if rows else None, name, None)
        return [checked(self._mac, r, micros=False) for r in rows]

    async def _move(self, name: str, deleted: bool, **changes: Any) -> None:
        """Soft-delete (``deleted=False``: the secret must be live) or recover it."""
        key = name_key(name)
        async with self._conn() as conn, conn.transaction():
            state = checked_secret(self._mac, key, await self._locked_secret(conn, key, name))
            if (state.deleted_at is not None) != deleted:
                raise is_deleted(name) if not deleted else not_found(name)
            await _run(conn, "update_secret", advance(self._mac, key, state, **changes)[1])

    async def delete(self, name: str, *, deleted_at: datetime, purge_at: datetime) -> DeletedSecret:
        self._opened.drop(name_key(name))
        await self._move(name, False, deleted_at=deleted_at, purge_at=purge_at)
        return await self.get_deleted(name)

    async def _deleted_rows(self, key: str, *params: Any) -> list[DeletedSecret]:
        async with self._conn() as conn:
            rows = await conn.fetch(Q[key].text, *params)
        return [
            DeletedSecret(
                checked(self._mac, r, micros=False, current=True), r["deleted_at"], r["purge_at"]
            )
            for r in rows
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
        self._opened.drop(name_key(name))
        sql = Q["purge"].text + (" AND deleted_at IS NOT NULL" if deleted_only else "")
        async with self._conn() as conn:
            status = await conn.execute(sql, name_key(name))
        if status != "DELETE 1":
            raise not_found(name)

    async def purge_expired(self, now: datetime) -> int:
        self._opened.clear()
        async with self._conn() as conn:
            status = await _run(conn, "purge_expired", {"now": now})
        return int(status.split()[-1])

    async def revoke_all(self, name: str, revoked_at: datetime) -> int:
        """Revoke every version, even of a secret whose rows fail their MACs (the failure is
        alerted): an emergency is never blocked by what it responds to."""
        key = name_key(name)
        async with self._conn() as conn, conn.transaction():
            row = await self._locked_secret(conn, key, name)
            try:
                state = checked_secret(self._mac, key, row)
            except TamperedError:
                state = checked_secret(self._mac, key, row, verify=False)
            moved, params = advance(self._mac, key, state, revoked_gen=state.gen + 1)
            await _run(conn, "update_secret", params)
            count = 0
            for version in await conn.fetch(Q["versions_of"].text, key):
                values, fresh = revoked_params(self._mac, key, version, moved.gen, revoked_at)
                await _run(conn, "revoke_version", values)
                count += int(fresh)
        return count

    async def key_version(self) -> int:
        return (await self._load_keyring()).keyring.current_version

    async def count(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval(Q["count"].text))

    async def rotate_key(self, progress: RewrapProgress | None = None) -> KeyRotationResult:
        """Add a keyring version and re-wrap every data key under it (see postgres_keys)."""
        # One connection does the whole rotation, so a rotation waiting for the lock never
        # holds a second connection that the running one needs (small pools stay live).
        async with self._conn() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", postgres_keys.KEY_ROTATION_LOCK)
            try:
                result, self._envelope = await postgres_keys.rotate_locked(
                    self._master, conn, progress
                )
                return result
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", postgres_keys.KEY_ROTATION_LOCK)
