"""SecretsRotation on every store (memory, SQLite, PostgreSQL), with an injected clock.

Schedules (period, expiry buffer, force, disabled), failures (audited, retried with a fresh
value, never leaking a callback's message), the scheduler, persistence across a reopen,
generators, the grace period of the previous version and the compliance report.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import string
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from helpers_settings import make_settings, new_master_key
from helpers_ticks import Ticks
from strongroom import (
    ManualClock,
    RotationConfig,
    RotationNotConfiguredError,
    SecretDisabledError,
    SecretNotFoundError,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    SecretType,
    Settings,
    Strongroom,
    StrongroomError,
    ValidationError,
)
from strongroom.core.logging import configure_logging
from strongroom.db.rotation_absence import ABSENCE_SECONDS, MAX_NAMES, KnownAbsent
from strongroom.services.rotation.generators import generate
from strongroom.services.rotation.secrets_rotation import LEASE


def token() -> str:
    return f"sv-{secrets.token_hex(12)}"


def canary() -> str:
    return f"ROTATION-CANARY-{secrets.token_hex(8)}"


@pytest.fixture
def rotation(app: Strongroom) -> SecretsRotation:
    return SecretsRotation(app)


async def rotate_events(app: Strongroom, name: str, result: str | None = None) -> list[dict]:
    return await SecretsAudit(app).get_audit_trail(name, "ROTATE", result=result)


async def version_ids(manager: SecretsManager, name: str) -> list[str]:
    return [v["version"] for v in await manager.get_secret_versions(name)]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 5) -> None:
    """Poll ``check`` (the scheduler runs on its own task, in real time) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def b64_bytes(text: str, *, urlsafe: bool) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    if urlsafe:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


# -- schedule ---------------------------------------------------------------------------------


async def test_a_secret_registered_today_is_due_on_day_90_and_not_before(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock, app: Strongroom
) -> None:
    first = await manager.create_secret("api-token", token())
    status = await rotation.register_secret(RotationConfig(name="api-token", generator="api_key"))
    assert status["days_until_rotation"] == 90
    assert status["last_rotation"] == first["created_at"]
    assert status["next_rotation"] == first["created_at"] + timedelta(days=90)
    assert status["overdue"] is False
    assert status["enabled"] is True
    assert status["last_result"] is None
    assert status["last_error"] is None

    clock.advance(days=90, seconds=-1)
    assert await rotation.run_check() == {"rotated": [], "failed": [], "grace_ended": []}
    assert (await rotation.rotate_secret("api-token"))["rotated"] is False
    assert await version_ids(manager, "api-token") == [first["version"]]
    status = await rotation.get_rotation_status("api-token")
    assert status["overdue"] is False
    assert status["days_until_rotation"] == 0

    clock.advance(seconds=1)
    assert (await rotation.get_rotation_status("api-token"))["overdue"] is True
    assert (await rotation.run_check())["rotated"] == ["api-token"]
    versions = await version_ids(manager, "api-token")
    assert len(versions) == 2
    assert versions[1] == first["version"]
    status = await rotation.get_rotation_status("api-token")
    assert status["last_rotation"] == clock()
    assert status["next_rotation"] == clock() + timedelta(days=90)
    assert status["days_until_rotation"] == 90
    assert status["overdue"] is False
    assert status["last_result"] == "SUCCESS"
    events = await rotate_events(app, "api-token", "SUCCESS")
    assert len(events) == 1
    assert events[0]["details"]["version"] == versions[0]


