"""Sealed backups of one secret (all its readable versions), as Key Vault's backup/restore.

A backup is AES-256-GCM under a key derived from the master key, so it restores only into a
strongroom holding the same master key (as a Key Vault backup restores only within its
subscription) and any change to the blob is detected. The blob is base64url text.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.core.errors import ValidationError

__all__ = ["open_backup", "seal_backup"]

_AAD = b"strongroom-secret-backup-v1"
_NONCE = 12
MAX_BLOB = 4 * 1024 * 1024


def seal_backup(key: bytes, document: dict[str, Any]) -> str:
    nonce = secrets.token_bytes(_NONCE)
    plaintext = json.dumps(document, separators=(",", ":")).encode()
    sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, _AAD)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def open_backup(key: bytes, blob: object) -> dict[str, Any]:
    """The backed-up document; ValidationError for anything not sealed by this key."""
    if not isinstance(blob, str) or not blob or len(blob) > MAX_BLOB:
        raise ValidationError("the backup blob is not valid")
    try:
        raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        plaintext = AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
        document = json.loads(plaintext)
    except (binascii.Error, ValueError, InvalidTag):
        raise ValidationError(
            "the backup blob is not valid (damaged, or from another strongroom)"
        ) from None
    if not isinstance(document, dict) or document.get("format") != 1:
        raise ValidationError("the backup blob is not valid")
    return document
