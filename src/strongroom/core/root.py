"""The root key under a replaceable master key (pure: no I/O).

Every key in use is derived from the root key (core.keys). In a store whose master key was
never replaced, the root key is the master key's own bytes, and nothing is stored. Replacing
the master key stores the *same* root key wrapped by the new one (AES-256-GCM under a key
derived from the master key for that alone, the epoch in the associated data), so every MAC,
token digest and wrapped key made so far stays valid, and the old master key no longer opens
the store. The audit chain is the exception: each replacement adds a random chain key, wrapped
with the root key, and the chain moves to it (core.audit.ChainKey), so whoever kept an old
master key cannot extend or rewrite the log from then on. A replacement under way keeps its
new wrapping as *pending* beside the current one until the new master key is in place.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.core.crypto import KEY_BYTES, MasterKey
from strongroom.core.errors import CustodyError
from strongroom.core.keys import Purpose

__all__ = ["RootRecord", "RootSlots", "next_root", "unwrap_root", "wrap_root"]

_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class RootRecord:
    """The root key wrapped by one master key; ``epoch`` counts replacements (0: the record of
    the original master key, written by the first replacement)."""

    wrapped: str
    epoch: int
    created_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "wrapped": self.wrapped,
                "epoch": self.epoch,
                "created_at": self.created_at.isoformat(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> RootRecord:
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(
                str(data["wrapped"]), int(data["epoch"]), datetime.fromisoformat(data["created_at"])
            )
        except (KeyError, TypeError, ValueError):
            raise CustodyError("the stored root key record is not well formed") from None

    def __repr__(self) -> str:
        return f"RootRecord(epoch={self.epoch})"


@dataclass(frozen=True, slots=True)
class RootSlots:
    """What is stored: nothing (never replaced), the current wrapping, and a pending one while a
    replacement is under way."""

    current: RootRecord | None = None
    pending: RootRecord | None = None


def _aad(epoch: int) -> bytes:
    return b"strongroom/1/root/" + str(epoch).encode()


def next_root(root: MasterKey) -> MasterKey:
    """``root`` with one more audit chain key (CSPRNG): what a replacement wraps."""
    return MasterKey(root.raw_for_custody(), (*root.chain_keys, secrets.token_bytes(KEY_BYTES)))


def wrap_root(root: MasterKey, master: MasterKey, *, epoch: int, now: datetime) -> RootRecord:
    """``root`` and its chain keys wrapped by ``master`` for ``epoch``."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(master.derive(Purpose.ROOT_WRAP)).encrypt(
        nonce, root.raw_for_custody() + b"".join(root.chain_keys), _aad(epoch)
    )
    return RootRecord(base64.b64encode(nonce + sealed).decode("ascii"), epoch, now)


def unwrap_root(record: RootRecord, master: MasterKey) -> MasterKey | None:
    """The root key, or None when ``master`` is not the key that wrapped ``record``."""
    try:
        blob = base64.b64decode(record.wrapped, validate=True)
    except (binascii.Error, ValueError):
        raise CustodyError("the stored root key record is not well formed") from None
    try:
        raw = AESGCM(master.derive(Purpose.ROOT_WRAP)).decrypt(
            blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(record.epoch)
        )
    except (InvalidTag, ValueError):
        return None
    if not raw or len(raw) % KEY_BYTES:
        raise CustodyError("the stored root key record is not well formed")
    later = tuple(raw[i : i + KEY_BYTES] for i in range(KEY_BYTES, len(raw), KEY_BYTES))
    return MasterKey(bytearray(raw[:KEY_BYTES]), later)
