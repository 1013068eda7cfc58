"""What each step of an emergency revocation leaves behind, on every store: the checks of who
acts and why (their bounds, each refusal naming the field), the reasons closed requests keep,
the audit details, metrics, logs and events of execution, its failure with a foreign error
(recorded by type, never by message), and the bounds of the history."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from strongroom import (
    ConfigurationError,
    EmergencyRevoke,
    RevocationRequest,
    RevocationStateError,
    SecretsAudit,
    SecretsManager,
    SecretType,
    Settings,
    Strongroom,
    ValidationError,
)
from strongroom.core.clock import ManualClock
from strongroom.core.errors import StoreUnavailableError
from strongroom.core.revocation import Severity
from strongroom.services.notify import Notification
from strongroom.services.revocation.records import approvals_from

pytestmark = pytest.mark.stores("memory", "sqlite", "postgres")


def canary() -> str:
    return f"RECORDS-CANARY-{secrets.token_hex(8)}"


def request(name: str, **options: Any) -> RevocationRequest:
    options = {"reason": "key_compromise", "requested_by": "alice", "severity": "high", **options}
    return RevocationRequest(secret_name=name, **options)


@pytest.fixture
def revoke(app: Strongroom) -> EmergencyRevoke:
    return EmergencyRevoke(app)


async def pending(app: Strongroom, revoke: EmergencyRevoke, name: str = "fleet-db") -> int:
    await SecretsManager(app).create_secret(name, canary())
    return int((await revoke.request_revocation(request(name)))["revocation_id"])


async def newest(app: Strongroom, operation: str) -> dict[str, Any]:
    trail = await SecretsAudit(app).get_audit_trail(action="REVOKE", limit=50)
    return next(e for e in trail if e["details"].get("operation") == operation)


@pytest.mark.parametrize("field", ["approved_by", "by"])
async def test_who_acts_is_one_to_256_characters_of_someone(
    app: Strongroom, revoke: EmergencyRevoke, field: str
) -> None:
    rid = await pending(app, revoke)
    act = revoke.approve_revocation if field == "approved_by" else revoke.cancel_revocation
    for bad in ("", "   ", "b" * 257, 7):
        with pytest.raises(ValidationError, match=rf"^{field} must name someone"):
            await act(rid, bad)  # type: ignore[arg-type]
    assert (await revoke.get_revocation_status(rid))["status"] == "PENDING"
    done = await act(rid, "b" * 256)
    assert done["status"] == ("COMPLETED" if field == "approved_by" else "CANCELLED")
    one = await pending(app, revoke, "one-letter")
    assert (await act(one, "b"))["status"] != "PENDING"


async def test_a_close_keeps_its_reason_up_to_1000_characters(
    app: Strongroom, revoke: EmergencyRevoke
) -> None:
    rid = await pending(app, revoke)
    for bad in ("r" * 1001, 5):
        with pytest.raises(ValidationError, match="reason"):
            await revoke.reject_revocation(rid, "bob", bad)  # type: ignore[arg-type]
    assert (await revoke.get_revocation_status(rid))["status"] == "PENDING"
    rejected = await revoke.reject_revocation(rid, "bob", "r" * 1000)
    assert (rejected["status"], rejected["closed_by"]) == ("REJECTED", "bob")
    row = await app.revocation_store.get(rid)
    assert row is not None
    assert row["details"]["close_reason"] == "r" * 1000
    event = await newest(app, "reject")
    assert event["resource_name"] == "fleet-db"
    assert event["details"]["revocation_id"] == rid
    assert event["details"]["closed_by"] == "bob"
    assert event["details"]["reason"] == "r" * 1000


async def test_a_close_without_a_reason_records_none(
    app: Strongroom, revoke: EmergencyRevoke
) -> None:
    for close in ("reject", "cancel"):
        rid = await pending(app, revoke, f"db-{close}")
        if close == "reject":
            await revoke.reject_revocation(rid, "bob")
        else:
            await revoke.cancel_revocation(rid, "alice")
        row = await app.revocation_store.get(rid)
        assert row is not None
        assert "close_reason" not in row["details"]
        event = await newest(app, close)
        assert event["details"].get("reason") is None
        assert event["details"]["revocation_id"] == rid


async def test_a_closed_request_takes_no_further_approval(
    app: Strongroom, manager: SecretsManager
) -> None:
    revoke = EmergencyRevoke(app, approvals_required={"high": 2})
    rid = await pending(app, revoke)
    await revoke.reject_revocation(rid, "carol", "false alarm")
    with pytest.raises(RevocationStateError):
        await revoke.approve_revocation(rid, "bob")
    status = await revoke.get_revocation_status(rid)
    assert (status["status"], status["approvals"]) == ("REJECTED", [])


async def test_an_approval_records_who_and_when(
    app: Strongroom, revoke: EmergencyRevoke, clock: ManualClock
) -> None:
    revoke = EmergencyRevoke(app, approvals_required={"high": 2})
    rid = await pending(app, revoke)
    clock.advance(minutes=3)
    status = await revoke.approve_revocation(rid, "bob")
    assert status["approvals"] == [{"by": "bob", "at": clock().isoformat()}]
    assert status["status"] == "PENDING"
    event = await newest(app, "approve")
    assert (event["resource_name"], event["details"]["revocation_id"]) == ("fleet-db", rid)
    assert event["details"]["approved_by"] == "bob"


async def test_execution_is_counted_logged_and_announced(
    app: Strongroom, revoke: EmergencyRevoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    await SecretsManager(app).create_secret("fleet-db", canary())
    emitted = record_events(app, monkeypatch)
    with capture_logs() as logs:
        done = await revoke.request_revocation(request("fleet-db", immediate=True))
    assert done["status"] == "COMPLETED"
    assert app.metrics.value("revocations_total", severity="high") == 1
    line = next(e for e in logs if e["event"] == "secret revoked")
    assert (line["name"], line["revocation_id"], line["count"]) == (
        "fleet-db",
        done["revocation_id"],
        1,
    )
    assert emitted == [
        (
            "secret.revoked",
            "fleet-db",
            {"revocation_id": done["revocation_id"], "versions_revoked": 1},
        )
    ]


async def test_a_foreign_failure_after_revoking_is_recorded_by_its_type_only(
    app: Strongroom, revoke: EmergencyRevoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A soft delete that fails with a driver's error (whose message may quote anything)
    leaves the request FAILED with the error's type; the versions are revoked all the same,
    so consumers still hear of it."""
    value = canary()
    await SecretsManager(app).create_secret("fleet-db", value)
    emitted = record_events(app, monkeypatch)

    async def failing_delete(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"driver failure near {value}")

    monkeypatch.setattr(app.store, "delete", failing_delete)
    with capture_logs() as logs:
        failed = await revoke.request_revocation(request("fleet-db", soft_delete=True))
        failed = await revoke.approve_revocation(failed["revocation_id"], "bob")
    assert (failed["status"], failed["error"]) == ("FAILED", "RuntimeError")
    assert failed["versions_revoked"] == 1
    line = next(e for e in logs if e["event"] == "revocation failed")
    assert (line["name"], line["revocation_id"], line["error"]) == (
        "fleet-db",
        failed["revocation_id"],
        "RuntimeError",
    )
    assert value not in str(logs) + str(failed)
    assert emitted == [
        (
            "secret.revoked",
            "fleet-db",
            {"revocation_id": failed["revocation_id"], "versions_revoked": 1},
        )
    ]


