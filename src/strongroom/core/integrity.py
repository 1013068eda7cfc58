"""MACs over the rows whose fields decide who may read what (pure: no I/O but the MAC).

The AEAD of each value binds it to its secret's name and version, but the fields around it
decide whether it is served: whether a version is enabled or revoked, when it expires, which
version is current, which token belongs to which identity, which policies an identity holds.
With write access to the database and no master key, changing any of them is refused: each row
carries HMAC-SHA256, under a key derived for this purpose alone, over a canonical encoding of
its table and its security-relevant fields, and a row whose MAC does not match is tampered.

Counters tie rows together where a replayed genuine row would otherwise pass: a secret's row
carries a generation that every change of the secret advances, and the generation of its last
revocation; each version row carries the generation it was last written at. A revoked version's
row from before the revocation (with its old, genuine MAC) is older than the revocation and is
refused; an old current-version pointer is caught because a newer version exists.
"""

from __future__ import annotations

import hmac as std_hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes, hmac

from strongroom.core.errors import TamperedError

__all__ = ["RowMac", "TamperHook"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

#: Told about every tampered row found (what and where; never a value), e.g. to alert.
TamperHook = Callable[[str, str], None]


def _encode(table: str, fields: Sequence[object]) -> bytes:
    """An unambiguous encoding (the read path runs it twice per read, so no JSON): text is
    length-prefixed, everything else is a tagged token free of the separator."""
    parts = [table]
    for value in fields:
        if value is None:
            parts.append("~")
        elif isinstance(value, bool):
            parts.append("T" if value else "F")
        elif isinstance(value, int):
            parts.append(f"i{value}")
        elif isinstance(value, datetime):
            parts.append(f"i{(value - _EPOCH) // _MICRO}")
        elif isinstance(value, bytes):
            parts.append("b" + value.hex())
        else:
            text = str(value)
            parts.append(f"s{len(text)}:{text}")
    return "\x1f".join(parts).encode("utf-8", "surrogatepass")


class RowMac:
    """HMAC-SHA256 over (table, fields); fields are text, numbers, booleans, times or None."""

    __slots__ = ("_key", "on_tamper")

    def __init__(self, key: bytes, on_tamper: TamperHook | None = None) -> None:
        self._key = key
        self.on_tamper = on_tamper

    def mac(self, table: str, fields: Sequence[object]) -> bytes:
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(_encode(table, fields))
        return mac.finalize()

    def valid(self, table: str, fields: Sequence[object], stored: bytes | None) -> bool:
        return stored is not None and std_hmac.compare_digest(
            self.mac(table, fields), bytes(stored)
        )

    def check(self, table: str, fields: Sequence[object], stored: bytes | None, what: str) -> None:
        """Raise TamperedError (after telling the hook) unless ``stored`` is the MAC."""
        if not self.valid(table, fields, stored):
            self.tampered(table, what)

    def tampered(self, table: str, what: str) -> None:
        if self.on_tamper is not None:
            self.on_tamper(table, what)
        raise TamperedError(f"{what} was changed outside strongroom and is refused")

    def __repr__(self) -> str:
        return "RowMac(<hidden>)"
