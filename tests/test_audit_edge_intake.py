"""The centre's intake of edge journals on SQLite and PostgreSQL: exactly once under retries
and races, refusals that store nothing, and ``audit verify`` over each site's chain."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from strongroom import SecretsAudit, Strongroom
from strongroom.core.audit import GENESIS_HASH, AuditAction, AuditEvent, AuditResult, ChainKey
from strongroom.core.edge_journal import JournalHead, ShippedEvent
from strongroom.core.errors import EdgeJournalBrokenError, EdgeJournalStaleError
from strongroom.services.audit.edge_intake import EdgeIntake

pytestmark = pytest.mark.stores("sqlite", "postgres")
SITE_KEY = ChainKey(b"s" * 32)  # the edge's own chain key: never at the centre


def edge_chain(count: int, *, start: int = 1, prev: bytes = GENESIS_HASH) -> list[ShippedEvent]:
    """Events chained as an edge chains its journal."""
    chained = []
    for seq in range(start, start + count):
        event = AuditEvent.build(
            action=AuditAction.READ, resource_name="dispatch-radio",
            timestamp=datetime.now(UTC), result=AuditResult.SUCCESS,
            actor_id="console-1", details={"version": "v1", "site": "claimed-by-the-edge"},
        )  # fmt: skip
        link = SITE_KEY.link(prev, event, seq)
        chained.append(ShippedEvent(seq, prev, link, event))
        prev = link
    return chained


def head_of(events: list[ShippedEvent]) -> JournalHead:
    return JournalHead(events[-1].seq, events[-1].chain_hash)


async def site_events(app: Strongroom, site: str) -> list[int]:
    trail = await SecretsAudit(app).get_audit_trail(limit=10_000)
    return sorted(e["details"]["edge_seq"] for e in trail if e["details"].get("site") == site)


async def test_batches_are_stored_once_with_their_site_and_verified(app: Strongroom) -> None:
    intake = EdgeIntake(app)
    events = edge_chain(10)
    assert await intake.head("north") == JournalHead()
    stored, head = await intake.receive("north", JournalHead(), events[:6])
    assert (stored, head) == (6, head_of(events[:6]))
    # A retry of a batch whose answer was lost, overlapping what is stored: only the rest.
    stored, head = await intake.receive("north", JournalHead(), events)
    assert (stored, head) == (4, head_of(events))
    with pytest.raises(EdgeJournalStaleError):
        await intake.receive("north", head_of(events[:6]), events[6:])
    assert await site_events(app, "north") == list(range(1, 11))
    trail = await SecretsAudit(app).get_audit_trail(limit=1)
    assert trail[0]["details"]["site"] == "north"  # the authenticated site, not the claim
    assert trail[0]["details"]["version"] == "v1"  # the event's own details are kept
    report = await SecretsAudit(app).verify_integrity()
    assert report["valid"] is True, report
    assert report["edge_chains"]["north"] == {
        "valid": True, "events": 10, "first_seq": 1, "last_seq": 10, "reason": None,
    }  # fmt: skip


async def test_two_deliveries_of_one_batch_race_and_one_is_stored(app: Strongroom) -> None:
    intake = EdgeIntake(app)
    events = edge_chain(20)
    answers = await asyncio.gather(
        *(intake.receive("south", JournalHead(), events) for _ in range(4)),
        return_exceptions=True,
    )
    stored = [a for a in answers if isinstance(a, tuple)]
    assert sum(n for n, _ in stored) == 20
    assert all(isinstance(a, tuple | EdgeJournalStaleError) for a in answers), answers
    assert await site_events(app, "south") == list(range(1, 21))


async def test_gaps_and_forged_links_are_refused_store_nothing_and_alarm(
    app: Strongroom,
) -> None:
    intake = EdgeIntake(app)
    events = edge_chain(6)
    await intake.receive("east", JournalHead(), events[:3])
    refusals = [
        (head_of(events[:4]), events[4:]),  # event 4 never shipped: a gap
        (JournalHead(3, b"\x01" * 32), events[3:]),  # claims another event 3
        (head_of(events[:3]), [events[3], events[5]]),  # a gap inside the batch
        (head_of(events[:3]), [events[3], *edge_chain(1, start=5)]),  # a link that breaks
    ]
    for after, batch in refusals:
        with pytest.raises(EdgeJournalBrokenError):
            await intake.receive("east", after, batch)
    assert await site_events(app, "east") == [1, 2, 3]
    assert app.alarm is not None
    await app.alarm.drain()
    alarms = await SecretsAudit(app).get_audit_trail(action="INTEGRITY", limit=10)
    assert len(alarms) == len(refusals)
    assert all("east" in (a["error_message"] or "") for a in alarms)
    assert (await SecretsAudit(app).verify_integrity())["valid"] is True


async def test_an_event_logged_by_a_caller_cannot_pose_as_an_edge_event(app: Strongroom) -> None:
    await SecretsAudit(app).log_event(
        "READ", "dispatch-radio", details={"site": "north", "edge_seq": 1, "version": "v1"}
    )
    trail = await SecretsAudit(app).get_audit_trail(limit=1)
    assert trail[0]["details"] == {"version": "v1"}
    report = await SecretsAudit(app).verify_integrity()
    assert report["valid"] is True
    assert "edge_chains" not in report