async def test_history_is_bounded_and_about_the_secret_asked_for(
    app: Strongroom, revoke: EmergencyRevoke
) -> None:
    rid = await pending(app, revoke)
    row = await app.revocation_store.get(rid)
    assert row is not None
    for _ in range(50):
        await app.revocation_store.insert({k: v for k, v in row.items() if k != "id"})
    assert len(await revoke.get_revocation_history("fleet-db")) == 50  # the default
    assert len(await revoke.get_revocation_history(limit=1000)) == 51
    assert len(await revoke.get_revocation_history(limit=1)) == 1
    for bad in (0, 1001, True, "5"):
        with pytest.raises(ValidationError, match="limit"):
            await revoke.get_revocation_history(limit=bad)  # type: ignore[arg-type]
    # A deleted secret's history is its own, not every secret's.
    other = await pending(app, revoke, "other-db")
    await SecretsManager(app).delete_secret("other-db")
    assert [h["revocation_id"] for h in await revoke.get_revocation_history("Other-DB")] == [other]


def record_events(app: Strongroom, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    """The events ``app`` emits (delivered as usual)."""
    emitted: list[tuple[str, str, Any]] = []
    real = app.events.emit

    async def emit(kind: str, name: str, **fields: Any) -> None:
        emitted.append((kind, name, fields))
        await real(kind, name, **fields)

    monkeypatch.setattr(app.events, "emit", emit)
    return emitted


def test_approvals_are_one_to_ten_per_severity() -> None:
    assert approvals_from(None) == {}
    assert approvals_from("critical=10, ,high=1") == {Severity.CRITICAL: 10, Severity.HIGH: 1}
    for bad in ("high=0", "critical=11", "high", "urgent=2"):
        with pytest.raises(ConfigurationError):
            approvals_from(bad)


async def test_a_request_is_shown_with_its_times_and_recipients(
    app: Strongroom, revoke: EmergencyRevoke, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = record_notifications(app, monkeypatch)
    await SecretsManager(app).create_secret("fleet-db", canary())
    requested_at = clock()
    status = await revoke.request_revocation(
        request("fleet-db", notify_recipients=["sec@example.com"])
    )
    assert status["requested_at"] == status["updated_at"] == requested_at
    assert status["notify_recipients"] == ["sec@example.com"]
    assert [d["kind"] for d in status["deliveries"]] == ["revocation.requested"]
    (notice,) = sent
    assert notice.kind == "revocation.requested"
    assert notice.occurred_at == requested_at  # the wiring's clock, not the machine's
    assert notice.fields["risk_level"] == status["risk"]["level"] is not None
    assert list(notice.recipients) == ["sec@example.com"]
    clock.advance(minutes=5)
    rejected = await revoke.reject_revocation(status["revocation_id"], "bob")
    assert rejected["updated_at"] == clock()
    assert rejected["requested_at"] == requested_at


@pytest.mark.stores("sqlite")
async def test_built_from_settings_it_opens_that_deployment(
    app: Strongroom, store_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process default points elsewhere: only the settings given can find the secret.
    monkeypatch.setenv("STRONGROOM_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("STRONGROOM_BACKEND", "memory")
    await SecretsManager(app).create_secret("fleet-db", canary())
    async with EmergencyRevoke(settings=store_settings) as revoke:
        status = await revoke.request_revocation(request("fleet-db"))
    pending = await EmergencyRevoke(app).list_pending_revocations()
    assert [p["revocation_id"] for p in pending] == [status["revocation_id"]]


def record_notifications(app: Strongroom, monkeypatch: pytest.MonkeyPatch) -> list[Notification]:
    """The notifications ``app`` sends (delivered as usual)."""
    sent: list[Notification] = []
    real = app.notifier.send

    async def send(notification: Notification) -> Any:
        sent.append(notification)
        return await real(notification)

    monkeypatch.setattr(app.notifier, "send", send)
    return sent


async def test_break_glass_is_recorded_as_such(
    app: Strongroom, revoke: EmergencyRevoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    await SecretsManager(app).create_secret("fleet-db", canary(), SecretType.DATABASE_CREDENTIAL)
    sent = record_notifications(app, monkeypatch)
    status = await revoke.request_revocation(request("fleet-db", immediate=True))
    assert status["risk"]["factors"]["secret_type"] == 15  # what the secret opens counts
    row = await app.revocation_store.get(status["revocation_id"])
    assert row is not None
    assert row["details"]["approved_without_approval"] is True
    asked = await newest(app, "request")
    assert (asked["details"]["immediate"], asked["details"]["break_glass"]) == (True, True)
    completed = next(n for n in sent if n.kind == "revocation.completed")
    assert completed.priority == "critical"


async def test_an_approved_revocation_is_announced_at_high_priority(
    app: Strongroom, revoke: EmergencyRevoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = await pending(app, revoke)
    sent = record_notifications(app, monkeypatch)
    await revoke.approve_revocation(rid, "bob")
    completed = next(n for n in sent if n.kind == "revocation.completed")
    assert completed.priority == "high"
    asked = await newest(app, "request")
    assert (asked["details"]["immediate"], asked["details"]["break_glass"]) == (False, False)


async def test_a_malformed_request_or_id_is_refused_and_the_attempt_recorded(
    app: Strongroom, revoke: EmergencyRevoke
) -> None:
    with pytest.raises(AttributeError):
        await revoke.request_revocation({"secret_name": "fleet-db"})  # type: ignore[arg-type]
    attempt = (await SecretsAudit(app).get_audit_trail(action="REVOKE", limit=1))[0]
    assert (attempt["result"], attempt["details"]["operation"]) == ("FAILURE", "request")
    for bad in ("1", True):
        with pytest.raises(ValidationError, match="whole number"):
            await revoke.get_revocation_status(bad)  # type: ignore[arg-type]


@pytest.mark.stores("sqlite")
async def test_without_an_audit_store_the_risk_counts_no_readers(
    store_settings: Settings, clock: ManualClock
) -> None:
    """A wiring opened without auditing (benchmarks measure it) still assesses a request."""
    app = await Strongroom.open(store_settings, clock=clock, audit=False)
    try:
        await SecretsManager(app).create_secret("fleet-db", canary())
        status = await EmergencyRevoke(app).request_revocation(request("fleet-db"))
        assert status["risk"]["recent_readers"] == status["risk"]["reads_last_hour"] == 0
        assert status["risk"]["factors"]["in_use"] == 0
    finally:
        await app.close()


async def test_a_break_glass_use_cut_short_after_revoking_is_already_under_review(
    app: Strongroom, revoke: EmergencyRevoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review opens as soon as the versions are revoked: a request cancelled in a later
    step (a shutdown, a client gone) is answered for all the same."""
    await SecretsManager(app).create_secret("fleet-db", canary())

    async def cancelled(*args: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError

    monkeypatch.setattr(app.store, "delete", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await revoke.request_revocation(request("fleet-db", immediate=True, soft_delete=True))
    (review,) = await app.break_glass_reviews.listing()
    assert (review["secret_name"], review["used_by"], review["status"]) == (
        "fleet-db",
        "alice",
        "OPEN",
    )


async def test_a_break_glass_use_that_failed_before_revoking_is_still_reviewed(
    app: Strongroom, revoke: EmergencyRevoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    await SecretsManager(app).create_secret("fleet-db", canary())

    async def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the store did not answer")

    monkeypatch.setattr(app.store, "revoke_all", unavailable)
    failed = await revoke.request_revocation(request("fleet-db", immediate=True))
    assert (failed["status"], failed["versions_revoked"]) == ("FAILED", None)
    review = await app.break_glass_reviews.get(failed["revocation_id"])
    assert (review["used_by"], review["status"]) == ("alice", "OPEN")


async def test_a_break_glass_request_cut_short_before_its_review_shows_none(
    app: Strongroom, revoke: EmergencyRevoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    await SecretsManager(app).create_secret("fleet-db", canary())

    async def cancelled(*args: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError

    monkeypatch.setattr(app.store, "revoke_all", cancelled)
    with pytest.raises(asyncio.CancelledError):
        await revoke.request_revocation(request("fleet-db", immediate=True))
    (row,) = await revoke.get_revocation_history("fleet-db")
    status = await revoke.get_revocation_status(row["revocation_id"])
    assert status["break_glass"] is True
    assert (status["review_status"], status["review_due_at"], status["reviewed_by"]) == (
        None,
        None,
        None,
    )
