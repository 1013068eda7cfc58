"""Audit trail queries and summaries return exactly the events they describe (every store).

A known history is written with ``log_event`` under ``acting_as``, its events placed in time
with the app's ManualClock across three UTC days; each query's answer is compared with the
same selection computed here in Python.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from strongroom import (
    AuditAction,
    AuditResult,
    ManualClock,
    SecretsAudit,
    SecretsManager,
    Strongroom,
    ValidationError,
    acting_as,
)


@dataclass(frozen=True)
class Written:
    """What the test wrote: the expected content of one audit event."""

    action: str
    resource: str | None
    actor: str
    ip: str | None
    result: str
    timestamp: datetime

    def key(self) -> tuple[Any, ...]:
        return (self.action, self.resource, self.actor, self.ip, self.result, self.timestamp)


def key_of(event: dict[str, Any]) -> tuple[Any, ...]:
    return (
        event["action"],
        event["resource_name"],
        event["actor_id"],
        event["actor_ip"],
        event["result"],
        event["timestamp"],
    )


ACTIONS = ["READ", "READ", "CREATE", "UPDATE", "LIST", "READ", "DELETE"]
RESOURCES = ["db-password", "API-Key", "tls-cert", None, "db-password"]
ACTORS = [
    ("alice", "203.0.113.7"),
    ("bob", "198.51.100.20"),
    ("carol", None),
    ("svc-dispatch", "10.0.0.5"),
    ("alice", "203.0.113.99"),
]
STEPS_MINUTES = [0, 53, 101]  # 0: several events share one timestamp (ordered by id)
EVENTS = 72


def result_for(i: int) -> str:
    if i % 13 == 0:
        return "PARTIAL"
    return "FAILURE" if i % 4 == 1 else "SUCCESS"


@pytest.fixture
async def history(app: Strongroom, clock: ManualClock) -> list[Written]:
    """72 events over three UTC days, oldest first, as written."""
    audit = SecretsAudit(app)
    written: list[Written] = []
    for i in range(EVENTS):
        clock.advance(minutes=STEPS_MINUTES[i % 3])
        action = ACTIONS[i % len(ACTIONS)]
        resource = None if action == "LIST" else RESOURCES[(i * 3) % len(RESOURCES)]
        actor, ip = ACTORS[(i * 2 + i // 5) % len(ACTORS)]
        result = result_for(i)
        with acting_as(actor, ip=ip, user_agent=f"agent-{actor}"):
            await audit.log_event(
                action,
                resource,
                result,
                details={"version": f"{i:032x}"},
                error_message="refused" if result == "FAILURE" else None,
                duration_ms=i,
            )
        written.append(
            Written(
                action,
                resource.lower() if resource else None,
                actor,
                ip,
                result,
                clock(),
            )
        )
    days = {w.timestamp.date() for w in written}
    assert len(days) == 3, days
    return written


def newest_first(events: list[Written]) -> list[tuple[Any, ...]]:
    """Newest first; events with one timestamp in reverse order of writing (id descending)."""
    order = sorted(range(len(events)), key=lambda i: (events[i].timestamp, i), reverse=True)
    return [events[i].key() for i in order]


# -- trail --------------------------------------------------------------------------------------


async def test_the_whole_trail_is_newest_first_with_every_field(
    app: Strongroom, history: list[Written]
) -> None:
    audit = SecretsAudit(app)
    trail = await audit.get_audit_trail(limit=1000)
    assert [key_of(e) for e in trail] == newest_first(history)
    ids = [e["id"] for e in trail]
    assert ids == sorted(ids, reverse=True)  # timestamps only grow here, so ids fall too
    stamps = [e["timestamp"] for e in trail]
    assert stamps == sorted(stamps, reverse=True)
    oldest = trail[-1]
    assert oldest["details"] == {"version": f"{0:032x}"}
    assert oldest["duration_ms"] == 0
    assert oldest["actor_user_agent"] == f"agent-{oldest['actor_id']}"
    failure = next(e for e in trail if e["result"] == "FAILURE")
    assert failure["error_message"] == "refused"


def _at(history: list[Written], index: int) -> datetime:
    return history[index].timestamp


FILTERS: dict[str, tuple[Callable[[list[Written]], dict[str, Any]], Any]] = {
    # name: (query arguments given the history, predicate on (Written, arguments))
    "resource": (
        lambda h: {"resource_name": "DB-Password"},
        lambda w, a: w.resource == "db-password",
    ),
    "resource_mixed_case_as_written": (
        lambda h: {"resource_name": "api-key"},
        lambda w, a: w.resource == "api-key",
    ),
    "action": (lambda h: {"action": AuditAction.READ}, lambda w, a: w.action == "READ"),
    "action_as_lowercase_text": (lambda h: {"action": "delete"}, lambda w, a: w.action == "DELETE"),
    "actor": (lambda h: {"actor_id": "alice"}, lambda w, a: w.actor == "alice"),
    "result": (lambda h: {"result": AuditResult.FAILURE}, lambda w, a: w.result == "FAILURE"),
    "result_partial_text": (lambda h: {"result": "partial"}, lambda w, a: w.result == "PARTIAL"),
    "since": (
        lambda h: {"since": _at(h, 30)},
        lambda w, a: w.timestamp >= a["since"],
    ),
    "until": (
        lambda h: {"until": _at(h, 40)},
        lambda w, a: w.timestamp < a["until"],
    ),
    "since_and_until": (
        lambda h: {"since": _at(h, 10), "until": _at(h, 50)},
        lambda w, a: a["since"] <= w.timestamp < a["until"],
    ),
    "combined": (
        lambda h: {
            "resource_name": "db-password",
            "action": "READ",
            "result": "SUCCESS",
            "since": _at(h, 5),
            "until": _at(h, 70),
        },
        lambda w, a: (
            w.resource == "db-password"
            and w.action == "READ"
            and w.result == "SUCCESS"
            and a["since"] <= w.timestamp < a["until"]
        ),
    ),
    "actor_and_result": (
        lambda h: {"actor_id": "bob", "result": "FAILURE"},
        lambda w, a: w.actor == "bob" and w.result == "FAILURE",
    ),
    "nothing_matches": (lambda h: {"actor_id": "nobody"}, lambda w, a: False),
}


async def test_each_filter_returns_exactly_the_matching_events(
    app: Strongroom, history: list[Written]
) -> None:
    audit = SecretsAudit(app)
    for name, (arguments, matches) in FILTERS.items():
        query = arguments(history)
        expected = newest_first([w for w in history if matches(w, query)])
        if name != "nothing_matches":
            assert 0 < len(expected) < len(history), name  # the filter really selects
        trail = await audit.get_audit_trail(limit=1000, **query)
        assert [key_of(e) for e in trail] == expected, name
        assert await audit.count_events(**query) == len(expected), name


async def test_since_is_inclusive_and_until_exclusive(
    app: Strongroom, history: list[Written]
) -> None:
    audit = SecretsAudit(app)
    moment = history[20].timestamp
    at_moment = [w for w in history if w.timestamp == moment]
    assert at_moment
    exactly = await audit.get_audit_trail(since=moment, until=moment + timedelta(microseconds=1))
    assert [key_of(e) for e in exactly] == newest_first(at_moment)
    assert await audit.get_audit_trail(since=moment, until=moment) == []


async def test_pages_cover_every_event_once(app: Strongroom, history: list[Written]) -> None:
    audit = SecretsAudit(app)
    full = [e["id"] for e in await audit.get_audit_trail(limit=1000)]
    for page_size in (1, 7, 72, 100):
        pages: list[list[dict[str, Any]]] = []
        offset = 0
        while True:
            page = await audit.get_audit_trail(limit=page_size, offset=offset)
            if not page:
                break
            assert len(page) <= page_size
            pages.append(page)
            offset += page_size
        ids = [e["id"] for page in pages for e in page]
        assert ids == full, page_size
        assert len(ids) == len(set(ids)) == len(history)
        assert all(len(page) == page_size for page in pages[:-1])


async def test_pages_of_a_filtered_trail_cover_its_events_once(
    app: Strongroom, history: list[Written]
) -> None:
    audit = SecretsAudit(app)
    expected = newest_first([w for w in history if w.action == "READ"])
    got: list[tuple[Any, ...]] = []
    for offset in range(0, len(expected) + 10, 4):
        got += [key_of(e) for e in await audit.get_audit_trail(None, "READ", 4, offset=offset)]
    assert got == expected


async def test_the_default_limit_is_100_newest(app: Strongroom, clock: ManualClock) -> None:
    audit = SecretsAudit(app)
    for i in range(130):
        clock.advance(seconds=1)
        await audit.log_event("READ", f"secret-{i}")
    trail = await audit.get_audit_trail()
    assert len(trail) == 100
    assert trail[0]["resource_name"] == "secret-129"
    assert trail[-1]["resource_name"] == "secret-30"


@pytest.mark.parametrize(
    "arguments",
    [
        {"limit": 0},
        {"limit": 10_001},
        {"limit": -1},
        {"offset": -1},
        {"action": "EXPLODE"},
        {"action": "reading"},
        {"result": "MAYBE"},
    ],
)
async def test_bad_trail_arguments_are_refused(arguments: dict[str, Any], app: Strongroom) -> None:
    audit = SecretsAudit(app)
    await audit.log_event("READ", "radio-key")
    with pytest.raises(ValidationError):
        await audit.get_audit_trail(**arguments)
    if "limit" not in arguments and "offset" not in arguments:
        with pytest.raises(ValidationError):
            await audit.count_events(**arguments)


async def test_the_limits_of_limit_are_accepted(app: Strongroom, history: list[Written]) -> None:
    audit = SecretsAudit(app)
    assert len(await audit.get_audit_trail(limit=1)) == 1
    assert len(await audit.get_audit_trail(limit=10_000)) == len(history)


async def test_log_event_refuses_an_unknown_action(app: Strongroom) -> None:
    audit = SecretsAudit(app)
    with pytest.raises(ValidationError):
        await audit.log_event("EXPLODE", "radio-key")
    assert await audit.count_events() == 0


async def test_trail_sees_real_manager_calls_by_resource(
    manager: SecretsManager, app: Strongroom, clock: ManualClock
) -> None:
    audit = SecretsAudit(app)
    with acting_as("ops", ip="10.1.1.1"):
        await manager.create_secret("Radio-Key", "v-one")
        await manager.create_secret("other-key", "v-two")
        clock.advance(minutes=1)
        await manager.get_secret("radio-key")
        await manager.update_secret("RADIO-KEY", "v-three")
    trail = await audit.get_audit_trail("radio-key")
    assert [(e["action"], e["resource_name"]) for e in trail] == [
        ("UPDATE", "radio-key"),
        ("READ", "radio-key"),
        ("CREATE", "radio-key"),
    ]


# -- summary ------------------------------------------------------------------------------------


def expected_summary(events: list[Written]) -> dict[str, Any]:
    total = len(events)
    failures = sum(w.result == "FAILURE" for w in events)
    per_day: dict[str, dict[str, int]] = {}
    for w in events:
        day = per_day.setdefault(w.timestamp.date().isoformat(), {"events": 0, "failures": 0})
        day["events"] += 1
        day["failures"] += w.result == "FAILURE"
    return {
        "total_events": total,
        "by_action": dict(Counter(w.action for w in events)),
        "by_result": dict(Counter(w.result for w in events)),
        "by_actor": dict(Counter(w.actor for w in events)),
        "unique_actors": len({w.actor for w in events}),
        "unique_ips": len({w.ip for w in events if w.ip is not None}),
        "failure_rate": failures / total if total else 0.0,
        "per_day": [{"date": d, **per_day[d]} for d in sorted(per_day)],
    }


def assert_summary(summary: dict[str, Any], events: list[Written]) -> None:
    expected = expected_summary(events)
    for key, value in expected.items():
        if key == "failure_rate":
            assert summary[key] == pytest.approx(value), key
        else:
            assert summary[key] == value, key


async def test_summary_counts_equal_the_events_written(
    app: Strongroom, clock: ManualClock, history: list[Written]
) -> None:
    summary = await SecretsAudit(app).get_audit_summary()
    assert_summary(summary, history)
    assert summary["total_events"] == EVENTS
    assert len(summary["per_day"]) == 3
    assert summary["unique_ips"] == 4
    assert summary["unique_actors"] == 4
    assert 0 < summary["failure_rate"] < 1
    assert summary["until"] == clock()
    assert summary["since"] == clock() - timedelta(days=30)
    assert summary["days"] == 30
    assert summary["resource_name"] is None
    counts = list(summary["by_actor"].values())
    assert counts == sorted(counts, reverse=True)  # busiest actor first


async def test_summary_scoped_to_one_resource(app: Strongroom, history: list[Written]) -> None:
    summary = await SecretsAudit(app).get_audit_summary("DB-Password")
    events = [w for w in history if w.resource == "db-password"]
    assert 0 < len(events) < len(history)
    assert_summary(summary, events)
    assert summary["resource_name"] == "db-password"


@pytest.mark.parametrize("days", [1, 2])
async def test_summary_scoped_to_recent_days(
    days: int, app: Strongroom, clock: ManualClock, history: list[Written]
) -> None:
    summary = await SecretsAudit(app).get_audit_summary(days=days)
    cutoff = clock() - timedelta(days=days)
    events = [w for w in history if w.timestamp >= cutoff]
    assert 0 < len(events) < len(history)
    assert_summary(summary, events)


async def test_summary_scoped_to_resource_and_days(
    app: Strongroom, clock: ManualClock, history: list[Written]
) -> None:
    summary = await SecretsAudit(app).get_audit_summary("tls-cert", days=1)
    cutoff = clock() - timedelta(days=1)
    events = [w for w in history if w.timestamp >= cutoff and w.resource == "tls-cert"]
    assert events
    assert_summary(summary, events)


async def test_summary_leaves_out_events_older_than_its_days(
    app: Strongroom, clock: ManualClock, history: list[Written]
) -> None:
    clock.advance(days=40)
    summary = await SecretsAudit(app).get_audit_summary()
    assert summary["total_events"] == 0
    assert summary["failure_rate"] == 0.0
    assert summary["per_day"] == []
    assert summary["by_actor"] == {}
    assert summary["unique_actors"] == summary["unique_ips"] == 0


@pytest.mark.parametrize("days", [0, -1, 3651, True, 1.5])
async def test_bad_summary_days_are_refused(days: Any, app: Strongroom) -> None:
    with pytest.raises(ValidationError):
        await SecretsAudit(app).get_audit_summary(days=days)
