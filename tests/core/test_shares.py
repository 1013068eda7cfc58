"""Key shares (SLIP-39): the published known-answer vectors, and properties of our splits.

The vectors are SLIP-0039's own (passphrase "TREZOR"); ``secret`` empty means the set must be
refused. Properties: any k of n shares give the key back; k-1 shares are consistent with every
possible key (so they reveal nothing); refusals never quote a share.
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
from pathlib import Path

import pytest
import shamir_mnemonic
from shamir_mnemonic.shamir import SECRET_INDEX, RawShare, _interpolate

from strongroom.core.errors import ShareError, StrongroomError, ValidationError, WrongSharesError
from strongroom.core.shares import combine, parse_share, split

VECTORS = json.loads((Path(__file__).parent / "data" / "slip39_vectors.json").read_text())


def _parse_and_combine(shares: list[str]) -> bytearray:
    for share in shares:
        parse_share(share)
    return combine(shares)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["comment"] for v in VECTORS])
def test_known_answer_vectors(vector: dict[str, object]) -> None:
    shares = list(vector["shares"])  # type: ignore[call-overload]
    if vector["secret"]:
        assert shamir_mnemonic.combine_mnemonics(shares, b"TREZOR").hex() == vector["secret"]
        assert all(parse_share(s).identifier == parse_share(shares[0]).identifier for s in shares)
    else:
        with pytest.raises((shamir_mnemonic.MnemonicError, ValueError)):
            shamir_mnemonic.combine_mnemonics(shares, b"TREZOR")
        with pytest.raises(ShareError):  # ours refuses the same sets (as one of its kinds)
            _parse_and_combine(shares)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (2, 2), (3, 2), (5, 3), (7, 4), (16, 16)])
def test_any_k_of_n_shares_give_the_key_back(n: int, k: int) -> None:
    key = secrets.token_bytes(32)
    share_set = split(key, shares=n, threshold=k)
    assert len(share_set.shares) == n
    subsets = list(itertools.combinations(share_set.shares, k))
    for subset in random.sample(subsets, min(len(subsets), 12)):
        shuffled = random.sample(subset, k)
        assert bytes(combine(shuffled)) == key


@pytest.mark.parametrize(("n", "k"), [(3, 2), (5, 3), (6, 5)])
def test_k_minus_one_shares_do_not_combine(n: int, k: int) -> None:
    share_set = split(secrets.token_bytes(32), shares=n, threshold=k)
    for subset in itertools.combinations(share_set.shares, k - 1):
        with pytest.raises(WrongSharesError):
            combine(list(subset))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_k_minus_one_shares_are_consistent_with_every_key(k: int) -> None:
    """For any candidate key, some k-th point completes k-1 real shares' polynomial to it: the
    k-1 shares cannot tell the real key from any other."""
    share_set = split(secrets.token_bytes(32), shares=k + 1, threshold=k)
    known = [parse_share(s) for s in share_set.shares[: k - 1]]
    points = [RawShare(s.index, s.value) for s in known]
    for _ in range(5):
        candidate = secrets.token_bytes(len(known[0].value))
        completing = _interpolate([*points, RawShare(SECRET_INDEX, candidate)], 200)
        assert _interpolate([*points, RawShare(200, completing)], SECRET_INDEX) == candidate


def test_foreign_shares_do_not_combine() -> None:
    one = split(secrets.token_bytes(32), shares=3, threshold=2)
    other = split(secrets.token_bytes(32), shares=3, threshold=2)
    with pytest.raises(WrongSharesError):
        combine([one.shares[0], other.shares[1]])


def test_a_corrupted_share_is_refused_without_quoting_it() -> None:
    share_set = split(secrets.token_bytes(32), shares=3, threshold=2)
    words = share_set.shares[0].split()
    for position in (0, 5, len(words) - 1):
        changed = list(words)
        changed[position] = "zebra" if changed[position] != "zebra" else "academic"
        with pytest.raises(ShareError) as caught:
            parse_share(" ".join(changed))
        assert not any(w in str(caught.value).split() for w in changed if len(w) > 6)
    with pytest.raises(ShareError):
        parse_share(" ".join(words[:-1]))  # a word missing


def test_whitespace_and_case_do_not_matter() -> None:
    key = secrets.token_bytes(32)
    share_set = split(key, shares=2, threshold=2)
    messy = ["  " + share_set.shares[0].upper().replace(" ", "\n  "), share_set.shares[1]]
    assert bytes(combine(messy)) == key


@pytest.mark.parametrize(("n", "k"), [(0, 1), (17, 2), (3, 4), (3, 0), (3, 1)])
def test_impossible_splits_are_refused(n: int, k: int) -> None:
    with pytest.raises(ValidationError):
        split(secrets.token_bytes(32), shares=n, threshold=k)


def test_share_set_repr_hides_the_shares() -> None:
    share_set = split(secrets.token_bytes(32), shares=3, threshold=2)
    assert share_set.shares[0].split()[3] not in repr(share_set).split()
    assert "2 of 3" in repr(share_set)
    assert issubclass(ShareError, StrongroomError)
