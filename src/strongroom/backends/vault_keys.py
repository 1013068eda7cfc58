"""Where Key Vault keys live: the ``vault_keys`` table of the SQLite and PostgreSQL stores (SQL
written once for both), or process memory.

A private key is sealed like a secret value: a fresh data key, wrapped by the store's keyring,
with associated data naming the key and its version under a prefix no secret name can have, so
a key's row copied onto a secret (or another key) does not open. Key rotation re-wraps these
data keys with the secrets' (``sqlite_keys``, ``postgres_keys``). Each row carries a MAC over
the fields that decide how the key may be used (its public half, operations, enabled flag).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from strongroom.backends.base import name_key
from strongroom.core.crypto import Envelope, Keyring, MasterKey, Sealed, UnknownKeyVersion
from strongroom.core.errors import StoreUnavailableError
from strongroom.core.integrity import RowMac
from strongroom.core.vault_keys import KeyProperties, NewKey, PrivateKeyBytes, key_not_found
from strongroom.db.dialect import POSTGRES, SQLITE, Prepared
from strongroom.db.rows import from_micros, tags_from_json, tags_to_json, to_micros

__all__ = [
    "REWRAP",
    "KeyStore",
    "MemoryKeyStore",
    "PostgresRunner",
    "SqlKeyStore",
    "SqlRunner",
    "SqliteRunner",
    "rewrap_params",
    "sealed_name",
]

TABLE = "vault_keys"
_COLUMNS = (
    "name_key, seq, name, version, kty, key_size, key_ops, public_key, enabled, tags, "
    "created_at, updated_at, mac"
)
_SELECT = "SELECT " + _COLUMNS
_LATEST_SEQ = "SELECT max(m.seq) FROM vault_keys m WHERE m.name_key = v.name_key"
_SQL = {
    "insert": (
        "INSERT INTO vault_keys (name_key, seq, name, version, kty, key_size, key_ops, "
        "public_key, private_key, wrapped_dek, kek_version, enabled, tags, created_at, "
        "updated_at, mac) SELECT :key, COALESCE(MAX(seq), 0) + 1, :name, :version, :kty, "
        ":key_size, :key_ops, :public_key, :private_key, :wrapped_dek, :kek_version, :enabled, "
        ":tags, :created, :created, :mac FROM vault_keys WHERE name_key = :key"
    ),
    "latest": _SELECT + " FROM vault_keys WHERE name_key = :key ORDER BY seq DESC LIMIT 1",
    "version": _SELECT + " FROM vault_keys WHERE name_key = :key AND version = :version",
    "sealed": (
        "SELECT private_key, wrapped_dek, kek_version FROM vault_keys "
        "WHERE name_key = :key AND version = :version"
    ),
    "versions": _SELECT + " FROM vault_keys WHERE name_key = :key ORDER BY seq",
    "names": (_SELECT + " FROM vault_keys v WHERE seq = (" + _LATEST_SEQ + ") ORDER BY name_key"),
    "update": (
        "UPDATE vault_keys SET enabled = :enabled, tags = :tags, updated_at = :updated, "
        "mac = :mac WHERE name_key = :key AND version = :version AND mac = :old_mac"
    ),
}
_QUERIES = {d.name: {k: d.prepare(v) for k, v in _SQL.items()} for d in (SQLITE, POSTGRES)}
#: Key rotation: rows whose data key another keyring version wraps, and their update.
_REWRAP_SELECT = (
    "SELECT name_key, version, private_key, wrapped_dek, kek_version FROM vault_keys "
    "WHERE kek_version <> :kek"
)
_REWRAP_UPDATE = (
    "UPDATE vault_keys SET wrapped_dek = :dek, kek_version = :kek "
    "WHERE name_key = :key AND version = :version AND kek_version = :old"
)
REWRAP = {
    d.name: (d.prepare(_REWRAP_SELECT), d.prepare(_REWRAP_UPDATE)) for d in (SQLITE, POSTGRES)
}


def sealed_name(key: str) -> str:
    """The name a key's sealed private half is bound to (no secret name contains ``/``)."""
    return "vault-key/" + key


def rewrap_params(envelope: Envelope, rows: list[Any], update: Prepared) -> list[list[Any]]:
    """Each row's data key wrapped by the current keyring version (``update``'s arguments)."""
    updates = []
    for r in rows:
        sealed = Sealed(bytes(r["private_key"]), bytes(r["wrapped_dek"]), r["kek_version"])
        fresh = envelope.rewrap(sealed_name(r["name_key"]), r["version"], sealed)
        params = {"dek": fresh.wrapped_dek, "kek": fresh.kek_version, "key": r["name_key"],
                  "version": r["version"], "old": r["kek_version"]}  # fmt: skip
        updates.append(update.args(params))
    return updates


def _mac_fields(key: str, p: KeyProperties | NewKey) -> list[object]:
    return [key, p.name, p.version, p.kty, p.key_size, ",".join(p.key_ops), p.public_der,
            p.enabled]  # fmt: skip


