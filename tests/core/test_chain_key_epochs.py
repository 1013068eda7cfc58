"""Audit chain key epochs (pure): a ring of keys, the switch event that moves a chain to a
newer one, the verifier that follows it, and the root record that carries the later keys."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta, timezone

import pytest

from strongroom.core.anchors import ANCHOR_CHAIN, key_anchor, next_anchor
from strongroom.core.audit import (
    EPOCH_CHECK_FIELD,
    EPOCH_FIELD,
    GENESIS_HASH,
    AuditAction,
    AuditEvent,
    AuditResult,
    ChainKey,
    canonical,
    epoch_switch,
    switched_epoch,
)
from strongroom.core.crypto import MasterKey
from strongroom.core.errors import ConfigurationError
from strongroom.core.keys import Purpose
from strongroom.core.root import next_root, unwrap_root, wrap_root
from strongroom.services.audit.log import ChainVerifier

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
K0, K1, K2 = (secrets.token_bytes(32) for _ in range(3))


def _event(k: int) -> AuditEvent:
    return AuditEvent(
        AuditAction.READ, f"s-{k}", NOW + timedelta(seconds=k), AuditResult.SUCCESS, "ci"
    )


def _chain(parts: list[tuple[AuditEvent, ChainKey]]) -> list[tuple[int, bytes, bytes, AuditEvent]]:
    """(id, prev, hash, event) of each event linked under its key, as a writer stores them."""
    rows, prev = [], GENESIS_HASH
    for seq, (event, key) in enumerate(parts, start=1):
        link = key.link(prev, event, seq)
        rows.append((seq, prev, link, event))
        prev = link
    return rows


def _verify(
    ring: ChainKey, rows: list[tuple[int, bytes, bytes, AuditEvent]]
) -> tuple[ChainVerifier, tuple[int, str] | None]:
    """The verifier after the walk, and the first break (None: the chain verified)."""
    verifier = ChainVerifier(ring, 0, GENESIS_HASH)
    for seq, prev, link, event in rows:
        broken = verifier.check_link(seq, prev, link, canonical(event, seq), event.details)
        if broken is not None:
            return verifier, broken
    return verifier, None


def test_each_epoch_links_with_its_own_key_and_hides_it() -> None:
    ring = ChainKey(K0, K1, K2)
    assert ring.epoch == 2
    assert [ring.at(e).epoch for e in range(3)] == [0, 1, 2]
    links = {ring.at(e).link(GENESIS_HASH, _event(1), 1) for e in range(3)}
    assert len(links) == 3
    assert ring.at(0).link(GENESIS_HASH, _event(1), 1) == ChainKey(K0).link(
        GENESIS_HASH, _event(1), 1
    )
    assert len({ring.check(e) for e in range(3)}) == 3
    assert ring.check(1) == ChainKey(K0, K1).check(1)
    for key in (K0, K1, K2):
        assert key.hex() not in repr(ring)
        assert key.hex() not in str(ring.check(0).hex() + ring.check(1).hex())
    with pytest.raises(ValueError, match="epoch 3"):
        ring.at(3)
    assert ring.at(1).check(1) == ring.check(1)
    assert ring.at(1).check(0) == ring.check(0)
    assert ring.at(1).raw_for_worker() == (K0, K1)  # a view hands out no later key
    with pytest.raises(IndexError):
        ring.at(1).check(2)  # nor names one
    with pytest.raises(ValueError, match="epoch 2"):
        ring.at(1).at(2)
    with pytest.raises(ValueError, match="epoch -1"):
        ring.at(-1)


def test_a_chain_moves_to_a_new_key_with_a_switch_linked_under_the_old_one() -> None:
    ring = ChainKey(K0, K1)
    switch = epoch_switch(ring, NOW)
    assert switch.action is AuditAction.CHAIN_KEY
    assert (switch.actor_id, switch.timestamp, switch.timestamp.tzinfo) == ("strongroom", NOW, UTC)
    elsewhere = NOW.astimezone(timezone(timedelta(hours=2)))
    assert epoch_switch(ring, elsewhere).timestamp.tzinfo is UTC
    assert switch.details == {EPOCH_FIELD: 1, EPOCH_CHECK_FIELD: ring.check(1).hex()}
    old = ring.at(0)
    rows = _chain([(_event(1), old), (switch, old), (_event(2), ring), (_event(3), ring)])
    verifier, broken = _verify(ring, rows)
    assert broken is None
    assert (verifier.epoch, verifier.checked) == (1, 4)


def test_after_the_switch_the_old_key_forges_nothing() -> None:
    ring = ChainKey(K0, K1)
    old = ring.at(0)
    switch = epoch_switch(ring, NOW)
    # An event after the switch linked under the old key (whoever kept the old master key).
    rows = _chain([(_event(1), old), (switch, old), (_event(2), old)])
    assert _verify(ring, rows)[1] == (
        3,
        "event content does not match its hash (modified or forged)",
    )
    # The switch itself linked under the new key (a chain that skipped its step).
    rows = _chain([(_event(1), old), (switch, ring), (_event(2), ring)])
    broken = _verify(ring, rows)[1]
    assert broken is not None
    assert broken[0] == 2


@pytest.mark.parametrize(
    ("details", "reason"),
    [
        ({EPOCH_FIELD: 1, EPOCH_CHECK_FIELD: ChainKey(K0, K2).check(1).hex()}, "another key"),
        (
            {EPOCH_FIELD: 1, EPOCH_CHECK_FIELD: ChainKey(K0, K1).check(1).hex().upper()},
            "another key",
        ),
        ({EPOCH_FIELD: 1, EPOCH_CHECK_FIELD: "zz"}, "another key"),
        ({EPOCH_FIELD: 1, EPOCH_CHECK_FIELD: "abc"}, "another key"),
        ({EPOCH_FIELD: 0, EPOCH_CHECK_FIELD: ChainKey(K0).check(0).hex()}, "not a step forward"),
        ({EPOCH_FIELD: 2, EPOCH_CHECK_FIELD: "00"}, "not a step forward"),
        ({EPOCH_FIELD: "1", EPOCH_CHECK_FIELD: "00"}, "not well formed"),
        ({EPOCH_FIELD: True, EPOCH_CHECK_FIELD: "00"}, "not well formed"),
        ({EPOCH_FIELD: 1}, "not well formed"),
        ({EPOCH_CHECK_FIELD: ChainKey(K0, K1).check(1).hex()}, "not well formed"),
    ],
)
def test_a_switch_that_is_not_a_valid_step_breaks_the_chain(
    details: dict[str, object], reason: str
) -> None:
    ring = ChainKey(K0, K1)
    refused = switched_epoch(ring, details, 0)
    assert isinstance(refused, str)
    assert reason in refused
    if reason == "not well formed":
        assert refused == "audit chain key switch is not well formed"
    if reason == "another key":
        assert refused == "audit chain key switch names another key than epoch 1's"
    bad = AuditEvent(AuditAction.CHAIN_KEY, None, NOW, AuditResult.SUCCESS, "x", details=details)
    rows = _chain([(_event(1), ring.at(0)), (bad, ring.at(0)), (_event(2), ring)])
    broken = _verify(ring, rows)[1]
    assert broken is not None
    assert broken[0] == 2
    assert reason in broken[1]
    assert switched_epoch(ring, {"version": 3}, 0) is None


def test_a_chain_whose_start_was_pruned_finds_its_epoch_from_the_first_event() -> None:
    ring = ChainKey(K0, K1)
    rows = _chain([(_event(1), ring.at(0)), (epoch_switch(ring, NOW), ring.at(0))])
    prev = rows[-1][2]  # retention pruned events 1 and 2: the walk starts after the switch
    seq, before, event = 3, prev, _event(3)
    link = ring.link(prev, event, seq)
    verifier = ChainVerifier(ring, 2, prev, epoch=None)
    assert verifier.check_link(seq, before, link, canonical(event, seq), event.details) is None
    assert verifier.epoch == 1
    # A pruned chain's first event under no key of the ring is reported, not guessed.
    stranger = ChainKey(K2)
    verifier = ChainVerifier(ring, 2, prev, epoch=None)
    forged = stranger.link(prev, event, seq)
    assert verifier.check_link(seq, before, forged, canonical(event, seq)) is not None


def test_a_key_anchor_is_linked_under_the_key_it_leaves_and_names_the_new_one() -> None:
    ring = ChainKey(K0, K1)
    head = next_anchor(ring.at(0), (0, GENESIS_HASH), 1, (1, 3, b"h" * 32), changes=True, at=NOW)
    moved = key_anchor(ring, (head.seq, head.anchor_hash), 0, at=NOW)
    assert (moved.chain, moved.first, moved.last) == (ANCHOR_CHAIN, 1, 0)
    assert moved.chain_hash == ring.check(1)
    again = next_anchor(ring.at(0), (head.seq, head.anchor_hash), ANCHOR_CHAIN,
                        (1, 0, ring.check(1)), changes=False, at=NOW)  # fmt: skip
    assert moved.anchor_hash == again.anchor_hash
    assert moved.prev_hash == head.anchor_hash


def test_the_root_record_carries_the_later_chain_keys_wrapped() -> None:
    master = MasterKey(secrets.token_bytes(32))
    root = MasterKey(secrets.token_bytes(32))
    assert root.chain_keys == ()
    grown = next_root(next_root(root))
    assert len(grown.chain_keys) == 2
    assert grown.chain_keys[0] != grown.chain_keys[1]
    assert grown.raw_for_custody() == root.raw_for_custody()
    record = wrap_root(grown, master, epoch=2, now=NOW)
    for key in grown.chain_keys:
        assert key.hex() not in record.to_json()
    opened = unwrap_root(record, master)
    assert opened is not None
    assert opened.chain_keys == grown.chain_keys
    assert opened.audit_chain_keys() == (root.derive(Purpose.AUDIT_CHAIN), *grown.chain_keys)
    assert unwrap_root(record, MasterKey(secrets.token_bytes(32))) is None
    # A record made before chain keys existed opens with none (epoch 0's key only).
    plain = unwrap_root(wrap_root(root, master, epoch=1, now=NOW), master)
    assert plain is not None
    assert plain.chain_keys == ()
    with pytest.raises(ConfigurationError, match="32 bytes"):
        MasterKey(secrets.token_bytes(32), (b"short",))
