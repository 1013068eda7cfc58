"""Envelope encryption without any store: binding, tamper detection, keyring versions."""

from __future__ import annotations

import pickle

import pytest

from strongroom.core.crypto import Envelope, Keyring, MasterKey, Sealed, UnknownKeyVersion
from strongroom.core.errors import ConfigurationError, DecryptionError, WrongMasterKeyError


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()[0]


@pytest.fixture
def envelope(master: MasterKey) -> Envelope:
    return Envelope(Keyring.load(master, [Keyring.new_row(master, 1)]))


def test_round_trip_and_fresh_key_per_version(envelope: Envelope) -> None:
    a = envelope.seal("db", "0" * 32, b"hunter2")
    b = envelope.seal("db", "0" * 32, b"hunter2")
    assert envelope.open("db", "0" * 32, a) == b"hunter2"
    assert a.ciphertext != b.ciphertext  # fresh data key and nonce each time
    assert a.wrapped_dek != b.wrapped_dek
    assert b"hunter2" not in a.ciphertext + a.wrapped_dek


@pytest.mark.parametrize(("name", "version"), [("other", "0" * 32), ("db", "1" * 32)])
def test_ciphertext_is_bound_to_name_and_version(
    envelope: Envelope, name: str, version: str
) -> None:
    sealed = envelope.seal("db", "0" * 32, b"hunter2")
    with pytest.raises(DecryptionError, match=r"^cannot decrypt$"):
        envelope.open(name, version, sealed)


@pytest.mark.parametrize("field", ["ciphertext", "wrapped_dek"])
def test_flipped_byte_fails(envelope: Envelope, field: str) -> None:
    sealed = envelope.seal("db", "0" * 32, b"hunter2")
    raw = bytearray(getattr(sealed, field))
    raw[-1] ^= 0x01
    tampered = Sealed(**{**_fields(sealed), field: bytes(raw)})
    with pytest.raises(DecryptionError):
        envelope.open("db", "0" * 32, tampered)


def _fields(sealed: Sealed) -> dict[str, object]:
    return {
        "ciphertext": sealed.ciphertext,
        "wrapped_dek": sealed.wrapped_dek,
        "kek_version": sealed.kek_version,
    }


def test_wrong_master_key_is_reported_as_such(master: MasterKey) -> None:
    row = Keyring.new_row(master, 1)
    other = MasterKey.generate()[0]
    with pytest.raises(WrongMasterKeyError, match="master key"):
        Keyring.load(other, [row])


def test_rewrap_moves_data_key_to_new_version_without_touching_ciphertext(
    master: MasterKey,
) -> None:
    rows = [Keyring.new_row(master, 1)]
    old = Envelope(Keyring.load(master, rows))
    sealed = old.seal("db", "0" * 32, b"hunter2")
    rows.append(Keyring.new_row(master, 2))
    both = Envelope(Keyring.load(master, rows))
    fresh = both.rewrap("db", "0" * 32, sealed)
    assert fresh.kek_version == 2
    assert fresh.ciphertext == sealed.ciphertext
    only_new = Envelope(Keyring.load(master, rows[1:]))
    assert only_new.open("db", "0" * 32, fresh) == b"hunter2"
    with pytest.raises(UnknownKeyVersion):
        only_new.open("db", "0" * 32, sealed)


def test_new_data_keys_use_the_newest_keyring_version(master: MasterKey) -> None:
    rows = [Keyring.new_row(master, 1), Keyring.new_row(master, 2)]
    assert Envelope(Keyring.load(master, rows)).seal("a", "0" * 32, b"x").kek_version == 2


def test_master_key_never_shows_or_pickles(master: MasterKey) -> None:
    assert "hidden" in repr(master)
    with pytest.raises(TypeError):
        pickle.dumps(master)


@pytest.mark.parametrize("text", ["not base64!", "QUJD"])
def test_master_key_text_must_be_32_bytes_of_base64(text: str) -> None:
    with pytest.raises(ConfigurationError):
        MasterKey.from_base64(text)