@runtime_checkable
class KeyStore(Protocol):
    """Key versions: the public half as properties, the private half only on request."""

    async def add_version(self, new: NewKey, private: PrivateKeyBytes) -> KeyProperties: ...

    async def get(self, name: str, version: str | None = None) -> KeyProperties: ...

    async def private_key(self, props: KeyProperties) -> PrivateKeyBytes: ...

    async def list_keys(self) -> list[KeyProperties]: ...

    async def list_versions(self, name: str) -> list[KeyProperties]: ...

    async def update(
        self, props: KeyProperties, *, enabled: bool, tags: dict[str, str], updated_at: datetime
    ) -> KeyProperties: ...


class SqlRunner(Protocol):
    """What a SQL store lends its key store: reads, and writes that say whether a constraint
    (a unique key, the keyring's foreign key) refused them."""

    dialect: str

    async def fetch(self, sql: Prepared, params: dict[str, Any]) -> list[Mapping[str, Any]]: ...

    async def execute(
        self, sql: Prepared, params: dict[str, Any], *, serial: str | None = None
    ) -> bool:
        """Run a write; False when a constraint refused it. Writes given the same ``serial``
        run one at a time, so one that reads what it builds on (a key's next sequence
        number) sees every earlier one committed."""
        ...


#: The first half of the PostgreSQL advisory lock a key's new versions take (the second is a
#: hash of the schema and the key's name): two int4 keys, apart from the single-key locks.
_SERIAL_LOCK_CLASS = 0x5EC7


class SqlKeyStore:
    """Key versions in ``vault_keys``, for SQLite and PostgreSQL alike."""

    def __init__(
        self,
        runner: SqlRunner,
        mac: RowMac,
        envelope: Callable[[], Awaitable[Envelope]],
        reload: Callable[[], Awaitable[Envelope]],
    ) -> None:
        self._run = runner
        self._q = _QUERIES[runner.dialect]
        self._mac = mac
        self._envelope = envelope
        self._reload = reload

    def _props(self, row: Mapping[str, Any]) -> KeyProperties:
        props = KeyProperties(
            name=row["name"], version=row["version"], kty=row["kty"], key_size=row["key_size"],
            key_ops=tuple(json.loads(row["key_ops"])), public_der=bytes(row["public_key"]),
            enabled=bool(row["enabled"]), tags=tags_from_json(row["tags"]),
            created_at=_when(row["created_at"]), updated_at=_when(row["updated_at"]),
        )  # fmt: skip
        what = f"key {props.name!r} version {props.version}"
        self._mac.check(TABLE, _mac_fields(row["name_key"], props), row["mac"], what)
        return props

    async def add_version(self, new: NewKey, private: PrivateKeyBytes) -> KeyProperties:
        key = name_key(new.name)
        for _attempt in range(3):
            sealed = (await self._envelope()).seal(sealed_name(key), new.version, private.reveal())
            params = {
                "key": key, "name": new.name, "version": new.version, "kty": new.kty,
                "key_size": new.key_size, "key_ops": json.dumps(list(new.key_ops)),
                "public_key": new.public_der, "private_key": sealed.ciphertext,
                "wrapped_dek": sealed.wrapped_dek, "kek_version": sealed.kek_version,
                "enabled": int(new.enabled), "tags": tags_to_json(new.tags),
                "created": to_micros(new.created_at),
                "mac": self._mac.mac(TABLE, _mac_fields(key, new)),
            }  # fmt: skip
            if await self._run.execute(self._q["insert"], params, serial=key):
                return await self.get(new.name, new.version)
            await self._reload()  # a retired keyring version, or another writer's version
        raise StoreUnavailableError("the key could not be stored (concurrent changes); try again")

    async def get(self, name: str, version: str | None = None) -> KeyProperties:
        params = {"key": name_key(name), "version": version}
        rows = await self._run.fetch(self._q["latest" if version is None else "version"], params)
        if not rows:
            raise key_not_found(name, version)
        return self._props(rows[0])

    async def private_key(self, props: KeyProperties) -> PrivateKeyBytes:
        key = name_key(props.name)
        rows = await self._run.fetch(self._q["sealed"], {"key": key, "version": props.version})
        if not rows:
            raise key_not_found(props.name, props.version)
        row = rows[0]
        sealed = Sealed(bytes(row["private_key"]), bytes(row["wrapped_dek"]), row["kek_version"])
        try:
            envelope = await self._envelope()
            return PrivateKeyBytes(envelope.open(sealed_name(key), props.version, sealed))
        except UnknownKeyVersion:  # rotated by another process: load the new keyring
            envelope = await self._reload()
            return PrivateKeyBytes(envelope.open(sealed_name(key), props.version, sealed))

    async def list_keys(self) -> list[KeyProperties]:
        return [self._props(r) for r in await self._run.fetch(self._q["names"], {})]

    async def list_versions(self, name: str) -> list[KeyProperties]:
        rows = await self._run.fetch(self._q["versions"], {"key": name_key(name)})
        return [self._props(r) for r in rows]

    async def update(
        self, props: KeyProperties, *, enabled: bool, tags: dict[str, str], updated_at: datetime
    ) -> KeyProperties:
        key = name_key(props.name)
        changed = replace(props, enabled=enabled, tags=tags, updated_at=updated_at)
        params = {
            "key": key, "version": props.version, "enabled": int(enabled),
            "tags": tags_to_json(tags), "updated": to_micros(updated_at),
            "mac": self._mac.mac(TABLE, _mac_fields(key, changed)),
            "old_mac": self._mac.mac(TABLE, _mac_fields(key, props)),
        }  # fmt: skip
        await self._run.execute(self._q["update"], params)
        return await self.get(props.name, props.version)


