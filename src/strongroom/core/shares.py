"""Shamir's secret sharing of the master key, as SLIP-39 mnemonics (pure: no I/O).

The scheme is SLIP-0039 through Trezor's maintained ``shamir-mnemonic`` package, not a port
written here: GF(256) polynomial sharing with a digest share, so that k shares that are not
from one split are refused rather than combined into a wrong key; a random 15-bit identifier
common to one split's shares (a share of another init is recognised as foreign); and an
RS1024 checksum on every share (a mistyped or swapped word is caught before anything is
combined). A 32-byte key makes shares of 33 words. Fewer than the threshold reveal nothing
about the key (information-theoretic: every key is equally likely given k-1 shares).

Messages from the library can quote a word of a share: they are never passed on.
"""

from __future__ import annotations

from dataclasses import dataclass

from shamir_mnemonic import MnemonicError, Share, combine_mnemonics, generate_mnemonics

from strongroom.core.errors import ShareError, ValidationError, WrongSharesError

__all__ = ["MAX_SHARES", "ShareSet", "combine", "parse_share", "split"]

#: SLIP-39 allows at most 16 members in a group.
MAX_SHARES = 16


@dataclass(frozen=True, slots=True)
class ShareSet:
    """One split: its identifier (common to its shares), threshold and the shares' words."""

    identifier: int
    threshold: int
    shares: tuple[str, ...]

    def __repr__(self) -> str:
        return f"ShareSet(identifier={self.identifier}, {self.threshold} of {len(self.shares)})"


def split(secret: bytes | bytearray, *, shares: int, threshold: int) -> ShareSet:
    """``shares`` mnemonics of which any ``threshold`` give back ``secret``."""
    if not 1 <= shares <= MAX_SHARES:
        raise ValidationError(f"key shares must be between 1 and {MAX_SHARES}")
    if not 1 <= threshold <= shares:
        raise ValidationError("the key threshold must be between 1 and the number of shares")
    if threshold == 1 and shares > 1:
        # Every share would be the key itself: SLIP-39 refuses it, and so do we.
        raise ValidationError("a threshold of 1 with several shares copies the key: use 2 or more")
    (group,) = generate_mnemonics(1, [(threshold, shares)], bytes(secret))
    identifier = Share.from_mnemonic(group[0]).identifier
    return ShareSet(identifier, threshold, tuple(group))


def normalise(text: str) -> str:
    """One space between lower-case words, whatever the holder typed or pasted."""
    return " ".join(text.lower().split())


def parse_share(text: str) -> Share:
    """The share in ``text``; ShareError (never quoting it) when it is not a well-formed one."""
    try:
        return Share.from_mnemonic(normalise(text))
    except (MnemonicError, ValueError, KeyError, IndexError):
        raise ShareError(
            "the share is not well formed (a word is mistyped, missing or out of order)"
        ) from None


def combine(shares: list[str]) -> bytearray:
    """The secret the shares make; WrongSharesError if they do not make one (too few, or not
    of one split). Returned as a bytearray so that its holder can overwrite it."""
    try:
        return bytearray(combine_mnemonics([normalise(s) for s in shares]))
    except (MnemonicError, ValueError):
        raise WrongSharesError("the shares do not combine into a master key") from None
