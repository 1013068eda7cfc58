"""Stored rows are tamper-evident and never hold a plaintext value (SQLite and PostgreSQL).

Each test writes through the public API, then opens the database directly (sqlite3, asyncpg)
to swap or flip bytes, or to search every stored byte for the values written. The memory store
keeps nothing at rest, so none of this applies to it.
"""

from __future__ import annotations

import secrets
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpers_raw import past_read_window
from helpers_settings import PG_URL, make_settings, new_master_key
from strongroom import (
    DecryptionError,
    SecretsManager,
    Settings,
    Strongroom,
    WrongMasterKeyError,
)

pytestmark = pytest.mark.stores("sqlite", "postgres")


_TABLES = ("secret_keyring", "secrets", "secret_versions")


# -- raw access to the stored rows -----------------------------------------------------------


async def _pg_connect(settings: Settings) -> Any:
    return await asyncpg.connect(PG_URL, server_settings={"search_path": settings.pg_schema})


_CURRENT_ROW = (
    " WHERE name_key = {p1} AND seq = (SELECT current_seq FROM secrets WHERE name_key = {p1})"
)


async def read_sealed(settings: Settings, name: str) -> tuple[bytes, bytes]:
    """(ciphertext, wrapped_dek) of the current version of ``name``, as stored."""
    sql = "SELECT ciphertext, wrapped_dek FROM secret_versions" + _CURRENT_ROW
    if settings.backend.value == "sqlite":
        with closing(sqlite3.connect(settings.sqlite_path)) as conn:
            row = conn.execute(sql.format(p1="?1"), (name.lower(),)).fetchone()
    else:
        conn = await _pg_connect(settings)
        try:
            row = await conn.fetchrow(sql.format(p1="$1"), name.lower())
        finally:
            await conn.close()
    assert row is not None
    return bytes(row[0]), bytes(row[1])


async def write_sealed(settings: Settings, name: str, ciphertext: bytes, wrapped: bytes) -> None:
    """Overwrite the stored ciphertext and wrapped data key of the current version of ``name``."""
    if settings.backend.value == "sqlite":
        sql = "UPDATE secret_versions SET ciphertext = ?2, wrapped_dek = ?3" + _CURRENT_ROW
        with closing(sqlite3.connect(settings.sqlite_path)) as conn, conn:
            updated = conn.execute(sql.format(p1="?1"), (name.lower(), ciphertext, wrapped))
            assert updated.rowcount == 1
    else:
        sql = "UPDATE secret_versions SET ciphertext = $2, wrapped_dek = $3" + _CURRENT_ROW
        conn = await _pg_connect(settings)
        try:
            assert await conn.execute(sql.format(p1="$1"), name.lower(), ciphertext, wrapped) == (
                "UPDATE 1"
            )
        finally:
            await conn.close()
    await past_read_window(settings)


async def snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the store (secrets, keyring, audit, ...), in a stable order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    if settings.backend.value == "sqlite":
        with closing(sqlite3.connect(settings.sqlite_path)) as conn:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for (table,) in tables.fetchall():
                out[table] = sorted(conn.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
    else:
        conn = await _pg_connect(settings)
        try:
            for table in await _pg_tables(conn, settings):
                rows = await conn.fetch(f'SELECT * FROM "{table}"')
                out[table] = sorted((tuple(r) for r in rows), key=repr)
        finally:
            await conn.close()
    assert set(_TABLES) <= set(out)
    return out


async def _pg_tables(conn: Any, settings: Settings) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
        settings.pg_schema,
    )
    return [r["table_name"] for r in rows]


def _flip(data: bytes, index: int) -> bytes:
    raw = bytearray(data)
    raw[index] ^= 0x01
    return bytes(raw)


def _canary(label: str) -> str:
    return f"PLAINTEXT-CANARY-{label}-{secrets.token_hex(8)}"


# -- a row moved onto another secret ------------------------------------------------------------