async def test_a_version_written_by_hand_restarts_the_schedule(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    await manager.create_secret("hand-token", token())
    await rotation.register_secret(RotationConfig(name="hand-token", generator="api_key"))
    clock.advance(days=60)
    written = await manager.update_secret("hand-token", token())
    status = await rotation.get_rotation_status("hand-token")
    assert status["last_rotation"] == written["created_at"] == clock()
    assert status["next_rotation"] == clock() + timedelta(days=90)
    assert status["days_until_rotation"] == 90
    clock.advance(days=89)  # 149 days after registering: due by then, had it not restarted
    assert await rotation.run_check() == {"rotated": [], "failed": [], "grace_ended": []}
    assert (await version_ids(manager, "hand-token"))[0] == written["version"]


async def test_an_expiring_secret_is_due_24h_before_expiry_and_keeps_its_lifetime(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    created = await manager.create_secret("short-lived", token(), expires_in_days=30)
    await rotation.register_secret(RotationConfig(name="short-lived", generator="password"))
    status = await rotation.get_rotation_status("short-lived")
    assert status["due_at"] == created["expires_at"] - timedelta(hours=24)

    clock.advance(days=29, seconds=-1)
    assert (await rotation.run_check())["rotated"] == []
    clock.advance(seconds=1)
    assert (await rotation.run_check())["rotated"] == ["short-lived"]

    props = await manager.get_secret_properties("short-lived")
    assert props["version"] != created["version"]
    assert props["expires_at"] - props["created_at"] == timedelta(days=30)
    assert props["expires_at"] == clock() + timedelta(days=30)
    status = await rotation.get_rotation_status("short-lived")
    assert status["due_at"] == props["expires_at"] - timedelta(hours=24)


async def test_a_secret_due_by_period_and_by_expiry_is_rotated_once(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock, app: Strongroom
) -> None:
    await manager.create_secret("both-due", token(), expires_in_days=91)
    await rotation.register_secret(RotationConfig(name="both-due", generator="password"))
    clock.advance(days=90)  # day 90 and 24 h before expiry, at the same moment

    other = SecretsRotation(app)  # a second scheduler on the same store
    outcomes = await asyncio.gather(rotation.run_check(), other.run_check())
    assert sorted(n for o in outcomes for n in o["rotated"]) == ["both-due"]
    assert (await rotation.run_check())["rotated"] == []
    assert len(await version_ids(manager, "both-due")) == 2
    assert len(await rotate_events(app, "both-due")) == 1


async def test_force_rotation_rotates_at_the_next_check(
    manager: SecretsManager, rotation: SecretsRotation, app: Strongroom
) -> None:
    created = await manager.create_secret("forced", token())
    await rotation.register_secret(RotationConfig(name="forced", generator="jwt_secret"))
    assert (await rotation.run_check())["rotated"] == []

    status = await rotation.force_rotation("forced")
    assert status["force_on_next"] is True
    assert status["overdue"] is True
    assert (await rotation.run_check())["rotated"] == ["forced"]
    status = await rotation.get_rotation_status("forced")
    assert status["force_on_next"] is False
    assert status["days_until_rotation"] == 90
    assert (await rotation.run_check())["rotated"] == []
    assert await manager.get_secret("forced") != await manager.get_secret(
        "forced", version=created["version"]
    )
    assert len(await rotate_events(app, "forced", "SUCCESS")) == 1


async def test_a_disabled_configuration_is_never_rotated(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    created = await manager.create_secret("frozen", token(), expires_in_days=10)
    status = await rotation.register_secret(
        RotationConfig(name="frozen", generator="password", enabled=False)
    )
    assert status["enabled"] is False
    await rotation.force_rotation("frozen")
    for _ in range(3):
        clock.advance(days=200)
        assert (await rotation.run_check())["rotated"] == []
        assert (await rotation.rotate_secret("frozen"))["rotated"] is False
        assert (await rotation.get_rotation_status("frozen"))["overdue"] is False
    assert (await manager.get_secret_versions("frozen"))[0]["version"] == created["version"]


async def test_rotate_secret_rotates_only_when_due_unless_forced(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    await manager.create_secret("on-demand", token())
    await rotation.register_secret(
        RotationConfig(name="on-demand", generator="raw_key", rotation_days=7)
    )
    result = await rotation.rotate_secret("on-demand")
    assert result["rotated"] is False
    assert result["reason"] == "not due"

    result = await rotation.rotate_secret("on-demand", force=True)
    assert result["rotated"] is True
    assert result["version"] == (await manager.get_secret_properties("on-demand"))["version"]

    clock.advance(days=7)
    assert (await rotation.rotate_secret("ON-DEMAND"))["rotated"] is True  # names: any case
    assert len(await version_ids(manager, "on-demand")) == 3
    history = await rotation.get_rotation_history("on-demand")
    assert [e["result"] for e in history] == ["SUCCESS", "SUCCESS"]
    assert history[0]["timestamp"] > history[1]["timestamp"]  # newest first
    with pytest.raises(RotationNotConfiguredError):
        await rotation.rotate_secret("never-configured")


async def test_rotate_secret_respects_another_schedulers_live_lease(
    app: Strongroom, manager: SecretsManager, clock: ManualClock
) -> None:
    """A lease taken by one scheduler holds off every other until it ends or is released."""
    await manager.create_secret("leased", token())
    holder, other = SecretsRotation(app), SecretsRotation(app)
    assert holder.owner != other.owner
    await holder.register_secret(RotationConfig(name="leased", generator="raw_key"))
    now = clock()
    lease = await app.rotation_store.claim("leased", now, holder.owner, now + LEASE)
    assert lease is not None
    assert lease["lease_owner"] == holder.owner

    result = await other.rotate_secret("leased", force=True)
    assert result == {"name": "leased", "rotated": False, "reason": "rotating elsewhere"}
    assert len(await version_ids(manager, "leased")) == 1
    assert await app.rotation_store.claim("leased", now, other.owner, now + LEASE) is None
    # the holder may renew its own lease
    assert await app.rotation_store.claim("leased", now, holder.owner, now + LEASE) is not None

    clock.advance(seconds=LEASE.total_seconds() + 1)  # the holder died: its lease lapses
    assert (await other.rotate_secret("leased", force=True))["rotated"] is True
    assert len(await version_ids(manager, "leased")) == 2


async def test_the_rotation_store_names_its_backend(
    app: Strongroom, store_settings: Settings
) -> None:
    """Status and metrics report where rotation state lives (the memory profile keeps it in an
    in-memory SQLite database, the Azure profile in SQLite or PostgreSQL)."""
    expected = {"memory": "memory", "sqlite": "sqlite", "postgres": "postgres"}
    if store_settings.backend.value in expected:
        assert app.rotation_store.backend == expected[store_settings.backend.value]


async def test_unregister_stops_rotation(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    await manager.create_secret("retired", token())
    await rotation.register_secret(RotationConfig(name="retired", generator="password"))
    assert [c["name"] for c in await rotation.list_rotation_configs()] == ["retired"]
    assert await rotation.unregister_secret("retired") is True
    assert await rotation.unregister_secret("retired") is False
    assert await rotation.list_rotation_configs() == []
    with pytest.raises(RotationNotConfiguredError):
        await rotation.get_rotation_status("retired")
    clock.advance(days=365)
    assert (await rotation.run_check())["rotated"] == []
    assert len(await version_ids(manager, "retired")) == 1


async def test_list_rotation_configs_reports_each_status(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    await manager.create_secret("cfg-a", token())
    await manager.create_secret("cfg-b", token())
    await rotation.register_secret(
        RotationConfig(name="cfg-a", generator="password", rotation_days=10, description="a")
    )
    await rotation.register_secret(
        RotationConfig(name="cfg-b", rotation_callback=lambda _: token(), rotation_days=20)
    )
    clock.advance(days=15)
    configs = {c["name"]: c for c in await rotation.list_rotation_configs()}
    assert set(configs) == {"cfg-a", "cfg-b"}
    assert configs["cfg-a"]["overdue"] is True
    assert configs["cfg-a"]["description"] == "a"
    assert configs["cfg-a"]["generator"] == "password"
    assert configs["cfg-b"]["overdue"] is False
    assert configs["cfg-b"]["days_until_rotation"] == 5
    assert configs["cfg-b"]["generator"] is None


async def test_a_configuration_without_a_value_source_is_refused(
    rotation: SecretsRotation,
) -> None:
    with pytest.raises(ValidationError):
        await rotation.register_secret(RotationConfig(name="no-source"))
    with pytest.raises(ValidationError):
        await rotation.register_secret(
            RotationConfig(name="no-rotator", generator="password", rotator="missing")
        )
    with pytest.raises(ValidationError):
        await rotation.register_secret(
            RotationConfig(name="bad-days", generator="password", rotation_days=0)
        )
    assert await rotation.list_rotation_configs() == []


# -- failures, retries, secrecy of callback errors ---------------------------------------------


async def test_a_failing_callback_keeps_the_value_is_audited_and_retried(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock, app: Strongroom
) -> None:
    original = token()
    await manager.create_secret("flaky", original)
    await manager.create_secret("steady", token())
    calls: list[str] = []

    def flaky(name: str) -> str:
        calls.append(name)
        if len(calls) <= 2:
            raise RuntimeError("upstream said no")
        return "flaky-new"

    await rotation.register_secret(RotationConfig(name="flaky", rotation_callback=flaky))
    await rotation.register_secret(RotationConfig(name="steady", generator="password"))
    clock.advance(days=90)

    result = await rotation.run_check()
    assert result["rotated"] == ["steady"]  # the other secret of the cycle still rotates
    assert result["failed"] == ["flaky"]
    assert calls == ["flaky"]
    assert await manager.get_secret("flaky") == original
    assert len(await version_ids(manager, "flaky")) == 1
    status = await rotation.get_rotation_status("flaky")
    assert status["last_result"] == "FAILURE"
    assert status["last_error"]
    assert "RuntimeError" in status["last_error"]
    assert status["attempts"] == 1
    failures = await rotate_events(app, "flaky", "FAILURE")
    assert len(failures) == 1
    assert failures[0]["error_code"]
    assert failures[0]["error_message"]

    # Not before the retry delay (1 minute, then 2).
    clock.advance(seconds=59)
    assert (await rotation.run_check())["failed"] == []
    clock.advance(seconds=1)
    assert (await rotation.run_check())["failed"] == ["flaky"]
    assert (await rotation.get_rotation_status("flaky"))["attempts"] == 2
    clock.advance(minutes=1)
    assert (await rotation.run_check())["failed"] == []
    clock.advance(minutes=1)
    assert (await rotation.run_check())["rotated"] == ["flaky"]
    assert calls == ["flaky"] * 3
    assert await manager.get_secret("flaky") == "flaky-new"
    status = await rotation.get_rotation_status("flaky")
    assert status["last_result"] == "SUCCESS"
    assert status["last_error"] is None
    assert status["attempts"] == 0
    assert [e["result"] for e in await rotation.get_rotation_history("flaky")] == [
        "SUCCESS",
        "FAILURE",
        "FAILURE",
    ]


async def test_a_failing_verification_keeps_the_value_and_the_retry_uses_a_fresh_one(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock, app: Strongroom
) -> None:
    original = token()
    await manager.create_secret("verified", original)
    await manager.create_secret("neighbour", token())
    seen: list[str] = []

    async def verify(name: str, value: Any) -> bool:
        seen.append(value)
        return len(seen) > 1  # the first new value is refused

    await rotation.register_secret(
        RotationConfig(name="verified", generator="password", verify_callback=verify)
    )
    await rotation.register_secret(RotationConfig(name="neighbour", generator="password"))
    clock.advance(days=90)

    result = await rotation.run_check()
    assert result == {"rotated": ["neighbour"], "failed": ["verified"], "grace_ended": []}
    assert await manager.get_secret("verified") == original
    assert len(await version_ids(manager, "verified")) == 1
    status = await rotation.get_rotation_status("verified")
    assert status["last_result"] == "FAILURE"
    assert "verification" in status["last_error"]
    [failure] = await rotate_events(app, "verified", "FAILURE")
    assert failure["error_code"] == "rotation_failed"

    clock.advance(minutes=1)
    assert (await rotation.run_check())["rotated"] == ["verified"]
    assert len(seen) == 2
    assert seen[0] != seen[1]  # the retry generated a fresh value
    assert await manager.get_secret("verified") == seen[1]
    assert seen[0] not in [
        await manager.get_secret("verified", version=v)
        for v in await version_ids(manager, "verified")
    ]


@pytest.fixture
def captured_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """capsys, with structlog put back to its defaults afterwards."""
    yield capsys
    structlog.reset_defaults()


class CallbackError(StrongroomError):
    """An error a callback author might raise (strongroom's errors are public)."""


@pytest.mark.parametrize(
    "error_type",
    [RuntimeError, ValueError, ValidationError, CallbackError],
    ids=lambda t: t.__name__,
)
async def test_a_callback_error_message_never_reaches_status_audit_or_logs(
    manager: SecretsManager,
    rotation: SecretsRotation,
    clock: ManualClock,
    app: Strongroom,
    captured_logs: pytest.CaptureFixture[str],
    error_type: type[Exception],
) -> None:
    leaked = canary()
    captured_logs.readouterr()
    configure_logging("DEBUG")  # bound to the captured stderr here, in the test body

    def leaky(name: str) -> str:
        raise error_type(f"could not store {leaked}")

    async def leaky_verify(name: str, value: Any) -> bool:
        raise error_type(f"refused {leaked}")

    await manager.create_secret("leaky", token())
    await manager.create_secret("leaky-verify", token())
    await rotation.register_secret(RotationConfig(name="leaky", rotation_callback=leaky))
    await rotation.register_secret(
        RotationConfig(name="leaky-verify", generator="password", verify_callback=leaky_verify)
    )
    clock.advance(days=90)
    assert sorted((await rotation.run_check())["failed"]) == ["leaky", "leaky-verify"]
    clock.advance(minutes=1)
    assert (await rotation.rotate_secret("leaky"))["rotated"] is False

    for name in ("leaky", "leaky-verify"):
        status = await rotation.get_rotation_status(name)
        assert status["last_result"] == "FAILURE"
        assert status["last_error"]
        assert leaked not in status["last_error"]
        events = await rotate_events(app, name, "FAILURE")
        assert events
        assert leaked not in json.dumps(events, default=str)
        assert leaked not in json.dumps(await rotation.list_rotation_configs(), default=str)
    output = captured_logs.readouterr()
    assert "rotation failed" in output.err  # the failure was logged ...
    assert leaked not in output.out + output.err  # ... without the message


async def test_the_retry_after_a_failure_never_reuses_the_refused_value(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    await manager.create_secret("retry-fresh", token())
    offered: list[str] = []

    def verify(name: str, value: Any) -> bool:
        offered.append(value)
        return len(offered) > 3

    await rotation.register_secret(
        RotationConfig(
            name="retry-fresh",
            generator="api_key",
            generator_options={"prefix": "rk"},
            verify_callback=verify,
        )
    )
    clock.advance(days=90)
    for _ in range(4):
        await rotation.run_check()
        clock.advance(hours=1)
    assert len(offered) == 4
    assert len(set(offered)) == 4
    assert await manager.get_secret("retry-fresh") == offered[-1]


async def test_a_secret_whose_rotation_keeps_failing_is_reported_overdue(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    """A failure schedules a retry, but the secret is still past its rotation date: status and
    compliance must keep saying so until a rotation succeeds."""
    await manager.create_secret("stuck", token(), secret_type=SecretType.API_KEY)

    def broken(name: str) -> str:
        raise RuntimeError("target down")

    await rotation.register_secret(RotationConfig(name="stuck", rotation_callback=broken))
    clock.advance(days=91)
    assert (await rotation.run_check())["failed"] == ["stuck"]
    status = await rotation.get_rotation_status("stuck")
    assert status["next_rotation"] < clock()
    assert status["overdue"] is True
    assert status["days_until_rotation"] < 0
    assert "stuck" in (await rotation.compliance_report())["overdue"]


# -- scheduler ---------------------------------------------------------------------------------


async def test_the_scheduler_catches_up_at_start(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    created = await manager.create_secret("missed", token())
    await rotation.register_secret(RotationConfig(name="missed", generator="password"))
    clock.advance(days=120)  # the scheduler was down on day 90

    async def rotated() -> bool:
        return (await rotation.get_rotation_status("missed"))["last_result"] == "SUCCESS"

    await rotation.start_rotation_scheduler(check_interval_seconds=3600)
    try:
        await rotation.start_rotation_scheduler(check_interval_seconds=3600)  # no second task
        await eventually(rotated, "the catch-up rotation")
    finally:
        await rotation.stop_rotation_scheduler()
    await rotation.stop_rotation_scheduler()  # stopping twice is harmless
    assert (await manager.get_secret_properties("missed"))["version"] != created["version"]
    assert len(await version_ids(manager, "missed")) == 2


async def test_the_scheduler_survives_a_callback_exception(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    calls = 0

    def sometimes(name: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first call fails")
        return f"value-{calls}"

    await manager.create_secret("sched-flaky", token())
    await manager.create_secret("sched-fine", token())
    await rotation.register_secret(RotationConfig(name="sched-flaky", rotation_callback=sometimes))
    await rotation.register_secret(RotationConfig(name="sched-fine", generator="password"))
    clock.advance(days=90)

    async def result_of(name: str, wanted: str) -> bool:
        return (await rotation.get_rotation_status(name))["last_result"] == wanted

    with pytest.raises(ValidationError):
        await rotation.start_rotation_scheduler(check_interval_seconds=0)
    await rotation.start_rotation_scheduler(check_interval_seconds=1)
    try:
        await eventually(lambda: result_of("sched-flaky", "FAILURE"), "the failed rotation")
        await eventually(lambda: result_of("sched-fine", "SUCCESS"), "the other rotation")
        clock.advance(minutes=1)  # the retry is due; the next cycle (1 s later) takes it
        await eventually(lambda: result_of("sched-flaky", "SUCCESS"), "the retry")
    finally:
        await rotation.stop_rotation_scheduler()
    assert await manager.get_secret("sched-flaky") == "value-2"


# -- configurations, callbacks, creation ------------------------------------------------------


@pytest.mark.stores("sqlite", "postgres")
async def test_configurations_persist_across_a_reopen(
    app: Strongroom, store_settings: Settings, clock: ManualClock
) -> None:
    manager, rotation = SecretsManager(app), SecretsRotation(app)
    await manager.create_secret("gen-kept", token())
    callback_original = token()
    await manager.create_secret("cb-kept", callback_original)
    await rotation.register_secret(
        RotationConfig(
            name="gen-kept",
            generator="api_key",
            generator_options={"prefix": "svc"},
            rotation_days=30,
            grace_period_hours=6,
            description="kept",
        )
    )
    await rotation.register_secret(
        RotationConfig(name="cb-kept", rotation_callback=lambda _: "lost", rotation_days=30)
    )
    await app.close()

    clock.advance(days=30)
    async with await Strongroom.open(store_settings, clock=clock) as reopened:
        manager, rotation = SecretsManager(reopened), SecretsRotation(reopened)
        configs = {c["name"]: c for c in await rotation.list_rotation_configs()}
        assert set(configs) == {"gen-kept", "cb-kept"}
        kept = configs["gen-kept"]
        assert (kept["generator"], kept["rotation_days"]) == ("api_key", 30)
        assert (kept["grace_period_hours"], kept["description"]) == (6, "kept")
        assert kept["overdue"] is True

        result = await rotation.run_check()
        assert result["rotated"] == ["gen-kept"]  # a generator needs no code re-attached
        assert result["failed"] == ["cb-kept"]
        assert (await manager.get_secret("gen-kept")).startswith("svc_")
        status = await rotation.get_rotation_status("cb-kept")
        assert status["last_result"] == "FAILURE"
        assert "register_callback" in status["last_error"]
        assert await manager.get_secret("cb-kept") == callback_original

        await rotation.register_callback("cb-kept", lambda name: f"{name}-reattached")
        clock.advance(minutes=1)
        assert (await rotation.run_check())["rotated"] == ["cb-kept"]
        assert await manager.get_secret("cb-kept") == "cb-kept-reattached"
        assert (await rotation.get_rotation_status("cb-kept"))["last_error"] is None


async def test_a_configuration_registered_first_creates_its_secret(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    status = await rotation.register_secret(
        RotationConfig(
            name="born-rotated",
            generator="password",
            generator_options={"length": 40},
            secret_type=SecretType.DATABASE_CREDENTIAL,
        )
    )
    assert status["last_rotation"] is None
    assert status["overdue"] is True
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("born-rotated")

    assert (await rotation.run_check())["rotated"] == ["born-rotated"]
    value = await manager.get_secret("born-rotated")
    assert len(value) == 40
    props = await manager.get_secret_properties("born-rotated")
    assert props["secret_type"] == "database_credential"
    status = await rotation.get_rotation_status("born-rotated")
    assert status["last_rotation"] == clock()
    assert status["days_until_rotation"] == 90
    assert (await rotation.run_check())["rotated"] == []


async def test_sync_and_async_callbacks_receive_the_name(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    received: list[str] = []

    def sync_callback(name: str) -> str:
        received.append(name)
        return "from-sync"

    async def async_callback(name: str) -> dict[str, str]:
        await asyncio.sleep(0)
        received.append(name)
        return {"user": "app", "password": "from-async"}

    await manager.create_secret("Sync-Secret", token())
    await manager.create_secret("async-secret", {"user": "app", "password": token()})
    await rotation.register_secret(
        RotationConfig(name="Sync-Secret", rotation_callback=sync_callback)
    )
    await rotation.register_secret(
        RotationConfig(name="async-secret", rotation_callback=async_callback)
    )
    clock.advance(days=90)
    assert sorted((await rotation.run_check())["rotated"]) == ["Sync-Secret", "async-secret"]
    assert sorted(received) == ["Sync-Secret", "async-secret"]
    assert await manager.get_secret("sync-secret") == "from-sync"
    assert await manager.get_secret("async-secret") == {"user": "app", "password": "from-async"}


# -- generators --------------------------------------------------------------------------------


def test_password_generator_length_alphabet_and_uniqueness() -> None:
    values = [generate("password") for _ in range(50)]
    assert len(set(values)) == 50
    assert all(len(v) == 32 for v in values)
    alphabet = "abcdefghijKLMNOP"
    custom = [generate("password", {"length": 64, "alphabet": alphabet}) for _ in range(20)]
    assert len(set(custom)) == 20
    assert all(len(v) == 64 and set(v) <= set(alphabet) for v in custom)
    assert set("".join(custom)) == set(alphabet)  # every symbol gets used


def test_api_key_generator_has_its_prefix_and_256_bits() -> None:
    values = [generate("api_key", {"prefix": "live-svc"}) for _ in range(50)]
    assert len(set(values)) == 50
    for value in values:
        assert value.startswith("live-svc_")
        assert len(b64_bytes(value.removeprefix("live-svc_"), urlsafe=True)) == 32
    default = generate("api_key")
    assert default.startswith("sk_")
    assert len(b64_bytes(default.removeprefix("sk_"), urlsafe=True)) == 32


def test_jwt_secret_and_raw_key_generators_have_their_entropy() -> None:
    jwts = [generate("jwt_secret") for _ in range(50)]
    assert len(set(jwts)) == 50
    assert all(len(b64_bytes(v, urlsafe=True)) == 64 for v in jwts)
    assert all(set(v) <= set(string.ascii_letters + string.digits + "-_") for v in jwts)

    hexes = [generate("raw_key", {"encoding": "hex"}) for _ in range(50)]
    assert len(set(hexes)) == 50
    assert all(len(bytes.fromhex(v)) == 32 and v == v.lower() for v in hexes)
    assert len(bytes.fromhex(generate("raw_key", {"encoding": "hex", "bytes": 48}))) == 48

    b64s = [generate("raw_key", {"encoding": "base64"}) for _ in range(50)]
    assert len(set(b64s)) == 50
    assert all(len(b64_bytes(v, urlsafe=False)) == 32 for v in b64s)
    assert generate("raw_key") != generate("raw_key")


async def test_generator_options_are_stored_and_used_at_each_rotation(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    await rotation.register_secret(
        RotationConfig(
            name="hex-key",
            generator="raw_key",
            generator_options={"bytes": 16, "encoding": "hex"},
            rotation_days=1,
        )
    )
    seen = set()
    for _ in range(3):
        await rotation.run_check()
        value = await manager.get_secret("hex-key")
        assert len(bytes.fromhex(value)) == 16
        seen.add(value)
        clock.advance(days=1)
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("generator", "options"),
    [
        ("password", {"length": 8}),
        ("password", {"length": "32"}),
        ("password", {"alphabet": "abc"}),
        ("password", {"colour": "red"}),
        ("api_key", {"bits": 100}),
        ("api_key", {"prefix": "bad prefix!"}),
        ("jwt_secret", {"bytes": 8}),
        ("raw_key", {"encoding": "base32"}),
        ("raw_key", {"bytes": 4}),
        ("no-such-generator", {}),
    ],
)
async def test_bad_generator_options_are_refused_at_registration(
    rotation: SecretsRotation, generator: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        await rotation.register_secret(
            RotationConfig(name="bad-gen", generator=generator, generator_options=options)
        )
    with pytest.raises(RotationNotConfiguredError):
        await rotation.get_rotation_status("bad-gen")


# -- grace period ------------------------------------------------------------------------------


async def test_the_previous_version_stays_readable_for_the_grace_period(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    old_value = token()
    old = await manager.create_secret("graceful", old_value)
    await rotation.register_secret(
        RotationConfig(name="graceful", generator="password", grace_period_hours=12)
    )
    clock.advance(days=90)
    assert (await rotation.run_check())["rotated"] == ["graceful"]
    assert await manager.get_secret("graceful", version=old["version"]) == old_value

    clock.advance(hours=12, seconds=-1)
    assert (await rotation.run_check())["grace_ended"] == []
    assert await manager.get_secret("graceful", version=old["version"]) == old_value

    clock.advance(seconds=1)
    assert (await rotation.run_check())["grace_ended"] == ["graceful"]
    with pytest.raises(SecretDisabledError):
        await manager.get_secret("graceful", version=old["version"])
    assert (await manager.get_secret_properties("graceful", old["version"]))["enabled"] is False
    current = await manager.get_secret("graceful")
    assert current != old_value  # the current version is untouched
    assert (await rotation.run_check())["grace_ended"] == []


async def test_every_superseded_version_is_disabled_after_back_to_back_rotations(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    """Two rotations inside one grace period: both older versions end up disabled."""
    first = await manager.create_secret("twice", token())
    await rotation.register_secret(
        RotationConfig(name="twice", generator="password", grace_period_hours=24)
    )
    await rotation.rotate_secret("twice", force=True)
    second = (await manager.get_secret_properties("twice"))["version"]
    clock.advance(hours=1)
    await rotation.rotate_secret("twice", force=True)
    current = (await manager.get_secret_properties("twice"))["version"]

    clock.advance(hours=25)
    await rotation.run_check()
    for version in (first["version"], second):
        with pytest.raises(SecretDisabledError):
            await manager.get_secret("twice", version=version)
    assert await manager.get_secret("twice", version=current)


# -- compliance --------------------------------------------------------------------------------


async def test_compliance_report_uses_the_default_policy_of_each_type(
    manager: SecretsManager, rotation: SecretsRotation, clock: ManualClock
) -> None:
    kinds = {
        "c-api": SecretType.API_KEY,
        "c-db": SecretType.DATABASE_CREDENTIAL,
        "c-jwt": SecretType.JWT_SECRET,
        "c-cert": SecretType.CERTIFICATE,
        "c-generic": SecretType.GENERIC,
    }
    for name, kind in kinds.items():
        await manager.create_secret(name, token(), secret_type=kind)
    await manager.create_secret("c-managed", token(), secret_type=SecretType.JWT_SECRET)
    await rotation.register_secret(
        RotationConfig(name="c-managed", generator="jwt_secret", rotation_days=365)
    )

    report = await rotation.compliance_report()
    assert report["secrets"] == 6
    assert sorted(report["without_policy"]) == sorted(kinds)
    assert report["overdue"] == []
    entries = {e["name"]: e for e in report["entries"]}
    assert {n: entries[n]["rotation_days"] for n in kinds} == {
        "c-api": 90,
        "c-db": 60,
        "c-jwt": 30,
        "c-cert": 90,
        "c-generic": 90,
    }
    assert entries["c-managed"]["policy"] == "configured"

    def overdue_after(days: int, report: dict[str, Any]) -> None:
        expected = {n for n, kind in kinds.items() if days >= entries[n]["rotation_days"]}
        assert set(report["overdue"]) == expected, days

    clock.advance(days=30)
    overdue_after(30, await rotation.compliance_report())
    clock.advance(days=30)
    overdue_after(60, await rotation.compliance_report())
    clock.advance(days=29)
    overdue_after(89, await rotation.compliance_report())
    clock.advance(days=1)
    report = await rotation.compliance_report()
    overdue_after(90, report)
    assert "c-managed" not in report["overdue"]
    assert {e["name"]: e["days_overdue"] for e in report["entries"]}["c-jwt"] == 60

    overridden = await rotation.compliance_report({SecretType.GENERIC: 365})
    assert "c-generic" not in overridden["overdue"]
    assert "c-api" in overridden["overdue"]
    assert {e["name"]: e["rotation_days"] for e in overridden["entries"]}["c-generic"] == 365


class _Target:
    """A rotator that records what it was asked to do."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    async def apply(self, name: str, new: Any, old: Any | None) -> None:
        self.applied.append(name)

    async def verify(self, name: str, new: Any) -> None:
        return None

    async def rollback(self, name: str, old: Any | None) -> None:
        return None


@pytest.mark.stores("sqlite")
async def test_a_rotator_is_bound_to_its_own_name_unless_told_otherwise(app: Strongroom) -> None:
    from strongroom.core.errors import PermissionDeniedError, ValidationError

    rotation = SecretsRotation(app)
    own, team = _Target(), _Target()
    await rotation.register_rotator("billing-db", own)  # serves the secret billing-db only
    await rotation.register_rotator("team-target", team, secrets=["team-*", "shared-?"])
    await rotation.register_secret(
        RotationConfig(name="billing-db", generator="password", rotator="billing-db")
    )
    for name in ("team-a", "shared-1"):
        await rotation.register_secret(
            RotationConfig(name=name, generator="password", rotator="team-target")
        )
    for name, rotator in (("other-db", "billing-db"), ("shared-10", "team-target")):
        with pytest.raises(PermissionDeniedError):
            await rotation.register_secret(
                RotationConfig(name=name, generator="password", rotator=rotator)
            )
    with pytest.raises(ValidationError):
        await rotation.register_rotator("bad", own, secrets="team-*")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await rotation.register_rotator("bad", own, secrets=["no spaces"])
    assert (await rotation.rotate_secret("team-a", force=True))["rotated"]
    assert team.applied == ["team-a"]
    assert own.applied == []


def test_an_absence_is_believed_for_its_time_and_forgotten_by_a_configuration() -> None:
    steps = Ticks(100.0)
    absent = KnownAbsent(clock=steps)
    assert not absent.believed("fleet")
    absent.note("fleet", absent.epoch)
    assert absent.believed("fleet")
    steps.now += ABSENCE_SECONDS - 0.25
    assert absent.believed("fleet")
    steps.now += 0.25
    assert not absent.believed("fleet")  # its time is over: asked again
    absent.note("fleet", absent.epoch)
    absent.forget("fleet")
    assert not absent.believed("fleet")
    began = absent.epoch
    absent.forget("other")  # a configuration written while a lookup was under way ...
    absent.note("fleet", began)
    assert not absent.believed("fleet")  # ... leaves that lookup's answer unremembered


def test_the_absence_memory_starts_over_when_full() -> None:
    absent = KnownAbsent(clock=Ticks(100.0))
    for i in range(MAX_NAMES):
        absent.note(f"n-{i}", absent.epoch)
    assert absent.believed("n-0")
    assert absent.believed(f"n-{MAX_NAMES - 1}")
    absent.note("one-more", absent.epoch)
    assert absent.believed("one-more")
    assert not absent.believed("n-0")


async def test_a_schedule_made_in_another_process_is_restarted_here_within_its_time(
    tmp_path: Path,
) -> None:
    """Writes here stop looking for a schedule the secret was found without, for
    ABSENCE_SECONDS; one made through this process's store is restarted at once."""
    settings = make_settings("sqlite", tmp_path, master_key=new_master_key())
    here = await Strongroom.open(settings)
    there = await Strongroom.open(settings)
    try:
        steps = Ticks(100.0)
        here.rotation_store.absent = KnownAbsent(clock=steps)  # type: ignore[attr-defined]
        manager = SecretsManager(here)
        await manager.create_secret("far-token", token())
        await manager.update_secret("far-token", token())  # found without a schedule
        await SecretsRotation(there).register_secret(
            RotationConfig(name="far-token", generator="api_key")
        )
        registered = (await SecretsRotation(there).get_rotation_status("far-token"))[
            "last_rotation"
        ]
        await manager.update_secret("far-token", token())
        status = await SecretsRotation(there).get_rotation_status("far-token")
        assert status["last_rotation"] == registered  # still believed to have none
        steps.now += ABSENCE_SECONDS
        written = await manager.update_secret("far-token", token())
        status = await SecretsRotation(there).get_rotation_status("far-token")
        assert status["last_rotation"] == written["created_at"]  # found, and restarted

        await manager.create_secret("near-token", token())
        await manager.update_secret("near-token", token())  # found without a schedule
        await SecretsRotation(here).register_secret(
            RotationConfig(name="near-token", generator="api_key")
        )
        written = await manager.update_secret("near-token", token())
        status = await SecretsRotation(here).get_rotation_status("near-token")
        assert status["last_rotation"] == written["created_at"]  # this process's: at once
    finally:
        await there.close()
        await here.close()


async def test_a_lookup_during_a_configuration_write_is_not_remembered(app: Strongroom) -> None:
    """A schedule lookup that runs while this process writes a configuration may answer from
    before the write: its answer is dropped, and the schedule is found right after."""
    store = app.rotation_store
    write = store._write  # type: ignore[attr-defined]
    during: list[object] = []

    async def lookup_meanwhile(sql: str, values: dict[str, Any]) -> int:
        during.append(await store.restart_target("mid-token"))  # before the row is written
        return int(await write(sql, values))

    await SecretsManager(app).create_secret("mid-token", token())
    assert await store.restart_target("mid-token") is None  # found without one: remembered
    store._write = lookup_meanwhile  # type: ignore[attr-defined]
    await SecretsRotation(app).register_secret(
        RotationConfig(name="mid-token", generator="api_key")
    )
    assert during == [None]
    assert (await store.restart_target("mid-token"))["secret_name"] == "mid-token"
