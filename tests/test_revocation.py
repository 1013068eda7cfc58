"""Emergency revocation end to end on every store (memory, SQLite, PostgreSQL).

Break-glass revokes within the call; pending requests block nothing; separation of duties,
closed requests and per-severity approvals are enforced with typed errors; revoke-and-rotate,
soft delete and a failure midway leave the secret and the request in the states they promise;
risk rises with severity and readers; every step and every revoked read is audited.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from strongroom import (
    ConfigurationError,
    EmergencyRevoke,
    RevocationNotFoundError,
    RevocationRequest,
    RevocationStateError,
    RotationConfig,
    SecretIsDeletedError,
    SecretNotFoundError,
    SecretRevokedError,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    SecretType,
    SeparationOfDutiesError,
    Settings,
    Strongroom,
    ValidationError,
    acting_as,
)
from strongroom.core.clock import ManualClock


def canary() -> str:
    return f"REVOKE-CANARY-{secrets.token_hex(8)}"


def request(name: str, **options: Any) -> RevocationRequest:
    options = {
        "reason": "key_compromise",
        "requested_by": "alice",
        "severity": "high",
        "description": "found in a public paste",
        **options,
    }
    return RevocationRequest(secret_name=name, **options)


@pytest.fixture
def revoke(app: Strongroom) -> EmergencyRevoke:
    return EmergencyRevoke(app)


async def two_versions(manager: SecretsManager, name: str) -> tuple[str, str]:
    first = await manager.create_secret(name, canary(), SecretType.API_KEY)
    second = await manager.update_secret(name, canary())
    return first["version"], second["version"]


async def assert_unreadable(manager: SecretsManager, name: str, *versions: str) -> None:
    with pytest.raises(SecretRevokedError):
        await manager.get_secret(name)
    for version in versions:
        with pytest.raises(SecretRevokedError):
            await manager.get_secret(name, version)


async def revoke_events(app: Strongroom, name: str) -> list[dict[str, Any]]:
    """REVOKE events of ``name``, oldest first."""
    return list(reversed(await SecretsAudit(app).get_audit_trail(name, "REVOKE")))


# -- break-glass and approval ---------------------------------------------------------------


async def test_immediate_revocation_blocks_every_version_within_the_call(
    app: Strongroom, manager: SecretsManager, revoke: EmergencyRevoke, clock: ManualClock
) -> None:
    v1, v2 = await two_versions(manager, "Fleet-DB")
    status = await revoke.request_revocation(request("fleet-db", immediate=True))
    # No await between the call returning and the reads: the revocation is already in force.
    await assert_unreadable(manager, "fleet-db", v1, v2)
    with pytest.raises(SecretRevokedError):
        await manager.get_secret_bundle("FLEET-DB", v1)

    assert status["status"] == "COMPLETED"
    assert status["secret_name"] == "Fleet-DB"
    assert status["immediate"] is True
    assert status["break_glass"] is True
    assert status["versions_revoked"] == 2
    assert status["revoked_at"] == clock()
    assert status["approvals"] == []
    assert status["error"] is None
    versions = await manager.get_secret_versions("fleet-db")
    assert {v["version"]: v["revoked"] for v in versions} == {v1: True, v2: True}
    assert all(not v["enabled"] for v in versions)
    # Re-enabling a revoked version does not make it readable: revocation is for good.
    await manager.update_secret_properties("fleet-db", v2, enabled=True)
    await assert_unreadable(manager, "fleet-db", v2)
    assert await revoke.list_pending_revocations() == []


async def test_a_pending_request_blocks_nothing_until_it_is_approved(
    manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    v1, v2 = await two_versions(manager, "billing-api")
    value = await manager.get_secret("billing-api")
    pending = await revoke.request_revocation(request("billing-api", severity="medium"))
    assert pending["status"] == "PENDING"
    assert pending["required_approvals"] == 1
    assert pending["revoked_at"] is None
    assert await manager.get_secret("billing-api") == value
    assert await manager.get_secret("billing-api", v1) != value
    assert [p["revocation_id"] for p in await revoke.list_pending_revocations()] == [
        pending["revocation_id"]
    ]

    done = await revoke.approve_revocation(pending["revocation_id"], "bob")
    assert done["status"] == "COMPLETED"
    assert done["approved_by"] == "bob"
    assert [a["by"] for a in done["approvals"]] == ["bob"]
    assert done["versions_revoked"] == 2
    assert done["break_glass"] is False
    await assert_unreadable(manager, "billing-api", v1, v2)
    assert await revoke.list_pending_revocations() == []


async def test_self_approval_and_double_approval_are_refused(
    app: Strongroom, manager: SecretsManager
) -> None:
    revoke = EmergencyRevoke(app, approvals_required={"critical": 2})
    await manager.create_secret("payments-key", canary())
    rid = (await revoke.request_revocation(request("payments-key", severity="critical")))[
        "revocation_id"
    ]
    with pytest.raises(SeparationOfDutiesError):
        await revoke.approve_revocation(rid, "alice")
    with pytest.raises(SeparationOfDutiesError):
        await revoke.approve_revocation(rid, "ALICE")  # the same person, whatever the case
    await revoke.approve_revocation(rid, "bob")
    with pytest.raises(SeparationOfDutiesError):
        await revoke.approve_revocation(rid, "Bob")
    status = await revoke.get_revocation_status(rid)
    assert status["status"] == "PENDING"
    assert [a["by"] for a in status["approvals"]] == ["bob"]
    assert await manager.get_secret("payments-key")
    with pytest.raises(ValidationError):
        await revoke.approve_revocation(rid, "  ")


async def test_required_approvals_follow_the_severity(
    app: Strongroom, manager: SecretsManager
) -> None:
    revoke = EmergencyRevoke(app, approvals_required={"critical": 2})
    v1, v2 = await two_versions(manager, "root-ca")
    high = await revoke.request_revocation(request("root-ca", severity="high"))
    assert high["required_approvals"] == 1
    await revoke.cancel_revocation(high["revocation_id"], "alice")

    critical = await revoke.request_revocation(request("root-ca", severity="critical"))
    rid = critical["revocation_id"]
    assert critical["required_approvals"] == 2
    first = await revoke.approve_revocation(rid, "bob")
    assert first["status"] == "PENDING"
    assert first["approved_by"] is None
    assert await manager.get_secret("root-ca", v2)  # one approval of two: nothing revoked yet
    assert [p["revocation_id"] for p in await revoke.list_pending_revocations()] == [rid]

    second = await revoke.approve_revocation(rid, "carol")
    assert second["status"] == "COMPLETED"
    assert [a["by"] for a in second["approvals"]] == ["bob", "carol"]
    assert second["approved_by"] == "bob, carol"
    await assert_unreadable(manager, "root-ca", v1, v2)


@pytest.mark.stores("sqlite")
async def test_required_approvals_come_from_configuration(store_settings: Settings) -> None:
    configured = store_settings.model_copy(update={"revocation_approvals": "critical=3, high=2"})
    async with await Strongroom.open(configured) as app:
        await SecretsManager(app).create_secret("ops-token", canary())
        revoke = EmergencyRevoke(app)
        critical = await revoke.request_revocation(request("ops-token", severity="critical"))
        high = await revoke.request_revocation(request("ops-token", severity="high"))
        low = await revoke.request_revocation(request("ops-token", severity="low"))
        assert (critical["required_approvals"], high["required_approvals"]) == (3, 2)
        assert low["required_approvals"] == 1
    broken = store_settings.model_copy(update={"revocation_approvals": "urgent=2"})
    async with await Strongroom.open(broken) as app:
        await SecretsManager(app).create_secret("ops-token-2", canary())
        with pytest.raises(ConfigurationError, match="critical=2"):
            await EmergencyRevoke(app).request_revocation(request("ops-token-2"))


async def test_closed_requests_refuse_every_change(
    manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    await manager.create_secret("a-key", canary())
    await manager.create_secret("b-key", canary())
    await manager.create_secret("c-key", canary())
    completed = await revoke.request_revocation(request("a-key", immediate=True))
    rejected = await revoke.request_revocation(request("b-key"))
    await revoke.reject_revocation(rejected["revocation_id"], "bob", "false alarm")
    cancelled = await revoke.request_revocation(request("c-key"))
    await revoke.cancel_revocation(cancelled["revocation_id"], "alice")

    for closed in (completed, rejected, cancelled):
        rid = closed["revocation_id"]
        before = await revoke.get_revocation_status(rid)
        with pytest.raises(RevocationStateError):
            await revoke.approve_revocation(rid, "carol")
        with pytest.raises(RevocationStateError):
            await revoke.reject_revocation(rid, "carol")
        with pytest.raises(RevocationStateError):
            await revoke.cancel_revocation(rid, "carol")
        assert await revoke.get_revocation_status(rid) == before
    with pytest.raises(RevocationNotFoundError):
        await revoke.get_revocation_status(10**9)
    with pytest.raises(RevocationNotFoundError):
        await revoke.approve_revocation(10**9, "bob")


async def test_rejected_and_cancelled_requests_change_nothing(
    app: Strongroom, manager: SecretsManager, revoke: EmergencyRevoke, clock: ManualClock
) -> None:
    v1, v2 = await two_versions(manager, "orders-db")
    value = await manager.get_secret("orders-db")
    first = await revoke.request_revocation(request("orders-db"))
    rejected = await revoke.reject_revocation(first["revocation_id"], "bob", "not leaked after all")
    assert rejected["status"] == "REJECTED"
    assert rejected["closed_by"] == "bob"
    assert rejected["closed_at"] == clock()
    assert rejected["revoked_at"] is None
    assert rejected["versions_revoked"] is None

    second = await revoke.request_revocation(request("orders-db", severity="critical"))
    cancelled = await revoke.cancel_revocation(second["revocation_id"], "alice")
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["closed_by"] == "alice"

    assert await manager.get_secret("orders-db") == value
    assert await manager.get_secret("orders-db", v1)
    versions = await manager.get_secret_versions("orders-db")
    assert not any(v["revoked"] for v in versions)
    assert all(v["enabled"] for v in versions)
    assert v2 in {v["version"] for v in versions}
    assert await revoke.list_pending_revocations() == []


async def test_two_approvers_racing_approve_once(
    manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    await manager.create_secret("race-key", canary())
    rid = (await revoke.request_revocation(request("race-key")))["revocation_id"]
    outcomes = await asyncio.gather(
        revoke.approve_revocation(rid, "bob"),
        revoke.approve_revocation(rid, "carol"),
        return_exceptions=True,
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1, outcomes
    assert isinstance(errors[0], RevocationStateError)
    status = await revoke.get_revocation_status(rid)
    assert status["status"] == "COMPLETED"
    assert len(status["approvals"]) == 1
    assert status["versions_revoked"] == 1


# -- revoke and rotate, soft delete, failure midway -------------------------------------------


async def test_revoke_and_rotate_leaves_only_the_new_value_readable(
    app: Strongroom, manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    old = canary()
    created = await manager.create_secret("partner-api", old, SecretType.API_KEY)
    await SecretsRotation(app).register_secret(
        RotationConfig(name="partner-api", generator="api_key", rotation_days=30)
    )
    status = await revoke.request_revocation(
        request("partner-api", immediate=True, rotate_after=True)
    )
    assert status["status"] == "COMPLETED"
    assert status["versions_revoked"] == 1
    new_version = status["new_version"]
    assert new_version
    assert new_version != created["version"]

    with pytest.raises(SecretRevokedError):
        await manager.get_secret("partner-api", created["version"])
    current = await manager.get_secret("partner-api")
    assert current != old
    assert current.startswith("sk_")
    assert await manager.get_secret("partner-api", new_version) == current
    props = await manager.get_secret_properties("partner-api")
    assert props["version"] == new_version
    assert props["revoked"] is False


async def test_rotate_after_needs_a_rotation_configuration(
    manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    await manager.create_secret("unmanaged", canary())
    with pytest.raises(ValidationError):
        await revoke.request_revocation(request("unmanaged", immediate=True, rotate_after=True))
    assert await manager.get_secret("unmanaged")
    assert await revoke.get_revocation_history("unmanaged") == []


async def test_a_failure_midway_leaves_the_request_failed_and_the_versions_revoked(
    app: Strongroom, manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    v1, v2 = await two_versions(manager, "ledger-db")

    def broken(name: str) -> str:
        raise RuntimeError(f"cannot reach the target; old value {canary()}")

    await SecretsRotation(app).register_secret(
        RotationConfig(name="ledger-db", rotation_callback=broken)
    )
    status = await revoke.request_revocation(
        request("ledger-db", immediate=True, rotate_after=True, severity="critical")
    )
    assert status["status"] == "FAILED"
    assert "rotation callback raised RuntimeError" in status["error"]
    assert "CANARY" not in status["error"]
    assert status["versions_revoked"] == 2
    assert status["new_version"] is None
    assert status["closed_at"] is not None
    await assert_unreadable(manager, "ledger-db", v1, v2)
    assert len(await manager.get_secret_versions("ledger-db")) == 2  # no new version

    (history,) = await revoke.get_revocation_history("ledger-db")
    assert history["status"] == "FAILED"
    assert history["error"] == status["error"]
    assert await revoke.list_pending_revocations() == []
    # Break-glass that failed midway is still a use someone must answer for.
    (review,) = await revoke.list_break_glass_reviews()
    assert (review["revocation_id"], review["status"]) == (status["revocation_id"], "OPEN")
    with pytest.raises(RevocationStateError):
        await revoke.approve_revocation(status["revocation_id"], "bob")
    execute = [e for e in await revoke_events(app, "ledger-db") if e["details"].get("operation")]
    failed = [e for e in execute if e["details"]["operation"] == "execute"]
    assert [e["result"] for e in failed] == ["FAILURE"]
    assert failed[0]["error_code"] == "revocation_state"


async def test_soft_delete_leaves_the_secret_deleted_and_revoked(
    manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    v1, v2 = await two_versions(manager, "old-service")
    status = await revoke.request_revocation(
        request("old-service", immediate=True, soft_delete=True)
    )
    assert status["status"] == "COMPLETED"
    with pytest.raises(SecretIsDeletedError):
        await manager.get_secret("old-service")
    assert "old-service" in {d["name"] for d in await manager.list_deleted_secrets()}
    assert "old-service" not in {s["name"] for s in await manager.list_secrets()}
    (history,) = await revoke.get_revocation_history("old-service")
    assert history["status"] == "COMPLETED"
    # Recovering it brings the name back, not the values: they stay revoked.
    await manager.recover_deleted_secret("old-service")
    await assert_unreadable(manager, "old-service", v1, v2)


async def test_history_finds_a_soft_deleted_secret_by_any_case(
    manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    """Names are case-insensitive everywhere; history must not become case-sensitive once the
    revocation has soft-deleted the secret."""
    await manager.create_secret("Old-Service", canary())
    status = await revoke.request_revocation(
        request("old-service", immediate=True, soft_delete=True)
    )
    for spelling in ("Old-Service", "old-service", "OLD-SERVICE"):
        assert [h["revocation_id"] for h in await revoke.get_revocation_history(spelling)] == [
            status["revocation_id"]
        ], spelling


# -- queries and risk --------------------------------------------------------------------------


async def test_status_history_and_pending_reflect_each_state(
    manager: SecretsManager, revoke: EmergencyRevoke, clock: ManualClock
) -> None:
    await manager.create_secret("Search-Key", canary())
    await manager.create_secret("other-key", canary())
    ids = []
    for _ in range(3):
        ids.append((await revoke.request_revocation(request("Search-Key")))["revocation_id"])
        clock.advance(minutes=1)
    other = (await revoke.request_revocation(request("other-key")))["revocation_id"]
    assert [p["revocation_id"] for p in await revoke.list_pending_revocations()] == [*ids, other]

    await revoke.reject_revocation(ids[0], "bob", "duplicate")
    await revoke.cancel_revocation(ids[1], "alice")
    await revoke.approve_revocation(ids[2], "bob")
    assert [p["revocation_id"] for p in await revoke.list_pending_revocations()] == [other]

    history = await revoke.get_revocation_history("search-key")  # any case finds it
    assert [(h["revocation_id"], h["status"]) for h in history] == [
        (ids[2], "COMPLETED"),
        (ids[1], "CANCELLED"),
        (ids[0], "REJECTED"),
    ]
    assert history[2]["description"] == "found in a public paste"
    assert history[2]["reason"] == "key_compromise"
    assert history[2]["severity"] == "high"
    assert history[2]["requested_by"] == "alice"
    assert [h["revocation_id"] for h in await revoke.get_revocation_history(limit=2)] == [
        other,
        ids[2],
    ]
    with pytest.raises(SecretNotFoundError, match="no revocation of it is on record"):
        await revoke.get_revocation_history("no-such-secret")  # nobody ever knew it
    with pytest.raises(ValidationError):
        await revoke.get_revocation_history(limit=0)


async def test_requests_are_validated_before_anything_is_recorded(
    manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    await manager.create_secret("valid-key", canary())
    bad = [
        request("valid-key", severity="apocalyptic"),
        request("valid-key", reason="boredom"),
        request("valid-key", requested_by=""),
        request("valid-key", notify_recipients=["sec@example.com\r\nBcc: x@example.com"]),
        request("valid-key", immediate="yes"),
        request("bad name!"),
    ]
    for item in bad:
        with pytest.raises(ValidationError):
            await revoke.request_revocation(item)
    with pytest.raises(SecretNotFoundError):
        await revoke.request_revocation(request("missing-key", immediate=True))
    assert await revoke.get_revocation_history() == []
    assert await manager.get_secret("valid-key")


@pytest.mark.local_identity
async def test_risk_rises_with_severity_and_with_recent_readers(
    manager: SecretsManager, revoke: EmergencyRevoke, clock: ManualClock
) -> None:
    await manager.create_secret("quiet-key", canary(), SecretType.DATABASE_CREDENTIAL)
    await manager.create_secret("busy-key", canary(), SecretType.DATABASE_CREDENTIAL)
    for actor in ("svc-a", "svc-b", "svc-c", "svc-d"):
        with acting_as(actor):
            await manager.get_secret("busy-key")
    clock.advance(minutes=5)

    risks = {}
    for name, severity in (
        ("quiet-key", "low"),
        ("quiet-key", "medium"),
        ("quiet-key", "high"),
        ("quiet-key", "critical"),
        ("busy-key", "critical"),
    ):
        status = await revoke.request_revocation(request(name, severity=severity))
        risks[name, severity] = status["risk"]
    scores = [r["score"] for r in risks.values()]
    assert scores == sorted(scores)
    assert len(set(scores)) == len(scores)  # strictly rising
    for risk in risks.values():
        assert 0 <= risk["score"] <= 100
        assert risk["level"] in {"low", "medium", "high", "critical"}
    levels = ["low", "medium", "high", "critical"]
    assert levels.index(risks["quiet-key", "low"]["level"]) < levels.index(
        risks["quiet-key", "critical"]["level"]
    )
    quiet, busy = risks["quiet-key", "critical"], risks["busy-key", "critical"]
    assert (quiet["recent_readers"], quiet["reads_last_hour"]) == (0, 0)
    assert (busy["recent_readers"], busy["reads_last_hour"]) == (4, 4)
    assert busy["factors"]["readers"] > quiet["factors"]["readers"]
    assert busy["factors"]["in_use"] > 0 == quiet["factors"]["in_use"]
    assert busy["level"] == "critical"

    # Reads older than an hour count as readers but no longer as "in use".
    clock.advance(hours=2)
    later = await revoke.request_revocation(request("busy-key", severity="critical"))
    assert later["risk"]["recent_readers"] == 4
    assert later["risk"]["reads_last_hour"] == 0
    assert later["risk"]["score"] < busy["score"]


# -- audit -------------------------------------------------------------------------------------


async def test_every_step_is_in_the_audit_trail(app: Strongroom, manager: SecretsManager) -> None:
    revoke = EmergencyRevoke(app, approvals_required={"critical": 2})
    await manager.create_secret("audited-key", canary())
    rejected = await revoke.request_revocation(request("audited-key"))
    await revoke.reject_revocation(rejected["revocation_id"], "bob", "false alarm")
    cancelled = await revoke.request_revocation(request("audited-key"))
    await revoke.cancel_revocation(cancelled["revocation_id"], "alice")
    approved = await revoke.request_revocation(request("audited-key", severity="critical"))
    rid = approved["revocation_id"]
    with pytest.raises(SeparationOfDutiesError):
        await revoke.approve_revocation(rid, "alice")
    await revoke.approve_revocation(rid, "bob")
    await revoke.approve_revocation(rid, "carol")

    events = await revoke_events(app, "audited-key")
    steps = [(e["details"]["operation"], e["result"]) for e in events]
    assert steps == [
        ("request", "SUCCESS"),
        ("reject", "SUCCESS"),
        ("request", "SUCCESS"),
        ("cancel", "SUCCESS"),
        ("request", "SUCCESS"),
        ("approve", "FAILURE"),
        ("approve", "SUCCESS"),
        ("approve", "SUCCESS"),
        ("execute", "SUCCESS"),
    ]
    assert all(e["action"] == "REVOKE" and e["resource_name"] == "audited-key" for e in events)
    requests = [e for e in events if e["details"]["operation"] == "request"]
    assert [e["details"]["revocation_id"] for e in requests] == [
        rejected["revocation_id"],
        cancelled["revocation_id"],
        rid,
    ]
    for e in requests:
        assert e["details"]["requested_by"] == "alice"
        assert e["details"]["reason"] == "key_compromise"
        assert e["details"]["immediate"] is False
    assert requests[2]["details"]["severity"] == "critical"
    denied, *approvals, execute = events[5:]
    assert denied["details"]["approved_by"] == "alice"
    assert denied["error_code"] == "denied"
    assert [e["details"]["approved_by"] for e in approvals] == ["bob", "carol"]
    assert all(e["details"]["revocation_id"] == rid for e in [denied, *approvals, execute])
    assert execute["details"]["count"] == 1
    assert execute["details"]["severity"] == "critical"
    assert events[1]["details"]["reason"] == "false alarm"
    assert "CANARY" not in repr(events)


async def test_the_audit_trail_names_who_rejected_or_cancelled(
    app: Strongroom, manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    """The approver of an approval is on record; the person who rejected or cancelled a request
    must be too (it is the same decision, the other way), not only in the request's row."""
    await manager.create_secret("closer-key", canary())
    first = await revoke.request_revocation(request("closer-key"))
    await revoke.reject_revocation(first["revocation_id"], "rejecting-bob", "false alarm")
    second = await revoke.request_revocation(request("closer-key"))
    await revoke.cancel_revocation(second["revocation_id"], "cancelling-carol")
    events = await revoke_events(app, "closer-key")
    reject = next(e for e in events if e["details"]["operation"] == "reject")
    cancel = next(e for e in events if e["details"]["operation"] == "cancel")
    assert "rejecting-bob" in repr(reject["details"]) or reject["actor_id"] == "rejecting-bob"
    assert "cancelling-carol" in repr(cancel["details"]) or cancel["actor_id"] == (
        "cancelling-carol"
    )


