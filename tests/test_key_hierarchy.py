"""The master key is only ever the input of HKDF: the keyring is wrapped under a derived key,
and a store whose keyring was wrapped by the master key itself is re-wrapped when opened."""

from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from helpers_raw import raw_execute, raw_fetch
from strongroom import SecretsManager, Settings, Strongroom
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import ConfigurationError
from strongroom.core.keys import Purpose

pytestmark = pytest.mark.stores("sqlite", "postgres")

_NONCE = 12


def _raw_master(settings: Settings) -> bytes:
    assert settings.master_key is not None
    return base64.b64decode(settings.master_key.get_secret_value())


def _kek_aad(version: int) -> bytes:
    return b"strongroom/1/kek/" + str(version).encode()


def _open_with(key: bytes, version: int, blob: bytes) -> bytes:
    return AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], _kek_aad(version))


async def test_the_keyring_is_wrapped_by_a_derived_key_not_the_master_key(
    store_settings: Settings,
) -> None:
    async with await Strongroom.open(store_settings) as app:
        await SecretsManager(app).create_secret("wrapped", "value")
        await SecretsManager(app).rotate_master_key()
    raw = _raw_master(store_settings)
    wrapping = MasterKey(raw).derive(Purpose.KEK_WRAP)
    rows = await raw_fetch(store_settings, "SELECT version, wrapped_key FROM secret_keyring")
    assert rows
    for version, blob in rows:
        with pytest.raises(InvalidTag):
            _open_with(raw, version, bytes(blob))  # the master key is no cipher key
        assert len(_open_with(wrapping, version, bytes(blob))) == 32


async def test_a_store_wrapped_by_the_master_key_is_upgraded_when_opened(
    store_settings: Settings,
) -> None:
    """Make the keyring what a store of the previous release holds (every row wrapped by the
    master key itself, marked as such by the migration), then open it: every value reads
    back, and the rows are now wrapped by the derived key only."""
    values = {f"legacy-{i}": secrets.token_urlsafe(16) for i in range(3)}
    async with await Strongroom.open(store_settings) as app:
        for name, value in values.items():
            await SecretsManager(app).create_secret(name, value)
    raw = _raw_master(store_settings)
    wrapping = MasterKey(raw).derive(Purpose.KEK_WRAP)
    legacy = []
    for version, blob in await raw_fetch(
        store_settings, "SELECT version, wrapped_key FROM secret_keyring"
    ):
        kek = _open_with(wrapping, version, bytes(blob))
        nonce = secrets.token_bytes(_NONCE)
        sealed = nonce + AESGCM(raw).encrypt(nonce, kek, _kek_aad(version))
        legacy.append(
            ("UPDATE secret_keyring SET wrapped_key = ?, wrapping = 1 WHERE version = ?",
             (sealed, version))
        )  # fmt: skip
    await raw_execute(store_settings, *legacy)

    async with await Strongroom.open(store_settings) as app:
        for name, value in values.items():
            assert await SecretsManager(app).get_secret(name) == value
    rows = await raw_fetch(
        store_settings, "SELECT version, wrapped_key, wrapping FROM secret_keyring"
    )
    for version, blob, kind in rows:
        assert kind == 2
        with pytest.raises(InvalidTag):
            _open_with(raw, version, bytes(blob))
        _open_with(wrapping, version, bytes(blob))


def test_keys_are_derived_only_for_named_purposes() -> None:
    master = MasterKey.generate()[0]
    derived = {p: master.derive(p) for p in Purpose}
    assert len(set(derived.values())) == len(Purpose)  # one independent key per purpose
    with pytest.raises(ConfigurationError):
        master.derive(b"strongroom/anything/1")  # type: ignore[arg-type]
