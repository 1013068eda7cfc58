"""Envelope encryption: per-version data keys under a versioned keyring under a master key.

    master key (env or 0600 file)
      └─ HKDF "strongroom/kek-wrap/1": the wrapping key (the whole tree: strongroom.core.keys)
           └─ wraps key-encryption keys (KEKs), one row per keyring version, stored with the data
                └─ wrap one fresh data key (DEK) per secret version
                     └─ AES-256-GCM over the value, associated data = (name, version)

Everything is AES-256-GCM from ``cryptography`` with random 96-bit nonces from ``secrets``.
Associated data binds each ciphertext to where it belongs, so a row copied onto another secret
or version does not decrypt. Failures say "cannot decrypt" and nothing about which check failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.core.errors import ConfigurationError, DecryptionError, WrongMasterKeyError
from strongroom.core.keys import Purpose

__all__ = [
    "KEY_BYTES",
    "LEGACY_WRAPPING",
    "WRAPPING",
    "Envelope",
    "Keyring",
    "KeyringRow",
    "MasterKey",
    "Sealed",
    "UnknownKeyVersion",
]

KEY_BYTES = 32
NONCE_BYTES = 12
_FORMAT = b"strongroom/1"
#: How a keyring row is wrapped: by the master key itself (stores made before the derived
#: wrapping key; re-wrapped when opened), or by the wrapping key derived from it.
LEGACY_WRAPPING, WRAPPING = 1, 2


class UnknownKeyVersion(LookupError):
    """A row names a keyring version this process has not loaded (another process rotated)."""


class MasterKey:
    """The root key. Never printed, never stored next to the data it protects, and never a
    cipher or MAC key itself: every key in use is derived from it for one purpose."""

    __slots__ = ("_raw", "_wrap", "chain_keys")

    def __init__(self, raw: bytes | bytearray, chain_keys: tuple[bytes, ...] = ()) -> None:
        if len(raw) != KEY_BYTES or any(len(k) != KEY_BYTES for k in chain_keys):
            raise ConfigurationError(f"a master key is {KEY_BYTES} bytes, got {len(raw)}")
        # Kept as given: a bytearray (an unsealed key) can be overwritten by ``wipe``.
        self._raw = raw
        self._wrap = AESGCM(self.derive(Purpose.KEK_WRAP))
        #: A root key's audit chain keys of the epochs after the first (core.root): random,
        #: one added by each replacement of the master key.
        self.chain_keys = chain_keys

    def audit_chain_keys(self) -> tuple[bytes, ...]:
        """Every epoch's audit chain key: epoch 0's derived, the later ones stored."""
        return (self.derive(Purpose.AUDIT_CHAIN), *self.chain_keys)

    def check_value(self) -> str:
        """What custody stores to recognise this key (hex SHA-256 of a key derived for that
        alone): it says whether a key is the right one and nothing about the key."""
        return hashlib.sha256(self.derive(Purpose.SEAL_CHECK)).hexdigest()

    def matches(self, check_value: str) -> bool:
        return hmac.compare_digest(self.check_value(), check_value)

    def raw_for_custody(self) -> bytes:
        """The key's bytes, for custody alone (splitting into shares, wrapping by an HSM):
        the one place the raw key leaves this class."""
        return bytes(self._raw)

    def wipe(self) -> None:
        """Overwrite the key's bytes when it was given as a bytearray (see docs/custody.md
        for what Python cannot guarantee: copies made inside libraries, derived keys)."""
        if isinstance(self._raw, bytearray):
            self._raw[:] = bytes(len(self._raw))

    def derive(self, purpose: Purpose) -> bytes:
        """The 256-bit key of one purpose of the derivation tree (HKDF-SHA256)."""
        if not isinstance(purpose, Purpose):
            raise ConfigurationError("keys are derived only for the purposes in core.keys")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.value)
        return hkdf.derive(self._raw)

    @classmethod
    def generate(cls) -> tuple[MasterKey, str]:
        """A new random key and its base64 text (to write to a key file once)."""
        raw = secrets.token_bytes(KEY_BYTES)
        return cls(raw), base64.b64encode(raw).decode("ascii")

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("the master key is not valid base64") from None
        return cls(raw)

    def wrap(self, version: int, kek: bytes) -> bytes:
        """A key-encryption key sealed under the derived wrapping key."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._wrap.encrypt(nonce, kek, _kek_aad(version))

    def unwrap(self, version: int, blob: bytes, *, wrapping: int = WRAPPING) -> bytes:
        """The key-encryption key in ``blob``; ``wrapping=LEGACY_WRAPPING`` opens a row of a
        store made before the wrapping key (only to re-wrap it: see ``Keyring.upgrade``)."""
        if wrapping == WRAPPING:
            aead = self._wrap
        elif wrapping == LEGACY_WRAPPING:
            aead = AESGCM(bytes(self._raw))
        else:
            raise ConfigurationError(f"unknown keyring wrapping {wrapping}")
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _kek_aad(version))
        except InvalidTag:
            raise WrongMasterKeyError(
                "the master key does not open this store's keyring (wrong STRONGROOM_MASTER_KEY "
                "or key file?)"
            ) from None

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("MasterKey cannot be pickled")


