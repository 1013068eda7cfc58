"""Sealed start: what is stored to recognise the master key, and an unseal in progress (pure:
the caller passes the time).

A sealed service holds no master key. Key holders give their shares one at a time (from
different people and terminals); once ``threshold`` distinct shares of the right split are in,
they are combined, the result is checked against the stored check value, and the shares are
dropped. A partial unseal is forgotten after ``timeout`` seconds without a new share, as it is
after any refused combination, so a half-entered quorum never lingers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shamir_mnemonic import Share

from strongroom.core.crypto import MasterKey
from strongroom.core.errors import (
    CustodyError,
    DuplicateShareError,
    ForeignShareError,
    WrongSharesError,
)
from strongroom.core.shares import combine, parse_share

__all__ = ["SEAL_AZURE", "SEAL_PKCS11", "SEAL_SHAMIR", "SealRecord", "UnsealProgress"]

SEAL_SHAMIR = "shamir"
SEAL_PKCS11 = "pkcs11"
SEAL_AZURE = "azurekeyvault"


@dataclass(frozen=True, slots=True)
class SealRecord:
    """What custody keeps beside the data: enough to recognise the right key, never the key
    (the check value is a hash of a key derived for that alone: ``MasterKey.check_value``)."""

    kind: str
    identifier: int
    threshold: int
    shares: int
    check: str
    created_at: datetime
    #: An HSM's or Key Vault key's seal: the master key wrapped by that key (base64), and the
    #: key's label (PKCS#11) or versioned identifier (Key Vault).
    wrapped: str = ""
    key_label: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "identifier": self.identifier,
                "threshold": self.threshold,
                "shares": self.shares,
                "check": self.check,
                "created_at": self.created_at.isoformat(),
                "wrapped": self.wrapped,
                "key_label": self.key_label,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SealRecord:
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(
                kind=str(data["kind"]),
                identifier=int(data["identifier"]),
                threshold=int(data["threshold"]),
                shares=int(data["shares"]),
                check=str(data["check"]),
                created_at=datetime.fromisoformat(data["created_at"]),
                wrapped=str(data.get("wrapped", "")),
                key_label=str(data.get("key_label", "")),
            )
        except (KeyError, TypeError, ValueError):
            raise CustodyError("the stored seal record is not well formed") from None


class UnsealProgress:
    """Shares given so far towards one unseal (held only in memory, only until combined)."""

    __slots__ = ("_given", "_last", "record", "timeout")

    def __init__(self, record: SealRecord, *, timeout: float) -> None:
        self.record = record
        self.timeout = timeout
        self._given: dict[int, str] = {}
        self._last = 0.0

    def progress(self, now: float) -> int:
        """How many distinct shares are in (after forgetting a partial unseal that timed out)."""
        self._expire(now)
        return len(self._given)

    def reset(self) -> None:
        self._given.clear()

    def submit(self, text: str, now: float) -> MasterKey | None:
        """Take one share: None while the threshold is not met, else the master key (its bytes
        in a bytearray, so that sealing again can overwrite them). Refused shares change
        nothing, except that shares which combine into no key, or into another key, end the
        unseal under way (its shares cannot be told apart: all must be given again)."""
        self._expire(now)
        share = parse_share(text)
        if not self._ours(share):
            raise ForeignShareError("the share belongs to another share set (another init)")
        if share.index in self._given:
            raise DuplicateShareError("this share was already given in this unseal")
        self._given[share.index] = " ".join(text.lower().split())
        self._last = now
        if len(self._given) < self.record.threshold:
            return None
        given = list(self._given.values())
        self.reset()
        secret = combine(given)
        key = MasterKey(secret)
        if not key.matches(self.record.check):
            key.wipe()
            raise WrongSharesError("the shares do not combine into this store's master key")
        return key

    def _ours(self, share: Share) -> bool:
        return bool(
            share.identifier == self.record.identifier
            and share.group_count == 1
            and share.group_threshold == 1
            and share.member_threshold == self.record.threshold
        )

    def _expire(self, now: float) -> None:
        if self._given and now - self._last >= self.timeout:
            self.reset()

    def __repr__(self) -> str:
        return f"UnsealProgress({len(self._given)} of {self.record.threshold})"
