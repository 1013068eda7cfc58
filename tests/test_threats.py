"""Threat detection: each rule fires on the scenario it names, and normal traffic raises nothing.

Every test runs on memory, SQLite and PostgreSQL. Events are placed in time with the app's
ManualClock (real manager calls and ``log_event`` under ``acting_as``); a long history is
written through the app's audit recorder with explicit timestamps, which is what ``log_event``
does with the clock's time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from strongroom import (
    AuditAction,
    AuditResult,
    ManualClock,
    SecretNotFoundError,
    SecretsAudit,
    SecretsManager,
    Settings,
    Strongroom,
    StrongroomError,
    ThreatRules,
    ValidationError,
    acting_as,
)
from strongroom.core.audit import AuditEvent


@pytest.fixture
def audit(app: Strongroom) -> SecretsAudit:
    return SecretsAudit(app)


OpenRuled = Callable[[ThreatRules | None, datetime], Awaitable[tuple[Strongroom, ManualClock]]]


@pytest.fixture
async def open_ruled(store_settings: Settings) -> AsyncIterator[OpenRuled]:
    """Open a Strongroom on this test's store with the given threat rules and start time."""
    opened: list[Strongroom] = []

    async def open_app(
        rules: ThreatRules | None, start: datetime
    ) -> tuple[Strongroom, ManualClock]:
        clock = ManualClock(start)
        app = await Strongroom.open(store_settings, clock=clock, threat_rules=rules)
        opened.append(app)
        return app, clock

    yield open_app
    for app in opened:
        await app.close()


def of_type(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [t for t in report["threats"] if t["type"] == kind]


def kinds(report: dict[str, Any]) -> set[str]:
    return {t["type"] for t in report["threats"]}


async def log_as(
    audit: SecretsAudit,
    actor: str,
    ip: str | None,
    action: str = "READ",
    resource: str | None = "radio-key",
    result: str = "SUCCESS",
    *,
    agent: str | None = "agent/1",
) -> None:
    with acting_as(actor, ip=ip, user_agent=agent):
        await audit.log_event(action, resource, result)


async def record_bulk(app: Strongroom, events: list[AuditEvent], chunk: int = 5000) -> None:
    """Append many events to the app's audit store, chained as the recorder chains them.

    (``log_event`` takes its time from the clock and commits one event per call; a history of
    days is written here in batches with explicit timestamps instead.)
    """
    assert app.audit.store is not None
    for start in range(0, len(events), chunk):
        await app.audit.store.append(events[start : start + chunk], app.audit.key)


def read_event(
    when: datetime, actor: str, ip: str, agent: str, name: str, version: str
) -> AuditEvent:
    """A successful READ, as the manager records it."""
    return AuditEvent(
        action=AuditAction.READ,
        resource_name=name,
        timestamp=when.astimezone(UTC),
        result=AuditResult.SUCCESS,
        actor_id=actor,
        actor_ip=ip,
        actor_user_agent=agent,
        details={"version": version},
        duration_ms=1,
    )


# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"failure_threshold": 0},
        {"failure_threshold": -3},
        {"failure_threshold": True},
        {"time_window_minutes": -1},
        {"time_window_minutes": 0},
        {"time_window_minutes": 2.5},
    ],
)
async def test_bad_arguments_are_refused(arguments: dict[str, Any], audit: SecretsAudit) -> None:
    with pytest.raises(ValidationError):
        await audit.detect_suspicious_activity(**arguments)


async def test_an_empty_log_has_no_threats_and_reports_its_window(
    audit: SecretsAudit, clock: ManualClock
) -> None:
    report = await audit.detect_suspicious_activity(time_window_minutes=45)
    assert report["threats_detected"] == 0
    assert report["threats"] == []
    assert report["window"]["until"] == clock()
    assert report["window"]["since"] == clock() - timedelta(minutes=45)
    assert report["window"]["minutes"] == 45


# -- failure bursts ---------------------------------------------------------------------------