def _kek_aad(version: int) -> bytes:
    return _FORMAT + b"/kek/" + str(version).encode()


@dataclass(frozen=True, slots=True)
class KeyringRow:
    """A key-encryption key as stored: wrapped under the wrapping key (or, in a store not yet
    upgraded, the master key itself: ``wrapping == LEGACY_WRAPPING``)."""

    version: int
    wrapped_key: bytes
    wrapping: int = WRAPPING


class Keyring:
    """Unwrapped KEKs by version; new data keys are wrapped under the newest."""

    __slots__ = ("_keys", "current_version")

    def __init__(self, keys: dict[int, AESGCM], current_version: int) -> None:
        if current_version not in keys:
            raise ConfigurationError("keyring has no current key")
        self._keys = keys
        self.current_version = current_version

    @classmethod
    def load(cls, master: MasterKey, rows: list[KeyringRow]) -> Keyring:
        if not rows:
            raise ConfigurationError("keyring is empty")
        if any(row.wrapping != WRAPPING for row in rows):
            raise ConfigurationError("the keyring was not upgraded to the derived wrapping key")
        keys = {row.version: AESGCM(master.unwrap(row.version, row.wrapped_key)) for row in rows}
        return cls(keys, max(keys))

    @staticmethod
    def upgrade(master: MasterKey, rows: list[KeyringRow]) -> list[KeyringRow]:
        """Rows wrapped by the master key itself, re-wrapped under the derived wrapping key
        (the same KEKs: nothing below them changes). Empty when there is nothing to do."""
        return [
            KeyringRow(
                row.version,
                master.wrap(
                    row.version, master.unwrap(row.version, row.wrapped_key, wrapping=row.wrapping)
                ),
            )
            for row in rows
            if row.wrapping != WRAPPING
        ]

    @staticmethod
    def new_row(master: MasterKey, version: int) -> KeyringRow:
        return KeyringRow(version, master.wrap(version, secrets.token_bytes(KEY_BYTES)))

    @property
    def versions(self) -> list[int]:
        return sorted(self._keys)

    def _kek(self, version: int) -> AESGCM:
        try:
            return self._keys[version]
        except KeyError:
            raise UnknownKeyVersion(version) from None

    def wrap_dek(self, dek: bytes, aad: bytes) -> tuple[int, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        version = self.current_version
        return version, nonce + self._keys[version].encrypt(nonce, dek, aad)

    def unwrap_dek(self, kek_version: int, blob: bytes, aad: bytes) -> bytes:
        kek = self._kek(kek_version)
        try:
            return kek.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError("cannot decrypt") from None


@dataclass(frozen=True, slots=True)
class Sealed:
    """What a store keeps for one version: nothing here reveals the value."""

    ciphertext: bytes
    wrapped_dek: bytes
    kek_version: int

    def __repr__(self) -> str:
        return f"Sealed(kek_version={self.kek_version}, {len(self.ciphertext)} bytes)"


def _aad(purpose: bytes, name_key: str, version: str) -> bytes:
    return b"\x00".join((_FORMAT, purpose, name_key.encode("ascii"), version.encode("ascii")))


class Envelope:
    """Seals and opens secret versions with the keyring it is given."""

    __slots__ = ("keyring",)

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def seal(self, name_key: str, version: str, plaintext: bytes) -> Sealed:
        dek = secrets.token_bytes(KEY_BYTES)
        nonce = secrets.token_bytes(NONCE_BYTES)
        ciphertext = nonce + AESGCM(dek).encrypt(
            nonce, plaintext, _aad(b"value", name_key, version)
        )
        kek_version, wrapped = self.keyring.wrap_dek(dek, _aad(b"dek", name_key, version))
        return Sealed(ciphertext, wrapped, kek_version)

    def open(self, name_key: str, version: str, sealed: Sealed) -> bytes:
        """The plaintext, or DecryptionError; UnknownKeyVersion means reload the keyring."""
        dek = self.keyring.unwrap_dek(
            sealed.kek_version, sealed.wrapped_dek, _aad(b"dek", name_key, version)
        )
        ct = sealed.ciphertext
        try:
            return AESGCM(dek).decrypt(
                ct[:NONCE_BYTES], ct[NONCE_BYTES:], _aad(b"value", name_key, version)
            )
        except InvalidTag:
            raise DecryptionError("cannot decrypt") from None

    def rewrap(self, name_key: str, version: str, sealed: Sealed) -> Sealed:
        """The same ciphertext with its data key wrapped under the current keyring version."""
        aad = _aad(b"dek", name_key, version)
        dek = self.keyring.unwrap_dek(sealed.kek_version, sealed.wrapped_dek, aad)
        kek_version, wrapped = self.keyring.wrap_dek(dek, aad)
        return Sealed(sealed.ciphertext, wrapped, kek_version)
