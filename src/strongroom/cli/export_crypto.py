"""The encrypted export (``strongroom-export/1``): a passphrase, checked for strength, derives
a key with Argon2id (RFC 9106's second recommended setting: 3 passes over 64 MiB, 4 lanes,
random 16-byte salt); the document is sealed with AES-256-GCM and the header is bound to the
ciphertext as associated data. Exports sealed with scrypt (n=2**15, r=8, p=1) by earlier
releases still open. A passphrase must be at least 12 characters and rated 4 of 4 by zxcvbn
(an estimate of 10^10 guesses or more), since an export file is attacked offline.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import unicodedata
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from strongroom.core.errors import DecryptionError, ValidationError

__all__ = ["EXPORT_FORMAT", "check_passphrase", "decrypt_export", "encrypt_export"]

EXPORT_FORMAT = "strongroom-export/1"
ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, ARGON2_LANES = 3, 64 * 1024, 4
MIN_PASSPHRASE_LENGTH, MIN_PASSPHRASE_SCORE = 12, 4
_HINTS = ["strongroom", "export", "secret", "secrets", "passphrase", "password"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, label: str) -> bytes:
    if not isinstance(text, str):
        raise ValidationError(f"encrypted export: {label} is missing")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"encrypted export: {label} is not base64") from None


def _aad(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def check_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too weak for a file attacked offline (ValidationError, which says
    why but never repeats the passphrase)."""
    if not isinstance(passphrase, str) or len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise ValidationError(
            f"the passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters long"
        )
    from zxcvbn import zxcvbn  # noqa: PLC0415 (its dictionaries load in ~0.1 s: on use only)

    # zxcvbn looks at the first 100 characters only (its cost grows with length); a longer
    # passphrase whose first 100 characters are weak is refused, which is the safe side.
    rating = zxcvbn(passphrase[:100], user_inputs=_HINTS)
    if rating["score"] < MIN_PASSPHRASE_SCORE:
        hint = rating["feedback"].get("warning") or "add more words or characters"
        raise ValidationError(
            f"the passphrase is too easy to guess (strength {rating['score']} of 4, "
            f"{MIN_PASSPHRASE_SCORE} needed): {hint}"
        )


def _derive(passphrase: str, salt: bytes, kdf: Mapping[str, Any]) -> bytes:
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if kdf["name"] == "argon2id":
        return Argon2id(
            salt=salt, length=32, iterations=kdf["iterations"], lanes=kdf["lanes"],
            memory_cost=kdf["memory_kib"],
        ).derive(secret)  # fmt: skip
    return Scrypt(salt=salt, length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(secret)


def encrypt_export(payload: bytes, passphrase: str) -> str:
    """The encrypted export file: a JSON header and the sealed payload, base64."""
    check_passphrase(passphrase)
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    kdf = {
        "name": "argon2id", "salt": _b64(salt), "iterations": ARGON2_ITERATIONS,
        "memory_kib": ARGON2_MEMORY_KIB, "lanes": ARGON2_LANES,
    }  # fmt: skip
    header = {"format": EXPORT_FORMAT, "kdf": kdf, "cipher": "AES-256-GCM", "nonce": _b64(nonce)}
    key = _derive(passphrase, salt, kdf)
    sealed = AESGCM(key).encrypt(nonce, payload, _aad(header))
    return json.dumps({**header, "ciphertext": _b64(sealed)}, indent=2) + "\n"


def _whole(kdf: Mapping[str, Any], *names: str) -> bool:
    return all(isinstance(kdf.get(n), int) and not isinstance(kdf.get(n), bool) for n in names)


def _kdf_in_bounds(kdf: Mapping[str, Any]) -> bool:
    """Bounds keep a crafted file from asking for gigabytes of memory or minutes of work."""
    if kdf.get("name") == "argon2id":
        return (
            _whole(kdf, "iterations", "memory_kib", "lanes")
            and 1 <= kdf["iterations"] <= 16
            and 8 * kdf["lanes"] <= kdf["memory_kib"] <= 1024 * 1024
            and 1 <= kdf["lanes"] <= 16
        )
    if kdf.get("name") == "scrypt":  # exports of earlier releases
        n = kdf.get("n")
        return (
            _whole(kdf, "n", "r", "p")
            and isinstance(n, int)
            and 2**10 <= n <= 2**20
            and n & (n - 1) == 0
            and 1 <= kdf["r"] <= 32
            and 1 <= kdf["p"] <= 16
        )
    return False


def decrypt_export(data: Mapping[str, Any], passphrase: str) -> bytes:
    """The payload of an encrypted export; one error whatever failed (wrong passphrase or a
    changed file), as with every decryption in strongroom."""
    kdf = data.get("kdf")
    if (
        not isinstance(kdf, dict)
        or kdf.get("name") not in ("argon2id", "scrypt")
        or data.get("cipher") != ("AES-256-GCM")
    ):
        raise ValidationError("encrypted export: unknown key derivation or cipher")
    if not _kdf_in_bounds(kdf):
        raise ValidationError("encrypted export: key derivation parameters out of range")
    salt = _unb64(kdf.get("salt"), "salt")
    nonce = _unb64(data.get("nonce"), "nonce")
    sealed = _unb64(data.get("ciphertext"), "ciphertext")
    header = {k: v for k, v in data.items() if k != "ciphertext"}
    try:
        return AESGCM(_derive(passphrase, salt, kdf)).decrypt(nonce, sealed, _aad(header))
    except (InvalidTag, ValueError):
        raise DecryptionError(
            "cannot decrypt the export: wrong passphrase or a changed file"
        ) from None
