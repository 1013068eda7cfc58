"""Every SecretsManager call writes exactly one audit event, and no event holds a value.

Each test runs on memory, SQLite and PostgreSQL. Events take their time from the app's
ManualClock, so timestamps are asserted exactly; the actor comes from ``acting_as``.
"""

from __future__ import annotations

import asyncio
import getpass
import io
import json
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from strongroom import (
    ManualClock,
    SecretAlreadyExistsError,
    SecretDisabledError,
    SecretExpiredError,
    SecretIsDeletedError,
    SecretNotFoundError,
    SecretsAudit,
    SecretsManager,
    SecretType,
    Settings,
    Strongroom,
    StrongroomError,
    ValidationError,
    acting_as,
)

ACTOR = "alice@dispatch"
IP = "203.0.113.7"
AGENT = "dispatch-console/2.1"


@pytest.fixture
def audit(app: Strongroom) -> SecretsAudit:
    return SecretsAudit(app)


def canary() -> str:
    return f"CANARY-{secrets.token_hex(16)}"


def contains(obj: Any, needle: str) -> bool:
    """Whether ``needle`` occurs in any key or value of a nested structure."""
    if isinstance(obj, dict):
        return any(contains(k, needle) or contains(v, needle) for k, v in obj.items())
    if isinstance(obj, list | tuple | set):
        return any(contains(item, needle) for item in obj)
    if isinstance(obj, bytes):
        return needle.encode() in obj
    return needle in str(obj)


async def only_new_event(audit: SecretsAudit, before: int) -> dict[str, Any]:
    """The one event written since the log held ``before`` events (fails if not exactly one)."""
    assert await audit.count_events() == before + 1
    trail = await audit.get_audit_trail(limit=2)
    assert trail[0]["id"] > (trail[1]["id"] if len(trail) > 1 else 0)
    return trail[0]


def assert_actor(event: dict[str, Any]) -> None:
    assert event["actor_id"] == ACTOR
    assert event["actor_ip"] == IP
    assert event["actor_user_agent"] == AGENT
    assert isinstance(event["duration_ms"], int)
    assert event["duration_ms"] >= 0


# -- one event per successful call -------------------------------------------------------------


@dataclass
class Case:
    """A call to make (after ``setup``), and what its one event must say."""

    call: Callable[[SecretsManager, dict[str, Any]], Awaitable[Any]]
    action: str
    resource: str | None
    details: Callable[[dict[str, Any], Any], dict[str, Any]]
    setup: Callable[[SecretsManager, dict[str, Any]], Awaitable[None]] | None = None
    state: dict[str, Any] = field(default_factory=dict)


async def _one_secret(manager: SecretsManager, state: dict[str, Any]) -> None:
    created = await manager.create_secret(
        "Radio-Key", canary(), SecretType.API_KEY, metadata={"team": "dispatch"}
    )
    state["v1"] = created["version"]


async def _two_versions(manager: SecretsManager, state: dict[str, Any]) -> None:
    await _one_secret(manager, state)
    state["v2"] = (await manager.update_secret("radio-key", canary()))["version"]


async def _deleted(manager: SecretsManager, state: dict[str, Any]) -> None:
    await _one_secret(manager, state)
    await manager.delete_secret("radio-key")