@pytest.mark.local_identity
async def test_a_revoked_read_is_audited_and_detected_as_critical(
    app: Strongroom, manager: SecretsManager, revoke: EmergencyRevoke
) -> None:
    await manager.create_secret("leaked-token", canary())
    await revoke.request_revocation(request("leaked-token", immediate=True))
    with acting_as("mallory", ip="203.0.113.7"), pytest.raises(SecretRevokedError):
        await manager.get_secret("leaked-token")

    audit = SecretsAudit(app)
    (read,) = await audit.get_audit_trail("leaked-token", "READ")
    assert read["result"] == "FAILURE"
    assert read["error_code"] == "revoked"
    assert read["actor_id"] == "mallory"
    found = await audit.detect_suspicious_activity("leaked-token")
    threats = [t for t in found["threats"] if t["type"] == "unavailable_secret_access"]
    assert len(threats) == 1
    assert threats[0]["severity"] == "critical"
    assert threats[0]["actor_id"] == "mallory"
    assert threats[0]["evidence"]["error_code"] == "revoked"


async def test_the_seed_constructor_shares_the_app(app: Strongroom) -> None:
    manager = SecretsManager(app)
    revoke = EmergencyRevoke(manager, SecretsAudit(app))
    await manager.create_secret("seed-key", canary())
    status = await revoke.request_revocation(request("seed-key", immediate=True))
    assert status["status"] == "COMPLETED"
    with pytest.raises(SecretRevokedError):
        await manager.get_secret("seed-key")