async def test_row_copied_onto_another_secret_does_not_decrypt(
    manager: SecretsManager, store_settings: Settings
) -> None:
    value_a, value_b = _canary("a"), _canary("b")
    await manager.create_secret("tamper-a", value_a)
    await manager.create_secret("tamper-b", value_b)
    ciphertext_a, wrapped_a = await read_sealed(store_settings, "tamper-a")

    await write_sealed(store_settings, "tamper-b", ciphertext_a, wrapped_a)

    with pytest.raises(DecryptionError) as caught:
        await manager.get_secret("tamper-b")
    message = str(caught.value)
    assert "cannot decrypt" in message
    for leaked in (value_a, value_b):
        assert leaked not in message
        assert leaked not in repr(caught.value)
    assert await manager.get_secret("tamper-a") == value_a


async def test_row_copied_onto_another_version_of_the_same_secret_does_not_decrypt(
    manager: SecretsManager, store_settings: Settings
) -> None:
    first = await manager.create_secret("tamper-versions", "first value")
    ciphertext_1, wrapped_1 = await read_sealed(store_settings, "tamper-versions")
    await manager.update_secret("tamper-versions", "second value")

    await write_sealed(store_settings, "tamper-versions", ciphertext_1, wrapped_1)

    with pytest.raises(DecryptionError, match="cannot decrypt"):
        await manager.get_secret("tamper-versions")
    assert await manager.get_secret("tamper-versions", first["version"]) == "first value"


# -- single flipped bytes -------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["ciphertext", "wrapped_dek"])
@pytest.mark.parametrize("where", ["nonce", "body", "tag"])
async def test_flipped_byte_does_not_decrypt(
    manager: SecretsManager, store_settings: Settings, field: str, where: str
) -> None:
    value = _canary("flip")
    await manager.create_secret("tamper-flip", value)
    ciphertext, wrapped = await read_sealed(store_settings, "tamper-flip")
    index = {"nonce": 0, "body": 14, "tag": -1}[where]  # 12-byte nonce, body, 16-byte tag
    if field == "ciphertext":
        ciphertext = _flip(ciphertext, index)
    else:
        wrapped = _flip(wrapped, index)

    await write_sealed(store_settings, "tamper-flip", ciphertext, wrapped)

    with pytest.raises(DecryptionError) as caught:
        await manager.get_secret("tamper-flip")
    assert "cannot decrypt" in str(caught.value)
    assert value not in str(caught.value)


async def set_kek_version(settings: Settings, name: str, kek_version: int) -> None:
    """Point the current version of ``name`` at another keyring version, foreign key or not."""
    if settings.backend.value == "sqlite":
        sql = "UPDATE secret_versions SET kek_version = ?2" + _CURRENT_ROW
        with closing(sqlite3.connect(settings.sqlite_path)) as conn, conn:  # foreign keys off
            assert conn.execute(sql.format(p1="?1"), (name.lower(), kek_version)).rowcount == 1
    else:
        sql = "UPDATE secret_versions SET kek_version = $2" + _CURRENT_ROW
        conn = await _pg_connect(settings)
        try:
            async with conn.transaction():
                # As a superuser can: skip the foreign key's trigger for this transaction.
                await conn.execute("SET LOCAL session_replication_role = replica")
                status = await conn.execute(sql.format(p1="$1"), name.lower(), kek_version)
            assert status == "UPDATE 1"
        finally:
            await conn.close()
    await past_read_window(settings)


async def test_row_naming_an_unknown_keyring_version_does_not_decrypt(
    manager: SecretsManager, store_settings: Settings
) -> None:
    """A row that names a keyring version the store does not have is reported like any other
    undecryptable row, with the typed error, not a bare lookup failure."""
    value = _canary("kek")
    await manager.create_secret("tamper-kek", value)
    await manager.create_secret("tamper-kek-other", "other value")
    await set_kek_version(store_settings, "tamper-kek", 99)

    with pytest.raises(DecryptionError) as caught:
        await manager.get_secret("tamper-kek")
    assert "cannot decrypt" in str(caught.value)
    assert value not in str(caught.value)
    assert await manager.get_secret("tamper-kek-other") == "other value"