CASES: dict[str, Case] = {
    "create_secret": Case(
        call=lambda m, s: m.create_secret(
            "Radio-Key", canary(), SecretType.DATABASE_CREDENTIAL, metadata={"team": "dispatch"}
        ),
        action="CREATE",
        resource="radio-key",
        details=lambda _s, r: {
            "version": r["version"],
            "secret_type": "database_credential",
            "content_type": None,
            "tags": {"team": "dispatch"},
            "expires_at": None,
        },
    ),
    "get_secret": Case(
        setup=_two_versions,
        call=lambda m, s: m.get_secret("RADIO-KEY", version=s["v1"]),
        action="READ",
        resource="radio-key",
        details=lambda s, _r: {"version": s["v1"]},
    ),
    "get_secret_properties": Case(
        setup=_one_secret,
        call=lambda m, s: m.get_secret_properties("radio-key"),
        action="DESCRIBE",
        resource="radio-key",
        details=lambda s, _r: {"version": s["v1"]},
    ),
    "update_secret": Case(
        setup=_one_secret,
        call=lambda m, s: m.update_secret("radio-key", canary()),
        action="UPDATE",
        resource="radio-key",
        details=lambda _s, r: {
            "version": r["version"],
            "secret_type": "api_key",
            "content_type": None,
            "tags": {"team": "dispatch"},
            "expires_at": None,
        },
    ),
    "update_secret_properties": Case(
        setup=_one_secret,
        call=lambda m, s: m.update_secret_properties("radio-key", enabled=False),
        action="UPDATE",
        resource="radio-key",
        details=lambda s, _r: {"operation": "properties", "enabled": False, "version": s["v1"]},
    ),
    "get_secret_versions": Case(
        setup=_two_versions,
        call=lambda m, s: m.get_secret_versions("radio-key"),
        action="LIST",
        resource="radio-key",
        details=lambda _s, _r: {"operation": "versions", "count": 2},
    ),
    "list_secrets": Case(
        setup=_one_secret,
        call=lambda m, s: m.list_secrets(),
        action="LIST",
        resource=None,
        details=lambda _s, _r: {"count": 1},
    ),
    "delete_secret": Case(
        setup=_one_secret,
        call=lambda m, s: m.delete_secret("radio-key"),
        action="DELETE",
        resource="radio-key",
        details=lambda _s, _r: {"immediate": False, "recoverable_days": 90},
    ),
    "delete_secret_immediate": Case(
        setup=_one_secret,
        call=lambda m, s: m.delete_secret("radio-key", immediate=True),
        action="DELETE",
        resource="radio-key",
        details=lambda _s, _r: {"immediate": True},
    ),
    "list_deleted_secrets": Case(
        setup=_deleted,
        call=lambda m, s: m.list_deleted_secrets(),
        action="LIST",
        resource=None,
        details=lambda _s, _r: {"operation": "deleted", "count": 1},
    ),
    "recover_deleted_secret": Case(
        setup=_deleted,
        call=lambda m, s: m.recover_deleted_secret("radio-key"),
        action="RECOVER",
        resource="radio-key",
        details=lambda s, _r: {"version": s["v1"]},
    ),
    "purge_deleted_secret": Case(
        setup=_deleted,
        call=lambda m, s: m.purge_deleted_secret("radio-key"),
        action="PURGE",
        resource="radio-key",
        details=lambda _s, _r: {},
    ),
    "rotate_master_key": Case(
        setup=_one_secret,
        call=lambda m, s: m.rotate_master_key(),
        action="KEY_ROTATE",
        resource=None,
        details=lambda _s, r: {"key_version": r["key_version"], "rewrapped": r["rewrapped"]},
    ),
}


@pytest.mark.parametrize("operation", list(CASES))
async def test_each_call_records_exactly_one_event(
    operation: str,
    manager: SecretsManager,
    audit: SecretsAudit,
    clock: ManualClock,
    store_settings: Settings,
) -> None:
    if operation == "rotate_master_key" and store_settings.backend.value == "azure":
        pytest.skip("Key Vault keeps its own keys: no keyring to rotate on the azure profile")
    case = CASES[operation]
    state: dict[str, Any] = {}
    if case.setup is not None:
        await case.setup(manager, state)
    when = clock.advance(minutes=7)
    before = await audit.count_events()

    with acting_as(ACTOR, ip=IP, user_agent=AGENT):
        result = await case.call(manager, state)

    event = await only_new_event(audit, before)
    assert event["action"] == case.action
    assert event["resource_name"] == case.resource
    assert event["result"] == "SUCCESS"
    assert event["timestamp"] == when
    assert event["error_code"] is None
    assert event["error_message"] is None
    assert_actor(event)
    assert event["details"] == case.details(state, result)


async def test_a_purged_secret_is_gone_after_its_one_delete_event(
    manager: SecretsManager, audit: SecretsAudit
) -> None:
    await manager.create_secret("radio-key", canary())
    before = await audit.count_events()
    await manager.delete_secret("radio-key", immediate=True)
    assert await audit.count_events() == before + 1
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("radio-key")


# -- one FAILURE event per refused call --------------------------------------------------------


async def _expire(manager: SecretsManager, clock: ManualClock, stored: str) -> None:
    await manager.create_secret("radio-key", stored, expires_in_days=1)
    clock.advance(days=2)


