"""Shares encrypted to their holders: each share sealed to one holder's age (X25519) public key,
so that init's output can travel to people (a ticket, an email) and only the holder's own
identity opens it. age through ``pyrage``, the Python binding of the rage implementation."""

from __future__ import annotations

import pyrage
from pyrage import x25519

from strongroom.core.errors import ShareError, ValidationError

__all__ = ["open_for_holder", "parse_recipients", "seal_for_holder"]


def parse_recipients(texts: list[str], *, shares: int) -> list[x25519.Recipient]:
    """One age recipient (``age1...``) per share, in order; refused before anything is made."""
    if len(texts) != shares:
        raise ValidationError(
            f"give one --holder-key per share: {shares} shares, {len(texts)} keys"
        )
    found = []
    for position, text in enumerate(texts, 1):
        try:
            found.append(x25519.Recipient.from_str(text.strip()))
        except pyrage.RecipientError:
            raise ValidationError(f"holder key {position} is not an age public key") from None
    if len({str(r) for r in found}) != len(found):
        raise ValidationError("each holder key must be different (one holder, one share)")
    return found


def seal_for_holder(share: str, recipient: x25519.Recipient) -> str:
    """The share, encrypted to ``recipient`` (ASCII-armored age)."""
    return pyrage.encrypt(share.encode("ascii"), [recipient], armored=True).decode("ascii")


def open_for_holder(armored: str, identity_text: str) -> str:
    """The share inside ``armored``, opened with the holder's age identity; ShareError (never
    quoting either) when the identity is not one or does not open it."""
    identities = []
    for line in identity_text.splitlines():
        if line.strip().startswith("AGE-SECRET-KEY-"):
            try:
                identities.append(x25519.Identity.from_str(line.strip()))
            except pyrage.IdentityError:
                raise ShareError("the identity file holds a malformed age identity") from None
    if not identities:
        raise ShareError("the identity file holds no age identity (AGE-SECRET-KEY-...)")
    try:
        return pyrage.decrypt(armored.strip().encode("ascii"), identities).decode("ascii")
    except (pyrage.DecryptError, UnicodeError, ValueError):
        raise ShareError("the encrypted share does not open with this identity") from None