def _when(micros: int) -> datetime:
    found = from_micros(micros)
    if found is None:  # pragma: no cover (NOT NULL columns)
        raise StoreUnavailableError("a key row has no time")
    return found


class MemoryKeyStore:
    """Key versions in process memory (the memory profile), private halves still sealed, under
    an ephemeral keyring of their own."""

    def __init__(self) -> None:
        master = MasterKey.generate()[0]
        self._envelope = Envelope(Keyring.load(master, [Keyring.new_row(master, 1)]))
        self._keys: dict[str, list[tuple[KeyProperties, Sealed]]] = {}

    async def add_version(self, new: NewKey, private: PrivateKeyBytes) -> KeyProperties:
        key = name_key(new.name)
        props = KeyProperties(
            name=new.name, version=new.version, kty=new.kty, key_size=new.key_size,
            key_ops=new.key_ops, public_der=new.public_der, enabled=new.enabled, tags=new.tags,
            created_at=new.created_at, updated_at=new.created_at,
        )  # fmt: skip
        sealed = self._envelope.seal(sealed_name(key), new.version, private.reveal())
        self._keys.setdefault(key, []).append((props, sealed))
        return props

    def _find(self, name: str, version: str | None) -> tuple[int, KeyProperties, Sealed]:
        versions = self._keys.get(name_key(name), [])
        for index in range(len(versions) - 1, -1, -1):
            props, sealed = versions[index]
            if version is None or props.version == version:
                return index, props, sealed
        raise key_not_found(name, version)

    async def get(self, name: str, version: str | None = None) -> KeyProperties:
        return self._find(name, version)[1]

    async def private_key(self, props: KeyProperties) -> PrivateKeyBytes:
        _, _, sealed = self._find(props.name, props.version)
        key = sealed_name(name_key(props.name))
        return PrivateKeyBytes(self._envelope.open(key, props.version, sealed))

    async def list_keys(self) -> list[KeyProperties]:
        return [versions[-1][0] for _, versions in sorted(self._keys.items())]

    async def list_versions(self, name: str) -> list[KeyProperties]:
        return [props for props, _ in self._keys.get(name_key(name), [])]

    async def update(
        self, props: KeyProperties, *, enabled: bool, tags: dict[str, str], updated_at: datetime
    ) -> KeyProperties:
        index, found, sealed = self._find(props.name, props.version)
        changed = replace(found, enabled=enabled, tags=tags, updated_at=updated_at)
        self._keys[name_key(props.name)][index] = (changed, sealed)
        return changed


class SqliteRunner:
    """The SQLite store's read connection and writer thread, for its key store."""

    dialect = "sqlite"

    def __init__(
        self,
        query: Callable[[str, list[Any]], list[Any]],
        write: Callable[[Callable[[sqlite3.Connection], bool]], Awaitable[bool]],
    ) -> None:
        self._query = query
        self._write = write

    async def fetch(self, sql: Prepared, params: dict[str, Any]) -> list[Mapping[str, Any]]:
        return self._query(sql.text, sql.args(params))

    async def execute(
        self, sql: Prepared, params: dict[str, Any], *, serial: str | None = None
    ) -> bool:
        """``serial`` needs nothing here: the file's writes already run one at a time."""
        args = sql.args(params)

        def run(conn: sqlite3.Connection) -> bool:
            try:
                conn.execute(sql.text, args)
            except sqlite3.IntegrityError:
                return False
            return True

        return await self._write(run)


class PostgresRunner:
    """The PostgreSQL store's pool, for its key store."""

    dialect = "postgres"

    def __init__(self, connection: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self._connection = connection

    async def fetch(self, sql: Prepared, params: dict[str, Any]) -> list[Mapping[str, Any]]:
        async with self._connection() as conn:
            found: list[Mapping[str, Any]] = await conn.fetch(sql.text, *sql.args(params))
            return found

    async def execute(
        self, sql: Prepared, params: dict[str, Any], *, serial: str | None = None
    ) -> bool:
        """With ``serial``, in a transaction that first takes that value's advisory lock: the
        write's statement then starts after every earlier one with it has committed (under
        READ COMMITTED each statement sees what was committed when it started)."""
        import asyncpg  # noqa: PLC0415 (only the PostgreSQL profile loads the driver)

        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    if serial is not None:
                        await conn.execute(
                            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || $2))",
                            _SERIAL_LOCK_CLASS,
                            ":" + serial,
                        )
                    await conn.execute(sql.text, *sql.args(params))
            except asyncpg.IntegrityConstraintViolationError:
                return False
            return True