@pytest.mark.local_identity
async def test_failure_burst_by_one_actor(
    manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    ip = "198.51.100.9"
    first = clock.advance(minutes=1)
    with acting_as("mallory", ip=ip, user_agent="curl/8"):
        for n in range(6):
            if n:
                clock.advance(minutes=2)
            with pytest.raises(SecretNotFoundError):
                await manager.get_secret(f"guess-{n}")
    last = clock()
    clock.advance(minutes=1)

    report = await audit.detect_suspicious_activity(failure_threshold=5, time_window_minutes=30)

    [burst] = of_type(report, "failure_burst_actor")
    assert burst["actor_id"] == "mallory"
    assert burst["actor_ip"] == ip
    assert burst["count"] == 6
    assert burst["first_seen"] == first
    assert burst["last_seen"] == last
    assert burst["evidence"]["distinct_resources"] == 6
    assert burst["severity"] == "medium"
    assert "enumeration" not in kinds(report)  # 6 missing names, under the 10 that enumerate
    assert report["threats_detected"] == len(report["threats"])

    higher = await audit.detect_suspicious_activity(failure_threshold=7)
    assert not of_type(higher, "failure_burst_actor")
    other = await audit.detect_suspicious_activity(actor_id="someone-else")
    assert other["threats_detected"] == 0
    scoped = await audit.detect_suspicious_activity(actor_id="mallory")
    assert [t["actor_id"] for t in of_type(scoped, "failure_burst_actor")] == ["mallory"]


async def test_failure_burst_severity_grows_with_the_count(
    audit: SecretsAudit, clock: ManualClock
) -> None:
    for _ in range(20):
        clock.advance(seconds=30)
        await log_as(audit, "mallory", "198.51.100.9", result="FAILURE")
    report = await audit.detect_suspicious_activity(failure_threshold=5)
    [burst] = of_type(report, "failure_burst_actor")
    assert burst["count"] == 20
    assert burst["severity"] == "critical"


async def test_failures_outside_the_window_do_not_count(
    audit: SecretsAudit, clock: ManualClock
) -> None:
    for _ in range(4):
        clock.advance(minutes=1)
        await log_as(audit, "mallory", "198.51.100.9", result="FAILURE")
    clock.advance(minutes=40)
    for _ in range(4):
        clock.advance(minutes=1)
        await log_as(audit, "mallory", "198.51.100.9", result="FAILURE")

    short = await audit.detect_suspicious_activity(failure_threshold=5, time_window_minutes=30)
    assert short["threats_detected"] == 0
    long = await audit.detect_suspicious_activity(failure_threshold=5, time_window_minutes=60)
    [burst] = of_type(long, "failure_burst_actor")
    assert burst["count"] == 8


@pytest.mark.local_identity
async def test_failure_burst_from_one_ip_across_actors(
    manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    ip = "192.0.2.66"
    for actor in ("probe-a", "probe-b", "probe-c"):
        with acting_as(actor, ip=ip, user_agent="scanner/0.1"):
            for _ in range(2):
                clock.advance(minutes=1)
                with pytest.raises(SecretNotFoundError):
                    await manager.get_secret("payroll-db")
    # Another address's single failure stays out of it.
    await log_as(audit, "probe-a", "192.0.2.67", result="FAILURE")

    report = await audit.detect_suspicious_activity(failure_threshold=5)

    [burst] = of_type(report, "failure_burst_ip")
    assert burst["actor_ip"] == ip
    assert burst["count"] == 6
    assert burst["evidence"]["distinct_actors"] == 3
    assert burst["actor_id"] in {"probe-a", "probe-b", "probe-c"}
    assert not of_type(report, "failure_burst_actor")  # no single actor reached 5


# -- unavailable secrets ------------------------------------------------------------------------


@pytest.mark.local_identity
async def test_reads_of_disabled_and_deleted_secrets(
    manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    with acting_as("ops", ip="10.0.0.2"):
        await manager.create_secret("radio-key", "v-radio")
        await manager.create_secret("old-key", "v-old")
        await manager.create_secret("good-key", "v-good")
        await manager.update_secret_properties("radio-key", enabled=False)
        await manager.delete_secret("old-key")
    clock.advance(minutes=5)
    ip = "203.0.113.50"
    with acting_as("eve", ip=ip, user_agent="app/3"):
        for _ in range(2):
            clock.advance(minutes=1)
            with pytest.raises(StrongroomError):
                await manager.get_secret("Radio-Key")
        clock.advance(minutes=1)
        with pytest.raises(StrongroomError):
            await manager.get_secret("old-key")
        assert await manager.get_secret("good-key") == "v-good"

    report = await audit.detect_suspicious_activity()

    found = {
        (t["actor_id"], t["actor_ip"], t["resource_name"], t["evidence"]["error_code"]): t
        for t in of_type(report, "unavailable_secret_access")
    }
    assert set(found) == {
        ("eve", ip, "radio-key", "disabled"),
        ("eve", ip, "old-key", "deleted"),
    }
    assert found["eve", ip, "radio-key", "disabled"]["count"] == 2
    assert found["eve", ip, "old-key", "deleted"]["count"] == 1
    assert {t["severity"] for t in found.values()} == {"high"}


# -- enumeration ------------------------------------------------------------------------------


@pytest.mark.local_identity
async def test_enumeration_of_many_secrets(
    manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    names = [f"secret-{n:02d}" for n in range(50)]
    with acting_as("ops", ip="10.0.0.2"):
        for name in names:
            await manager.create_secret(name, f"v-{name}")
    clock.advance(hours=2)  # the set-up is long before the window
    with acting_as("crawler", ip="198.51.100.77", user_agent="py/3"):
        for name in names:
            clock.advance(seconds=10)
            await manager.get_secret(name)
    with acting_as("busy-but-fine", ip="10.0.0.9"):
        for name in names[:49]:  # one short of the rule
            await manager.get_secret_properties(name)

    report = await audit.detect_suspicious_activity()

    [threat] = of_type(report, "enumeration")
    assert threat["actor_id"] == "crawler"
    assert threat["actor_ip"] == "198.51.100.77"
    assert threat["count"] == 50
    assert threat["evidence"]["distinct_resources"] == 50
    assert threat["evidence"]["distinct_not_found"] == 0


@pytest.mark.local_identity
async def test_enumeration_of_missing_names(
    manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    with acting_as("prober", ip="198.51.100.5"):
        for n in range(10):
            clock.advance(seconds=20)
            with pytest.raises(SecretNotFoundError):
                await manager.get_secret(f"maybe-{n}")
    with acting_as("typo", ip="10.0.0.3"):
        for n in range(12):  # 9 distinct missing names, one asked four times
            with pytest.raises(SecretNotFoundError):
                await manager.get_secret(f"missing-{min(n, 8)}")

    report = await audit.detect_suspicious_activity(failure_threshold=50)

    [threat] = of_type(report, "enumeration")
    assert threat["actor_id"] == "prober"
    assert threat["actor_ip"] == "198.51.100.5"
    assert threat["count"] == 10
    assert threat["evidence"]["distinct_not_found"] == 10


# -- new origins ------------------------------------------------------------------------------


async def test_new_ip_for_an_actor_with_history(audit: SecretsAudit, clock: ManualClock) -> None:
    # carol's history is older than the 30-day baseline; bob's is one event short of one.
    for _ in range(25):
        clock.advance(hours=1)
        await log_as(audit, "carol", "10.0.0.30")
    clock.advance(days=36)
    for _ in range(20):
        clock.advance(hours=12)
        await log_as(audit, "alice", "10.0.0.10", resource="dispatch-db")
    for _ in range(19):
        clock.advance(minutes=30)
        await log_as(audit, "bob", "10.0.0.20")
    clock.advance(hours=2)
    for _ in range(3):
        clock.advance(minutes=2)
        await log_as(audit, "alice", "185.220.101.4", resource="dispatch-db")
    await log_as(audit, "alice", "10.0.0.10", resource="dispatch-db")  # the usual address too
    await log_as(audit, "bob", "185.220.101.5")
    await log_as(audit, "carol", "185.220.101.6")

    report = await audit.detect_suspicious_activity()

    [threat] = of_type(report, "new_ip")
    assert threat["actor_id"] == "alice"
    assert threat["actor_ip"] == "185.220.101.4"
    assert threat["count"] == 3
    assert threat["evidence"]["origin"] == "185.220.101.4"
    assert "new_user_agent" not in kinds(report)  # the agent stayed the same


async def test_new_user_agent_for_an_actor_with_history(
    audit: SecretsAudit, clock: ManualClock
) -> None:
    for _ in range(24):
        clock.advance(hours=6)
        await log_as(audit, "svc-billing", "10.0.0.40", agent="billing/4.2")
    clock.advance(hours=3)
    for _ in range(2):
        clock.advance(minutes=1)
        await log_as(audit, "svc-billing", "10.0.0.40", agent="python-requests/2.31")

    report = await audit.detect_suspicious_activity()

    [threat] = of_type(report, "new_user_agent")
    assert threat["actor_id"] == "svc-billing"
    assert threat["count"] == 2
    assert threat["evidence"]["origin"] == "python-requests/2.31"
    assert "new_ip" not in kinds(report)  # the address stayed the same


# -- business hours ---------------------------------------------------------------------------

BERLIN = ThreatRules(business_hours=(7, 19), business_timezone="Europe/Berlin")


async def _one_read_at(open_ruled: OpenRuled, rules: ThreatRules | None, at: datetime) -> Any:
    app, clock = await open_ruled(rules, at)
    audit = SecretsAudit(app)
    await log_as(audit, "night-owl", "10.0.0.77")
    clock.advance(minutes=5)
    return await audit.detect_suspicious_activity()


async def test_off_hours_access_at_three_in_the_morning(open_ruled: OpenRuled) -> None:
    # Monday 5 January 2026, 02:00 UTC is 03:00 in Berlin (CET, UTC+1).
    report = await _one_read_at(open_ruled, BERLIN, datetime(2026, 1, 5, 2, 0, tzinfo=UTC))
    [threat] = of_type(report, "off_hours_access")
    assert threat["actor_id"] == "night-owl"
    assert threat["actor_ip"] == "10.0.0.77"
    assert threat["count"] == 1
    assert threat["evidence"]["timezone"] == "Europe/Berlin"
    assert threat["evidence"]["business_hours"] == [7, 19]
    assert threat["evidence"]["hours"] == ["2026-01-05T03:00:00+01:00"]


async def test_off_hours_access_in_summer_time(open_ruled: OpenRuled) -> None:
    # Wednesday 1 July 2026, 04:30 UTC is 06:30 in Berlin (CEST, UTC+2): before opening.
    report = await _one_read_at(open_ruled, BERLIN, datetime(2026, 7, 1, 4, 30, tzinfo=UTC))
    assert [t["actor_id"] for t in of_type(report, "off_hours_access")] == ["night-owl"]
    # 05:30 UTC is 07:30 there: open.
    report = await _one_read_at(open_ruled, BERLIN, datetime(2026, 7, 8, 5, 30, tzinfo=UTC))
    assert not of_type(report, "off_hours_access")


async def test_no_off_hours_access_at_ten_on_a_weekday(open_ruled: OpenRuled) -> None:
    # Monday 5 January 2026, 09:00 UTC is 10:00 in Berlin.
    report = await _one_read_at(open_ruled, BERLIN, datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    assert report["threats_detected"] == 0


async def test_off_hours_access_at_ten_on_a_saturday(open_ruled: OpenRuled) -> None:
    report = await _one_read_at(open_ruled, BERLIN, datetime(2026, 1, 10, 9, 0, tzinfo=UTC))
    assert [t["type"] for t in report["threats"]] == ["off_hours_access"]


async def test_no_off_hours_rule_without_business_hours(open_ruled: OpenRuled) -> None:
    at = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    report = await _one_read_at(open_ruled, ThreatRules(), at)
    assert report["threats_detected"] == 0
    report = await _one_read_at(open_ruled, None, at)  # from settings: unset, so off
    assert report["threats_detected"] == 0


KOLKATA = ThreatRules(business_hours=(9, 17), business_timezone="Asia/Kolkata")  # UTC+5:30


async def test_no_off_hours_access_just_after_opening_in_a_half_hour_zone(
    open_ruled: OpenRuled,
) -> None:
    # Monday 5 January 2026, 03:40 UTC is 09:10 in Kolkata: open.
    report = await _one_read_at(open_ruled, KOLKATA, datetime(2026, 1, 5, 3, 40, tzinfo=UTC))
    assert not of_type(report, "off_hours_access")


async def test_off_hours_access_just_after_closing_in_a_half_hour_zone(
    open_ruled: OpenRuled,
) -> None:
    # Monday 5 January 2026, 11:40 UTC is 17:10 in Kolkata: closed.
    report = await _one_read_at(open_ruled, KOLKATA, datetime(2026, 1, 5, 11, 40, tzinfo=UTC))
    assert [t["actor_id"] for t in of_type(report, "off_hours_access")] == ["night-owl"]


# -- rate anomaly -----------------------------------------------------------------------------


async def test_rate_anomaly_against_the_actors_own_baseline(
    app: Strongroom, audit: SecretsAudit, clock: ManualClock
) -> None:
    start = clock()
    week = [start + timedelta(hours=h) for h in range(168)]  # one read an hour for 7 days
    steady = [
        start + timedelta(minutes=1.5 * m) for m in range(6700)
    ]  # 40 an hour, all before the window
    history = [read_event(t, "svc-fast", "10.0.0.5", "a/1", "k", "0" * 32) for t in week]
    history += [read_event(t, "svc-slow", "10.0.0.6", "a/1", "k", "0" * 32) for t in week]
    history += [read_event(t, "svc-busy", "10.0.0.7", "a/1", "k", "0" * 32) for t in steady]
    await record_bulk(app, history)
    clock.advance(days=7, minutes=5)
    for n in range(120):
        clock.advance(seconds=10)
        await log_as(audit, "svc-fast", "10.0.0.5", agent="a/1", resource=f"k{n % 3}")
        if n < 99:  # under the 100 events the rule needs
            await log_as(audit, "svc-slow", "10.0.0.6", agent="a/1", resource="k")
        if n < 100:  # 100 in the window is 5x its 7-day rate of 40 an hour
            await log_as(audit, "svc-busy", "10.0.0.7", agent="a/1", resource="k")

    report = await audit.detect_suspicious_activity()

    [threat] = of_type(report, "rate_anomaly")
    assert threat["actor_id"] == "svc-fast"
    assert threat["actor_ip"] == "10.0.0.5"
    assert threat["count"] == 120
    assert threat["evidence"]["baseline_events"] == 168
    assert threat["evidence"]["baseline_days"] == 7
    assert threat["evidence"]["ratio"] == pytest.approx(120.0)  # expected 0.5, floored to 1
    assert threat["severity"] == "high"


# -- normal traffic ---------------------------------------------------------------------------

SERVICE = ("svc-dispatch", "10.20.0.15", "dispatch-worker/5.4.1")
SERVICE_SECRETS = ("dispatch-db", "radio-gateway-token", "maps-api-key")


async def _service_reads(
    manager: SecretsManager, app: Strongroom, clock: ManualClock, duration: timedelta
) -> None:
    """The service reads its three secrets every 5 s for ``duration``: all but the last ten
    minutes written in bulk, the last ten minutes as real calls."""
    with acting_as("ops-deploy", ip="10.20.0.2", user_agent="strongroom-cli/1.0"):
        versions = {
            name: (await manager.create_secret(name, f"value-of-{name}"))["version"]
            for name in SERVICE_SECRETS
        }
    actor, ip, agent = SERVICE
    start = clock()
    tail = timedelta(minutes=10)
    ticks = int((duration - tail) / timedelta(seconds=5))
    bulk = [
        read_event(start + timedelta(seconds=5 * (tick + 1)), actor, ip, agent, name, version)
        for tick in range(ticks)
        for name, version in versions.items()
    ]
    await record_bulk(app, bulk)
    clock.advance(seconds=5 * ticks)
    with acting_as(actor, ip=ip, user_agent=agent):
        for _ in range(int(tail / timedelta(seconds=5))):
            clock.advance(seconds=5)
            for name in SERVICE_SECRETS:
                assert await manager.get_secret(name) == f"value-of-{name}"
    assert clock() - start == duration


@pytest.mark.local_identity
async def test_normal_service_traffic_for_three_days_raises_nothing(
    manager: SecretsManager, app: Strongroom, audit: SecretsAudit, clock: ManualClock
) -> None:
    await _service_reads(manager, app, clock, timedelta(days=3))
    assert await audit.count_events(actor_id=SERVICE[0]) == 3 * 3 * 24 * 60 * 12

    for minutes in (30, 7 * 24 * 60):
        report = await audit.detect_suspicious_activity(time_window_minutes=minutes)
        assert report["threats_detected"] == 0, report["threats"]
        assert report["threats"] == []


@pytest.mark.local_identity
async def test_a_service_in_its_first_hours_raises_nothing(
    manager: SecretsManager, app: Strongroom, audit: SecretsAudit, clock: ManualClock
) -> None:
    """A service deployed two hours ago reads as often as it always will: not an anomaly."""
    await _service_reads(manager, app, clock, timedelta(hours=2))

    report = await audit.detect_suspicious_activity()
    assert report["threats_detected"] == 0, report["threats"]