async def _disable(manager: SecretsManager, _clock: ManualClock, stored: str) -> None:
    await manager.create_secret("radio-key", stored)
    await manager.update_secret_properties("radio-key", enabled=False)


async def _soft_delete(manager: SecretsManager, _clock: ManualClock, stored: str) -> None:
    await manager.create_secret("radio-key", stored)
    await manager.delete_secret("radio-key")


async def _existing(manager: SecretsManager, _clock: ManualClock, stored: str) -> None:
    await manager.create_secret("radio-key", stored)


FAILURES: dict[str, tuple[Any, ...]] = {
    # name: (setup, call given a canary value, error class, action, resource, error code)
    "missing_name": (
        None,
        lambda m, v: m.get_secret("No-Such-Secret"),
        SecretNotFoundError,
        "READ",
        "no-such-secret",
        "not_found",
    ),
    "update_missing_name": (
        None,
        lambda m, v: m.update_secret("no-such-secret", v),
        SecretNotFoundError,
        "UPDATE",
        "no-such-secret",
        "not_found",
    ),
    "bad_name": (
        None,
        lambda m, v: m.create_secret("bad name!", v),
        ValidationError,
        "CREATE",
        "bad name!",
        "bad_parameter",
    ),
    "oversize_value": (
        None,
        lambda m, v: m.create_secret("radio-key", v + "x" * 25_001),
        ValidationError,
        "CREATE",
        "radio-key",
        "bad_parameter",
    ),
    "disabled_read": (
        _disable,
        lambda m, v: m.get_secret("radio-key"),
        SecretDisabledError,
        "READ",
        "radio-key",
        "disabled",
    ),
    "deleted_read": (
        _soft_delete,
        lambda m, v: m.get_secret("radio-key"),
        SecretIsDeletedError,
        "READ",
        "radio-key",
        "deleted",
    ),
    "expired_read": (
        _expire,
        lambda m, v: m.get_secret("radio-key"),
        SecretExpiredError,
        "READ",
        "radio-key",
        "expired",
    ),
    "create_existing": (
        _existing,
        lambda m, v: m.create_secret("radio-key", v),
        SecretAlreadyExistsError,
        "CREATE",
        "radio-key",
        "already_exists",
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_each_refused_call_records_exactly_one_failure(
    failure: str, manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    setup, call, error, action, resource, code = FAILURES[failure]
    stored, value = canary(), canary()
    if setup is not None:
        await setup(manager, clock, stored)
    when = clock.advance(seconds=30)
    before = await audit.count_events()

    with acting_as(ACTOR, ip=IP, user_agent=AGENT), pytest.raises(error) as raised:
        await call(manager, value)

    event = await only_new_event(audit, before)
    assert event["action"] == action
    assert event["resource_name"] == resource
    assert event["result"] == "FAILURE"
    assert event["timestamp"] == when
    assert event["error_code"] == code == raised.value.code
    assert event["error_message"]
    assert event["error_message"] == str(raised.value)
    assert_actor(event)
    assert not contains(event, value)
    assert not contains(event, stored)
    assert not contains(event, "x" * 32)


async def test_a_failed_read_does_not_leak_the_stored_value(
    manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    stored = canary()
    await manager.create_secret("radio-key", stored, expires_in_days=1)
    await manager.update_secret_properties("radio-key", enabled=False)
    clock.advance(days=2)
    before = await audit.count_events()
    with pytest.raises(SecretDisabledError):
        await manager.get_secret("radio-key")
    event = await only_new_event(audit, before)
    assert event["result"] == "FAILURE"
    assert not contains(event, stored)


async def test_the_default_actor_is_the_os_user_at_this_host(
    manager: SecretsManager, audit: SecretsAudit
) -> None:
    before = await audit.count_events()
    await manager.create_secret("radio-key", canary())
    event = await only_new_event(audit, before)
    assert event["actor_id"] == f"{getpass.getuser()}@{socket.gethostname()}"
    assert event["actor_ip"] is None


async def test_concurrent_callers_each_record_their_own_actor(
    manager: SecretsManager, audit: SecretsAudit
) -> None:
    await manager.create_secret("radio-key", canary())
    before = await audit.count_events()

    async def read_as(n: int) -> None:
        with acting_as(f"svc-{n}", ip=f"10.0.0.{n}", user_agent=f"agent/{n}"):
            await manager.get_secret("radio-key")

    await asyncio.gather(*(read_as(n) for n in range(1, 21)))

    assert await audit.count_events() == before + 20
    reads = await audit.get_audit_trail("radio-key", "READ", limit=50)
    seen = {(e["actor_id"], e["actor_ip"], e["actor_user_agent"]) for e in reads}
    assert seen == {(f"svc-{n}", f"10.0.0.{n}", f"agent/{n}") for n in range(1, 21)}


# -- no value anywhere in the log -------------------------------------------------------------


async def test_no_value_reaches_any_audit_row_or_export(
    manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    values = [canary() for _ in range(8)]
    tag = f"tag-{secrets.token_hex(8)}"
    owner = f"owner-{secrets.token_hex(8)}"
    with acting_as(ACTOR, ip=IP, user_agent=AGENT):
        first = await manager.create_secret(
            "Radio-Key", values[0], metadata={"owner": owner, "ticket": tag}
        )
        clock.advance(minutes=1)
        assert await manager.get_secret("radio-key") == values[0]
        second = await manager.update_secret("radio-key", values[1])
        assert await manager.get_secret("radio-key", version=first["version"]) == values[0]
        await manager.get_secret_properties("radio-key", version=second["version"])
        await manager.update_secret_properties("radio-key", metadata={"owner": owner})
        await manager.get_secret_versions("radio-key")
        await manager.create_secret("json-config", {"password": values[2], "port": 5432})
        assert (await manager.get_secret("json-config"))["password"] == values[2]
        await manager.update_secret("json-config", [values[3]])
        await manager.list_secrets()
        for attempt in (
            manager.create_secret("radio-key", values[4]),  # exists
            manager.create_secret("bad name", values[5]),  # bad name
            manager.create_secret("big-one", values[6] + "y" * 25_001),  # too big
            manager.update_secret("missing", values[7]),  # not found
        ):
            with pytest.raises(StrongroomError):
                await attempt
        clock.advance(minutes=1)
        await manager.delete_secret("radio-key")
        await manager.list_deleted_secrets()
        with pytest.raises(SecretIsDeletedError):
            await manager.get_secret("radio-key")
        await manager.recover_deleted_secret("radio-key")
        if manager_profile(manager) != "azure":  # Key Vault keeps its own keys
            await manager.rotate_master_key()
        assert await manager.get_secret("radio-key") == values[1]
        await manager.delete_secret("json-config")
        await manager.purge_deleted_secret("json-config")
        await manager.delete_secret("radio-key", immediate=True)

    trail = await audit.get_audit_trail(limit=10_000)
    calls = 24 if manager_profile(manager) != "azure" else 23  # no key rotation on azure
    assert len(trail) == await audit.count_events() == calls  # one per call above
    buffer = io.StringIO()
    exported = await audit.export(buffer)
    lines = buffer.getvalue().splitlines()
    assert exported == len(lines) == len(trail)

    for event in trail:
        for key, field_value in event.items():
            for value in values:
                assert not contains(field_value, value), (key, event["action"])
    for line in lines:
        record = json.loads(line)
        for value in values:
            assert value not in line
            assert not contains(record, value)

    # The search does find what the log is meant to hold: tags, names, actors.
    assert any(contains(e["details"], tag) for e in trail)
    assert any(contains(e["details"], owner) for e in trail)
    assert any(tag in line for line in lines)
    assert any(owner in line for line in lines)
    assert sum("json-config" in line for line in lines) >= 5


async def test_an_exported_line_matches_its_trail_event(
    manager: SecretsManager, audit: SecretsAudit, clock: ManualClock
) -> None:
    with acting_as(ACTOR, ip=IP, user_agent=AGENT):
        created = await manager.create_secret("radio-key", canary(), metadata={"a": "b"})
        clock.advance(hours=1, minutes=1)
        await manager.get_secret("radio-key")
    buffer = io.StringIO()
    assert await audit.export(buffer) == 2
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert (first["action"], second["action"]) == ("CREATE", "READ")
    assert first["details"]["version"] == created["version"]
    assert first["details"]["tags"] == {"a": "b"}
    assert second["timestamp"] == clock().isoformat()
    assert second["actor_id"] == ACTOR
    assert second["actor_ip"] == IP


def manager_profile(manager: SecretsManager) -> str:
    app = manager._app
    assert app is not None
    return app.profile
