"""Key Vault keys (the subset strongroom serves): RSA key pairs whose private half never leaves
the server, used to wrap and unwrap small keys (RSA-OAEP-256, RSA-OAEP).

Pure: key generation and the two operations come from ``cryptography``; nothing here does I/O.
A private key travels inside the code as :class:`PrivateKeyBytes`, whose ``repr`` shows nothing,
and is sealed by the store's keyring like a secret value (``backends.vault_keys``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from strongroom.core.errors import (
    KeyDisabledError,
    KeyNotFoundError,
    UnwrapError,
    ValidationError,
)

__all__ = [
    "KEY_OPS",
    "KEY_SIZES",
    "WRAP_ALGORITHMS",
    "KeyProperties",
    "NewKey",
    "PrivateKeyBytes",
    "b64url_decode",
    "b64url_encode",
    "check_key_ops",
    "check_usable",
    "generate_rsa",
    "jwk_of",
    "key_not_found",
    "unwrap",
    "wrap",
]

KEY_SIZES = (2048, 3072, 4096)
#: The operations a key may allow; strongroom performs wrapKey and unwrapKey.
KEY_OPS = ("wrapKey", "unwrapKey")
WRAP_ALGORITHMS = ("RSA-OAEP-256", "RSA-OAEP")
_PUBLIC_EXPONENT = 65537
#: RSA-OAEP wraps keys, not documents: at most this many bytes in (Key Vault takes small keys).
MAX_WRAPPED_INPUT = 1024


class PrivateKeyBytes:
    """A private key's PKCS#8 DER: shown as nothing, refused to pickle."""

    __slots__ = ("_der",)

    def __init__(self, der: bytes) -> None:
        self._der = der

    def reveal(self) -> bytes:
        return self._der

    def __repr__(self) -> str:
        return "PrivateKeyBytes(<hidden>)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("private keys cannot be pickled")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key version about to be stored (its public half; the private half goes beside it)."""

    name: str
    version: str
    kty: str
    key_size: int
    key_ops: tuple[str, ...]
    public_der: bytes
    enabled: bool
    tags: dict[str, str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyProperties:
    """One key version as stored, public half only."""

    name: str
    version: str
    kty: str
    key_size: int
    key_ops: tuple[str, ...]
    public_der: bytes = field(repr=False)
    enabled: bool
    tags: dict[str, str]
    created_at: datetime
    updated_at: datetime


def key_not_found(name: str, version: str | None = None) -> KeyNotFoundError:
    if version is None:
        return KeyNotFoundError(f"key {name!r} not found")
    return KeyNotFoundError(f"key {name!r} has no version {version!r}")


def check_key_ops(ops: object) -> tuple[str, ...]:
    """The allowed operations, in a stable order (None: both)."""
    if ops is None:
        return KEY_OPS
    if not isinstance(ops, list | tuple) or not all(isinstance(op, str) for op in ops):
        raise ValidationError("key_ops must be a list of operation names")
    unknown = sorted({str(op) for op in ops} - set(KEY_OPS))
    if unknown:
        shown = ", ".join(op[:20] for op in unknown[:4])
        raise ValidationError(
            f"unsupported key operations ({shown}): strongroom keys allow wrapKey and unwrapKey"
        )
    return tuple(op for op in KEY_OPS if op in ops)


def check_usable(props: KeyProperties, operation: str | None) -> None:
    """Refuse a disabled key, or an operation the key does not allow."""
    if not props.enabled:
        raise KeyDisabledError(f"key {props.name!r} version {props.version} is disabled")
    if operation is not None and operation not in props.key_ops:
        raise ValidationError(f"key {props.name!r} does not allow {operation}")


def generate_rsa(key_size: object) -> tuple[PrivateKeyBytes, bytes]:
    """A new RSA key pair: the private key (PKCS#8 DER) and the public one (SPKI DER)."""
    if not isinstance(key_size, int) or isinstance(key_size, bool) or key_size not in KEY_SIZES:
        raise ValidationError(f"key_size must be one of {', '.join(map(str, KEY_SIZES))}")
    private = rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=key_size)
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PrivateKeyBytes(der), public


def _public(der: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_der_public_key(der)
    if not isinstance(key, rsa.RSAPublicKey):  # pragma: no cover (only RSA is ever stored)
        raise ValidationError("the stored public key is not an RSA key")
    return key


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: object, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 4 * MAX_WRAPPED_INPUT:
        raise ValidationError(f"{what} must be base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ValidationError(f"{what} is not valid base64url") from None


def _int_b64(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def jwk_of(props: KeyProperties, kid: str) -> dict[str, object]:
    """The public JSON Web Key of a version (``n`` and ``e``; never a private member)."""
    numbers = _public(props.public_der).public_numbers()
    return {
        "kid": kid,
        "kty": props.kty,
        "key_ops": list(props.key_ops),
        "n": _int_b64(numbers.n),
        "e": _int_b64(numbers.e),
    }


def _oaep(algorithm: str) -> padding.OAEP:
    if algorithm == "RSA-OAEP-256":
        return padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
    if algorithm == "RSA-OAEP":
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 (RSA-OAEP is defined with SHA-1; OAEP's security does not rest on SHA-1's collision resistance)
    raise ValidationError(f"unsupported algorithm: use {' or '.join(WRAP_ALGORITHMS)}")


def wrap(props: KeyProperties, algorithm: str, plaintext: bytes) -> bytes:
    """``plaintext`` (a key) encrypted to the version's public key."""
    scheme = _oaep(algorithm)
    if not plaintext or len(plaintext) > MAX_WRAPPED_INPUT:
        raise ValidationError("the key to wrap must be 1 to 1024 bytes")
    try:
        return _public(props.public_der).encrypt(plaintext, scheme)
    except ValueError:
        raise ValidationError("the key to wrap is too long for this RSA key") from None


def unwrap(private: PrivateKeyBytes, algorithm: str, wrapped: bytes) -> bytes:
    """The key in ``wrapped``; UnwrapError (saying nothing more) when it does not unwrap."""
    scheme = _oaep(algorithm)
    # The key was made by this server and opened from an authenticated envelope, so it is the
    # key that was generated: OpenSSL's consistency check (~200 ms for RSA-3072) proves nothing
    # more here and would dominate every unwrap.
    key = serialization.load_der_private_key(
        private.reveal(), password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(key, rsa.RSAPrivateKey):  # pragma: no cover (only RSA is ever stored)
        raise UnwrapError("cannot unwrap")
    try:
        return key.decrypt(wrapped, scheme)
    except ValueError:
        raise UnwrapError("the value does not unwrap with this key") from None
