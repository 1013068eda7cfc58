"""Envelope encryption without any store: binding, tamper detection, keyring versions."""

from __future__ import annotations

import pickle

import pytest

from strongroom.core.crypto import (
    Envelope,
    Keyring,
    KeyringRow,
    MasterKey,
    Sealed,
    UnknownKeyVersion,
)
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


# -- known answers: what a store wrote yesterday opens today ------------------------------------

_KNOWN_MASTER = bytes(range(32))
_KNOWN_VERSION = "0123456789abcdef0123456789abcdef"
_KNOWN_KEK = bytes.fromhex(
    "43789cb41476426e0547efcbd59188b9e7b1e7801158c05614773fd8fc0ceafe"
    "84448d32aea6d3e0c65d4e46431726dc8b50387e85fe328d7c23074e"
)
_KNOWN_SEALED = Sealed(
    ciphertext=bytes.fromhex(
        "6dc99bd1987fcd25bdfd9f915c89501409ac129e2afdaee7f86548950f43bfc8cf102f50b5963f1d593fdfe967cb"
    ),
    wrapped_dek=bytes.fromhex(
        "07f7fa0425498105b3974e6e286b1ba90304e93051b5bbb886334d2ca093fef3"
        "3b53be1211b236c259f27ef6b6cf10d682bceeafb8d9af9af88bfcf5"
    ),
    kek_version=1,
)


def test_a_value_sealed_by_an_earlier_release_still_opens() -> None:
    """Pins the key derivation, the key wrapping and the associated data's layout: a change
    to any of them would lock every existing store out of its own secrets."""
    master = MasterKey(_KNOWN_MASTER)
    envelope = Envelope(Keyring.load(master, [KeyringRow(1, _KNOWN_KEK)]))
    assert envelope.open("fleet-db", _KNOWN_VERSION, _KNOWN_SEALED) == b"known-answer value"


def test_the_check_value_recognises_the_key_and_only_it() -> None:
    master = MasterKey(_KNOWN_MASTER)
    known = "4573fb9d614d4bf8f7e9bb7ce1f7d7045045081fd4ce8019bbb9b9d79e3068b5"
    assert master.check_value() == known
    assert master.matches(known)
    assert not master.matches("0" * 64)
    assert not MasterKey.generate()[0].matches(known)


def test_custody_gets_the_raw_key_and_a_bytearray_key_can_be_wiped() -> None:
    raw = bytearray(_KNOWN_MASTER)
    master = MasterKey(raw)
    assert master.raw_for_custody() == _KNOWN_MASTER
    master.wipe()
    assert raw == bytearray(32)


def test_an_unknown_keyring_version_is_named(envelope: Envelope) -> None:
    with pytest.raises(UnknownKeyVersion) as caught:
        envelope.keyring.unwrap_dek(7, b"\x00" * 60, b"aad")
    assert caught.value.args == (7,)


def test_the_master_key_shows_only_that_it_is_hidden() -> None:
    assert repr(MasterKey(_KNOWN_MASTER)) == "MasterKey(<hidden>)"
    assert str(MasterKey(_KNOWN_MASTER)) == "MasterKey(<hidden>)"


def test_master_key_text_with_characters_outside_base64_is_refused() -> None:
    text = MasterKey.generate()[1]
    with pytest.raises(ConfigurationError, match="not valid base64"):
        MasterKey.from_base64(text[:10] + "!" + text[10:])
