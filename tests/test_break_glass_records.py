"""Break-glass reviews in process, on SQLite and PostgreSQL with the test's clock: the bounds of
who acknowledges and with what note, the instant a review turns overdue, what opening,
acknowledging and each overdue notice record and send, the remind interval and a notice another
process sent first, the listing's bounds, and the schedule that runs the checks."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from strongroom import (
    ConfigurationError,
    EmergencyRevoke,
    RevocationNotFoundError,
    RevocationRequest,
    SecretsAudit,
    SecretsManager,
    Strongroom,
    ValidationError,
    acting_as,
)
from strongroom.core.clock import ManualClock
from strongroom.core.errors import StoreUnavailableError
from strongroom.services.notify import Notification
from strongroom.services.revocation.reviews import (
    SCHEDULER_ACTOR,
    escalation_addresses,
    public_review,
)

pytestmark = pytest.mark.stores("sqlite", "postgres")

RECIPIENTS = ["sec@example.com"]
DAY = timedelta(hours=24)  # the default review window
REMIND = timedelta(minutes=60)  # the default remind interval


def glass(name: str, *, immediate: bool = True) -> RevocationRequest:
    return RevocationRequest(
        secret_name=name, reason="key_compromise", requested_by="erin", severity="critical",
        notify_recipients=RECIPIENTS, immediate=immediate,
    )  # fmt: skip


async def used(app: Strongroom, name: str, *, immediate: bool = True) -> int:
    await SecretsManager(app).create_secret(name, f"v-{secrets.token_hex(8)}")
    status = await EmergencyRevoke(app).request_revocation(glass(name, immediate=immediate))
    return int(status["revocation_id"])


async def newest(app: Strongroom, operation: str) -> dict[str, Any]:
    trail = await SecretsAudit(app).get_audit_trail(action="REVOKE", limit=100)
    return next(e for e in trail if e["details"].get("operation") == operation)


def record_notifications(app: Strongroom, monkeypatch: pytest.MonkeyPatch) -> list[Notification]:
    sent: list[Notification] = []
    real = app.notifier.send

    async def send(notification: Notification) -> Any:
        sent.append(notification)
        return await real(notification)

    monkeypatch.setattr(app.notifier, "send", send)
    return sent


@pytest.mark.stores
def test_escalation_addresses_are_a_comma_separated_list() -> None:
    assert escalation_addresses(None) == []
    assert escalation_addresses(" ciso@example.com, ,soc@example.org ") == [
        "ciso@example.com",
        "soc@example.org",
    ]
    with pytest.raises(ConfigurationError, match="STRONGROOM_BREAK_GLASS_ESCALATE_TO"):
        escalation_addresses("ciso@example.com soc@example.org")


@pytest.mark.stores
def test_a_review_is_overdue_from_the_instant_it_is_due() -> None:
    due = datetime(2026, 1, 2, tzinfo=ManualClock().now.tzinfo)
    row = {
        "revocation_id": 1, "secret_name": "db", "used_by": "erin", "opened_at": due - DAY,
        "due_at": due, "status": "OPEN", "acknowledged_by": None, "acknowledged_at": None,
        "note": None, "escalations": 2, "escalated_at": due,
    }  # fmt: skip
    assert not public_review(row, due - timedelta(microseconds=1))["overdue"]
    shown = public_review(row, due)
    assert shown["overdue"]
    assert (shown["escalations"], shown["escalated_at"]) == (2, due)
    assert not public_review({**row, "status": "ACKNOWLEDGED"}, due + DAY)["overdue"]


async def test_opening_records_whose_use_and_when_it_is_due(
    app: Strongroom, clock: ManualClock
) -> None:
    await used(app, "calm-key", immediate=False)  # revocation 1 has no review
    rid = await used(app, "fleet-key")
    opened = await newest(app, "review.open")
    assert opened["resource_name"] == "fleet-key"
    assert opened["details"]["revocation_id"] == rid == 2
    assert opened["details"]["used_by"] == "erin"
    assert opened["details"]["due_at"] == (clock() + DAY).isoformat()
    review = await app.break_glass_reviews.get(rid)
    assert (review["revocation_id"], review["due_at"]) == (rid, clock() + DAY)
    with pytest.raises(RevocationNotFoundError):
        await app.break_glass_reviews.get(1)
    for bad in ("2", True):
        with pytest.raises(ValidationError):
            await app.break_glass_reviews.get(bad)  # type: ignore[arg-type]


async def test_who_acknowledges_and_the_note_have_bounds(app: Strongroom) -> None:
    rid = await used(app, "fleet-key")
    reviews = app.break_glass_reviews
    for bad in ("", "   ", "f" * 257, 7):
        with pytest.raises(ValidationError, match=r"^acknowledged_by must name someone"):
            await reviews.acknowledge(rid, bad, "checked")  # type: ignore[arg-type]
    for note in ("", "  ", "n" * 2001):
        with pytest.raises(ValidationError, match="note"):
            await reviews.acknowledge(rid, "frank", note)
    assert (await reviews.get(rid))["status"] == "OPEN"
    done = await reviews.acknowledge(rid, "f" * 256, "n" * 2000)
    assert (done["acknowledged_by"], done["note"]) == ("f" * 256, "n" * 2000)
    other = await used(app, "other-key")
    assert (await reviews.acknowledge(other, "f", "ok"))["acknowledged_by"] == "f"


async def test_acknowledging_records_and_announces_it(
    app: Strongroom, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = await used(app, "fleet-key")
    late = await used(app, "late-key")
    sent = record_notifications(app, monkeypatch)
    clock.advance(hours=1)
    with acting_as("frank"):
        await app.break_glass_reviews.acknowledge(early, "frank", "rotated upstream")
    event = await newest(app, "review.acknowledge")
    assert event["resource_name"] == "fleet-key"
    assert event["details"]["revocation_id"] == early
    assert event["details"]["acknowledged_by"] == "frank"
    assert event["details"]["used_by"] == "erin"
    assert event["details"]["overdue"] is False
    (notice,) = sent
    assert notice.kind == "revocation.review_acknowledged"
    assert list(notice.recipients) == RECIPIENTS
    assert notice.occurred_at == clock()
    assert (notice.fields["severity"], notice.fields["reason"]) == ("critical", "key_compromise")
    assert notice.fields["break_glass"] is True
    clock.advance(hours=23)  # exactly due
    await app.break_glass_reviews.acknowledge(late, "frank", "late, but checked")
    assert (await newest(app, "review.acknowledge"))["details"]["overdue"] is True


async def test_overdue_notices_wait_out_the_remind_interval(
    app: Strongroom, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await used(app, "first-key")
    clock.advance(minutes=1)
    second = await used(app, "second-key")
    clock.advance(hours=24, minutes=-1)  # only the first is due
    reviews = app.break_glass_reviews
    assert [r["revocation_id"] for r in await reviews.escalate_overdue()] == [first]
    clock.advance(minutes=1)  # the second is due; the first was noticed a minute ago
    assert [r["revocation_id"] for r in await reviews.escalate_overdue()] == [second]
    event = await newest(app, "review.overdue")
    assert event["actor_id"] == SCHEDULER_ACTOR
    assert event["resource_name"] == "second-key"
    assert event["details"]["revocation_id"] == second
    assert event["details"]["used_by"] == "erin"
    assert event["details"]["escalation"] == 1
    assert event["details"]["due_at"] == clock().isoformat()  # due exactly now
    assert app.metrics.value("break_glass_reviews_overdue_total") == 2
    clock.advance(minutes=58)
    assert await reviews.escalate_overdue() == []
    clock.advance(minutes=1)  # exactly the remind interval since the first's notice
    (again,) = await reviews.escalate_overdue()
    assert (again["revocation_id"], again["escalations"]) == (first, 2)
    clock.advance(minutes=1)
    assert [r["revocation_id"] for r in await reviews.escalate_overdue()] == [second]


async def test_a_notice_another_process_sent_first_is_not_sent_again(
    app: Strongroom, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await used(app, "first-key")
    second = await used(app, "second-key")
    clock.advance(hours=25)
    store = app.revocation_store
    real = store.claim_escalation

    async def raced(revocation_id: int, seen: int, at: datetime) -> bool:
        if revocation_id == first:  # another process claims it between the read and ours
            assert await real(revocation_id, seen, at)
        return await real(revocation_id, seen, at)

    monkeypatch.setattr(store, "claim_escalation", raced)
    sent = await app.break_glass_reviews.escalate_overdue()
    assert [r["revocation_id"] for r in sent] == [second]


async def test_the_listing_is_bounded(app: Strongroom, clock: ManualClock) -> None:
    reviews = app.break_glass_reviews
    first = await used(app, "db-1")
    row = await app.revocation_store.get(first)
    assert row is not None
    for _ in range(100):
        rid = await app.revocation_store.insert({k: v for k, v in row.items() if k != "id"})
        await app.revocation_store.open_review(rid, "db-1", "erin", clock(), clock() + DAY)
    assert len(await reviews.listing()) == 100  # the default
    assert len(await reviews.listing(limit=1000)) == 101
    assert len(await reviews.listing(limit=1)) == 1
    for bad in (0, 1001, True, "5"):
        with pytest.raises(ValidationError, match="limit"):
            await reviews.listing(limit=bad)  # type: ignore[arg-type]
    await reviews.acknowledge(1, "frank", "checked")
    assert len(await reviews.listing(limit=1000)) == 100  # open ones only, by default
    assert len(await reviews.listing(open_only=False, limit=1000)) == 101
    every = await EmergencyRevoke(app).list_break_glass_reviews(open_only=False)
    assert len(every) == 101  # the facade asks for up to 1000


async def test_the_schedule_checks_again_after_a_store_failure_and_stops(
    app: Strongroom, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await used(app, "fleet-key")
    clock.advance(hours=25)
    store = app.revocation_store
    real = store.overdue_reviews
    calls = 0

    async def flaky(now: datetime) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailableError("the state database did not answer")
        return await real(now)

    monkeypatch.setattr(store, "overdue_reviews", flaky)
    noticed = asyncio.Event()
    send = app.notifier.send

    async def sending(notification: Notification) -> Any:
        outcome = await send(notification)
        noticed.set()  # the schedule counts the notice before it next yields
        return outcome

    monkeypatch.setattr(app.notifier, "send", sending)
    reviews = app.break_glass_reviews
    with capture_logs() as logs:
        reviews.start(0.001)
        reviews.start(0.001)  # already running: no second schedule
        async with asyncio.timeout(10):
            await noticed.wait()
        await reviews.stop()
    assert reviews._task is None
    line = next(e for e in logs if e["event"] == "break-glass review check failed")
    assert line["error"] == "StoreUnavailableError: the state database did not answer"
    assert app.metrics.value("break_glass_reviews_overdue_total") == 1
    await reviews.stop()  # stopping a stopped schedule is harmless
