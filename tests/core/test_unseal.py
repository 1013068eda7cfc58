"""An unseal in progress (pure): k distinct shares of the right split give the key; every
refusal changes nothing or, for shares that combine into no key, starts over."""

from __future__ import annotations

import itertools
import secrets
from datetime import UTC, datetime

import pytest
from shamir_mnemonic import Share

from strongroom.core.crypto import MasterKey
from strongroom.core.errors import (
    CustodyError,
    DuplicateShareError,
    ForeignShareError,
    ShareError,
    WrongSharesError,
)
from strongroom.core.shares import ShareSet, parse_share, split
from strongroom.core.unseal import SEAL_SHAMIR, SealRecord, UnsealProgress


def _init(n: int = 5, k: int = 3) -> tuple[bytes, ShareSet, SealRecord]:
    raw = secrets.token_bytes(32)
    share_set = split(raw, shares=n, threshold=k)
    record = SealRecord(
        SEAL_SHAMIR, share_set.identifier, k, n, MasterKey(raw).check_value(), datetime.now(UTC)
    )
    return raw, share_set, record


def _forged(share_text: str) -> str:
    """A share of the same split (same identifier, valid checksum) with another value."""
    real = parse_share(share_text)
    fake = Share(
        real.identifier, real.extendable, real.iteration_exponent, real.group_index,
        real.group_threshold, real.group_count, real.index, real.member_threshold,
        secrets.token_bytes(len(real.value)),
    )  # fmt: skip
    return str(fake.mnemonic())


def quotes_a_share(text: str, share_set: ShareSet) -> bool:
    """Whether ``text`` holds two consecutive words of a share (single words are common
    English: "given", "this"...)."""
    for share in share_set.shares:
        words = share.split()
        if any(f"{a} {b}" in text for a, b in itertools.pairwise(words)):
            return True
    return False


def test_threshold_distinct_shares_give_the_key() -> None:
    raw, share_set, record = _init()
    progress = UnsealProgress(record, timeout=60)
    assert progress.submit(share_set.shares[4], 0.0) is None
    assert progress.submit(share_set.shares[1], 1.0) is None
    assert progress.progress(1.5) == 2
    key = progress.submit(share_set.shares[2], 2.0)
    assert key is not None
    assert key.raw_for_custody() == raw
    assert progress.progress(2.0) == 0  # the shares are dropped once combined


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("duplicate", DuplicateShareError),
        ("foreign", ForeignShareError),
        ("corrupted", ShareError),
    ],
)
def test_refused_shares_change_nothing_and_quote_nothing(bad: str, error: type[Exception]) -> None:
    _, share_set, record = _init()
    progress = UnsealProgress(record, timeout=60)
    progress.submit(share_set.shares[0], 0.0)
    if bad == "duplicate":
        given = "  " + share_set.shares[0].upper()
    elif bad == "foreign":
        other = split(secrets.token_bytes(32), shares=5, threshold=3)
        while other.identifier == record.identifier:  # 1 in 32768: another split
            other = split(secrets.token_bytes(32), shares=5, threshold=3)
        given = other.shares[1]
    else:
        words = share_set.shares[1].split()
        words[10], words[11] = words[11], words[10]
        given = " ".join(words) if words[10] != words[11] else share_set.shares[1][:-3]
    with pytest.raises(error) as caught:
        progress.submit(given, 1.0)
    assert progress.progress(1.0) == 1
    assert not quotes_a_share(str(caught.value), share_set)
    assert progress.submit(share_set.shares[1], 2.0) is None
    assert progress.submit(share_set.shares[2], 3.0) is not None


def test_a_wrong_share_ends_the_unseal() -> None:
    _, share_set, record = _init()
    progress = UnsealProgress(record, timeout=60)
    progress.submit(share_set.shares[0], 0.0)
    progress.submit(share_set.shares[1], 0.0)
    with pytest.raises(WrongSharesError):
        progress.submit(_forged(share_set.shares[2]), 0.0)
    assert progress.progress(0.0) == 0
    for share in share_set.shares[:3]:
        key = progress.submit(share, 1.0)
    assert key is not None


def test_shares_of_another_key_with_our_identifier_are_refused() -> None:
    """A seal record whose check value is not the shares' key (another init that happened to
    draw the same identifier): combined, recognised as the wrong key, refused."""
    _, share_set, record = _init(3, 2)
    other = SealRecord(SEAL_SHAMIR, record.identifier, 2, 3, "00" * 32, record.created_at)
    progress = UnsealProgress(other, timeout=60)
    progress.submit(share_set.shares[0], 0.0)
    with pytest.raises(WrongSharesError):
        progress.submit(share_set.shares[1], 0.0)


def test_a_partial_unseal_is_forgotten_after_the_timeout() -> None:
    _, share_set, record = _init()
    progress = UnsealProgress(record, timeout=600)
    progress.submit(share_set.shares[0], 0.0)
    progress.submit(share_set.shares[1], 500.0)
    assert progress.progress(1099.0) == 2  # the timeout counts from the last share
    assert progress.progress(1100.0) == 0
    assert progress.submit(share_set.shares[2], 1100.0) is None


def test_the_key_can_be_wiped() -> None:
    _, share_set, record = _init(2, 2)
    progress = UnsealProgress(record, timeout=60)
    progress.submit(share_set.shares[0], 0.0)
    key = progress.submit(share_set.shares[1], 0.0)
    assert key is not None
    key.wipe()
    assert key.raw_for_custody() == bytes(32)


def test_seal_record_round_trips_and_holds_no_key() -> None:
    raw, share_set, record = _init()
    assert SealRecord.from_json(record.to_json()) == record
    text = record.to_json()
    assert raw.hex() not in text
    assert not quotes_a_share(text, share_set)
    with pytest.raises(CustodyError):
        SealRecord.from_json('{"kind": "shamir"}')