# -- the wrong master key -------------------------------------------------------------------------


async def test_wrong_master_key_is_refused_at_open_and_changes_nothing(
    store_settings: Settings,
) -> None:
    settings = store_settings
    values = {f"wrongkey-{i}": _canary(str(i)) for i in range(3)}
    async with await Strongroom.open(settings) as app:
        manager = SecretsManager(app)
        for name, value in values.items():
            await manager.create_secret(name, value)
        await manager.update_secret("wrongkey-0", values["wrongkey-0"] + "-v2")
        values["wrongkey-0"] += "-v2"
        await manager.rotate_master_key()  # a keyring at version 2, not just the first row
    before = await snapshot(settings)
    assert len(before["secret_keyring"]) == 1

    wrong = make_settings(
        settings.backend.value,
        settings.home,
        schema=settings.pg_schema,
        master_key=new_master_key(),
    )
    for _attempt in range(2):  # a second try must meet the same, untouched store
        with pytest.raises(WrongMasterKeyError) as caught:
            await Strongroom.open(wrong)
        assert "master key" in str(caught.value).lower()
        assert await snapshot(settings) == before

    async with await Strongroom.open(settings) as app:
        manager = SecretsManager(app)
        assert sorted(s["name"] for s in await manager.list_secrets()) == sorted(values)
        for name, value in values.items():
            assert await manager.get_secret(name) == value
    assert len((await snapshot(settings))["secret_keyring"]) == 1


# -- no plaintext at rest -------------------------------------------------------------------------


async def _lifecycle(manager: SecretsManager, values: dict[str, str], tag: str) -> None:
    """Every call that writes or re-writes a value or its data key."""
    await manager.create_secret("canary-text", values["created"], metadata={"owner": tag})
    await manager.update_secret("canary-text", values["updated"])
    await manager.create_secret(
        "canary-json", {"user": "svc", "password": values["json"]}, metadata={"owner": tag}
    )
    await manager.update_secret("canary-json", {"user": "svc", "password": values["json2"]})
    await manager.delete_secret("canary-text")
    await manager.recover_deleted_secret("canary-text")
    await manager.rotate_master_key()
    # The lifecycle really happened: everything still reads back.
    assert await manager.get_secret("canary-text") == values["updated"]
    assert await manager.get_secret("canary-json") == {"user": "svc", "password": values["json2"]}


def _value_canaries() -> dict[str, str]:
    return {k: _canary(k) for k in ("created", "updated", "json", "json2")}


def _sqlite_bytes(path: Path) -> bytes:
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return b"".join(f.read_bytes() for f in files if f.exists())


@pytest.mark.stores("sqlite")
async def test_sqlite_file_holds_no_plaintext(store_settings: Settings) -> None:
    values, tag = _value_canaries(), _canary("tag")
    path = store_settings.sqlite_path
    async with await Strongroom.open(store_settings) as app:
        await _lifecycle(SecretsManager(app), values, tag)
        while_open = _sqlite_bytes(path)  # the WAL still holds the recent pages
    after_close = _sqlite_bytes(path)

    for raw in (while_open, after_close):
        assert tag.encode() in raw  # the search does find what is stored in clear
        for value in values.values():
            assert value.encode() not in raw
            assert value.encode("utf-16-le") not in raw


@pytest.mark.stores("postgres")
async def test_postgres_tables_hold_no_plaintext(store_settings: Settings) -> None:
    values, tag = _value_canaries(), _canary("tag")
    async with await Strongroom.open(store_settings) as app:
        await _lifecycle(SecretsManager(app), values, tag)

    conn = await _pg_connect(store_settings)
    try:
        tables = await _pg_tables(conn, store_settings)
        assert set(_TABLES) <= set(tables)
        dump = []
        for table in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t')
            dump.extend(r["row"] for r in rows)
    finally:
        await conn.close()
    text = "\n".join(dump)

    assert tag in text  # the search does find what is stored in clear
    for value in values.values():
        assert value not in text
        assert value.encode().hex() not in text  # bytea columns print as hex
