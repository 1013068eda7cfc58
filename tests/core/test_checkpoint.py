"""Checkpoints and the checks made against them: pure functions, no I/O."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest

from strongroom.core.checkpoint import (
    MAIN_CHAIN,
    ChainHead,
    ChainReach,
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    check_log,
    check_sequence,
    load_checkpoint,
)

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def _chain(signer: CheckpointSigner, *seqs: int) -> list[Checkpoint]:
    made: list[Checkpoint] = []
    for number, seq in enumerate(seqs, start=1):
        previous = made[-1].digest if made else ""
        head = ChainHead(MAIN_CHAIN, seq, seq.to_bytes(32, "big"))
        made.append(signer.sign(Checkpoint(number, previous, WHEN, (head,)))[0])
    return made


def test_a_signed_checkpoint_loads_only_with_its_public_key() -> None:
    signer = CheckpointSigner(secrets.token_bytes(32))
    signed, data = signer.sign(Checkpoint(1, "", WHEN, (ChainHead(MAIN_CHAIN, 5, b"h" * 32),)))
    loaded = load_checkpoint(data, signer.public_key)
    assert loaded == signed
    other = CheckpointSigner(secrets.token_bytes(32))
    with pytest.raises(CheckpointError):
        load_checkpoint(data, other.public_key)
    with pytest.raises(CheckpointError):
        load_checkpoint(data.replace(b'"seq":5', b'"seq":4'), signer.public_key)
    with pytest.raises(CheckpointError):
        load_checkpoint(b"not json", signer.public_key)


def test_checkpoints_must_grow_link_and_follow_each_other() -> None:
    signer = CheckpointSigner(secrets.token_bytes(32))
    good = _chain(signer, 3, 3, 7)
    assert check_sequence(good) is None
    assert check_sequence(good[1:]) is None  # the oldest archived away
    assert "missing" in str(check_sequence([good[0], good[2]]))
    backwards = _chain(signer, 7, 5)
    assert "backwards" in str(check_sequence(backwards))
    forked = [good[0], signer.sign(Checkpoint(2, "00" * 32, WHEN, good[1].heads))[0]]
    assert "does not follow" in str(check_sequence(forked))


def test_the_log_must_reach_and_agree_with_every_checkpoint() -> None:
    signer = CheckpointSigner(secrets.token_bytes(32))
    checkpoints = _chain(signer, 4, 9)
    hashes = {4: (4).to_bytes(32, "big"), 9: (9).to_bytes(32, "big")}
    whole = ChainReach(0, b"\0" * 32, 12, hashes)
    assert check_log(checkpoints, {MAIN_CHAIN: whole}) is None
    cut = ChainReach(0, b"\0" * 32, 8, hashes)
    broken = check_log(checkpoints, {MAIN_CHAIN: cut})
    assert broken is not None
    assert broken[0] == 9
    assert "cut off" in broken[1]
    rewritten = ChainReach(0, b"\0" * 32, 12, {**hashes, 9: b"x" * 32})
    broken = check_log(checkpoints, {MAIN_CHAIN: rewritten})
    assert broken is not None
    assert broken[0] == 9
    assert "rewritten" in broken[1]
    pruned = ChainReach(6, b"a" * 32, 12, {9: hashes[9]})  # checkpoint 4 pruned away: fine
    assert check_log(checkpoints, {MAIN_CHAIN: pruned}) is None
    assert check_log(checkpoints, {}) is not None  # no chain at all