@pytest.mark.stores("memory", "sqlite", "postgres")
async def test_a_backup_taken_before_a_revocation_never_restores_the_revoked_value(
    manager: SecretsManager, revoke: EmergencyRevoke, clock: ManualClock
) -> None:
    """Backup, revoke, delete, purge, restore: the revoked value stays unreadable. The restore
    is refused with an error that names the revocation, and nothing is written."""
    value = canary()
    await manager.create_secret("leaked-db", value)
    blob = await manager.backup_secret("leaked-db")
    clock.advance(minutes=1)
    done = await revoke.request_revocation(request("leaked-db", immediate=True))
    await manager.delete_secret("leaked-db", immediate=True)  # purged: the rows are gone
    with pytest.raises(SecretRevokedError) as refused:
        await manager.restore_secret_backup(blob)
    assert f"revocation request {done['revocation_id']}" in str(refused.value)
    assert value not in str(refused.value)
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("leaked-db")

    # A value issued after the revocation is not caught by it.
    clock.advance(minutes=1)
    await manager.create_secret("leaked-db", "fresh-value")
    fresh = await manager.backup_secret("leaked-db")
    await manager.delete_secret("leaked-db", immediate=True)
    await manager.restore_secret_backup(fresh)
    assert await manager.get_secret("leaked-db") == "fresh-value"
