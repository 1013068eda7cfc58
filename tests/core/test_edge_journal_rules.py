"""The centre's continuity rules for edge journals, and their check in ``audit verify``
(pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from strongroom.core.audit import GENESIS_HASH, AuditAction, AuditEvent, AuditResult
from strongroom.core.edge_journal import EdgeChains, JournalHead, ShippedEvent, accept
from strongroom.core.errors import EdgeJournalBrokenError, EdgeJournalStaleError

EVENT = AuditEvent.build(
    action=AuditAction.READ, resource_name="x", timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    result=AuditResult.SUCCESS, actor_id="a",
)  # fmt: skip


def chain(count: int) -> list[ShippedEvent]:
    found, prev = [], GENESIS_HASH
    for seq in range(1, count + 1):
        link = bytes([seq]) * 32
        found.append(ShippedEvent(seq, prev, link, EVENT))
        prev = link
    return found


def test_a_batch_after_the_head_is_stored_whole() -> None:
    events = chain(3)
    fresh, head = accept(JournalHead(), JournalHead(), events)
    assert fresh == events
    assert head == JournalHead(3, events[-1].chain_hash)


def test_an_overlapping_retry_stores_only_the_new_part_and_a_stored_one_is_stale() -> None:
    events = chain(5)
    held = JournalHead(3, events[2].chain_hash)
    fresh, head = accept(held, JournalHead(), events)
    assert [e.seq for e in fresh] == [4, 5]
    assert head.seq == 5
    with pytest.raises(EdgeJournalStaleError):
        accept(held, JournalHead(), events[:3])


@pytest.mark.parametrize(
    ("held", "after", "picked", "why"),
    [
        (0, 1, [1], "missing"),  # starts after an event the centre never got
        (2, 2, [2, 3], "link"),  # claims an event 2 the centre holds differently
        (0, 0, [0, 2], "missing"),  # a gap inside the batch
        (2, 0, [0, 1, 2], "differs"),  # a retry whose event 2 is not the stored one
    ],
)
def test_gaps_and_forged_links_are_refused(
    held: int, after: int, picked: list[int], why: str
) -> None:
    events = chain(5)
    # The centre's head: another event at ``held`` (for the forged cases), or nothing.
    held_head = JournalHead(held, b"\xee" * 32 if held else GENESIS_HASH)
    after_head = JournalHead(after, events[after - 1].chain_hash if after else GENESIS_HASH)
    with pytest.raises(EdgeJournalBrokenError, match=why):
        accept(held_head, after_head, [events[i] for i in picked])


def _details(site: str, shipped: ShippedEvent) -> dict[str, object]:
    return {
        "site": site, "edge_seq": shipped.seq, "edge_prev": shipped.prev_hash.hex(),
        "edge_hash": shipped.chain_hash.hex(),
    }  # fmt: skip


def test_verify_follows_each_site_and_names_the_first_break() -> None:
    events = chain(4)
    chains = EdgeChains()
    for shipped in events:
        chains.observe(_details("north", shipped))
    for shipped in (events[0], events[2]):  # event 2 of south was removed
        chains.observe(_details("south", shipped))
    heads = {"north": JournalHead(4, events[3].chain_hash), "south": JournalHead(3, b"\x03" * 32)}
    report = chains.report(heads)
    assert report["north"]["valid"] is True
    assert report["south"]["valid"] is False
    assert "missing" in report["south"]["reason"]
    # A head that runs past the events the log holds (events cut off the end).
    report = chains.report({"north": JournalHead(5, b"\x05" * 32)})
    assert report["north"]["valid"] is False


def test_a_retry_that_ends_before_the_head_is_stale_whatever_its_last_hash() -> None:
    events = chain(5)
    with pytest.raises(EdgeJournalStaleError):
        accept(JournalHead(5, events[4].chain_hash), JournalHead(), events[:3])


def test_an_overlap_after_an_earlier_head_stores_only_what_follows_the_held_one() -> None:
    events = chain(6)
    after = JournalHead(2, events[1].chain_hash)
    fresh, head = accept(JournalHead(4, events[3].chain_hash), after, events[2:])
    assert [e.seq for e in fresh] == [5, 6]
    assert head == JournalHead(6, events[5].chain_hash)
    with pytest.raises(EdgeJournalBrokenError, match="differs"):
        accept(JournalHead(4, b"\xee" * 32), after, events[2:])


def test_verify_ignores_events_that_are_not_from_an_edge() -> None:
    chains = EdgeChains()
    chains.observe({"edge_seq": 1})  # no site
    chains.observe({"site": "north", "edge_seq": True})  # not a position
    chains.observe({"site": "north"})
    assert chains.report({}) == {}


def test_verify_names_a_missing_event_and_a_link_that_does_not_follow() -> None:
    events = chain(3)
    gapped = EdgeChains()
    gapped.observe(_details("north", events[0]))
    gapped.observe(_details("north", events[2]))
    assert gapped.report({})["north"]["reason"] == "edge event 2 is missing or out of order"
    forged = EdgeChains()
    forged.observe(_details("north", events[0]))
    forged.observe({**_details("north", events[1]), "edge_prev": "ee" * 32})
    report = forged.report({})["north"]
    assert report["valid"] is False
    assert report["reason"] == "edge event 2 does not link to the event before it"


def test_verify_flags_a_site_whose_events_are_all_gone_from_the_log() -> None:
    report = EdgeChains().report({"ghost": JournalHead(3, b"\x03" * 32)})
    assert report["ghost"]["valid"] is False
    assert report["ghost"]["events"] == 0


def test_a_head_travels_as_its_position_and_hash_in_hex() -> None:
    assert JournalHead(2, b"\x01" * 32).to_dict() == {"last_seq": 2, "last_hash": "01" * 32}
    assert JournalHead().to_dict() == {"last_seq": 0, "last_hash": "00" * 32}
