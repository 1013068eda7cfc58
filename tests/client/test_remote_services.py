"""SecretsAudit, EmergencyRevoke, SecretsRotation and EventSubscriptions on the remote profile,
against a real server over HTTPS: the token's identity acts, a claimed name never counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from helpers_remote import remote_server, remote_settings
from helpers_serve import Served
from strongroom import (
    EmergencyRevoke,
    EventSubscriptions,
    RevocationNotFoundError,
    RevocationReason,
    RevocationRequest,
    RotationConfig,
    SecretRevokedError,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    SeparationOfDutiesError,
    acting_as,
)
from strongroom.services.remote.audit import RemoteSecretsAudit
from strongroom.services.remote.revoke import RemoteEmergencyRevoke
from strongroom.services.remote.rotation import RemoteSecretsRotation


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    home = tmp_path_factory.mktemp("remote-services")
    async with remote_server(home, webhook_allow_loopback=True) as running:
        yield running


OPENED: list[SecretsManager] = []


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Every client closes its connections (a server stops only once they are gone)."""
    yield
    while OPENED:
        await OPENED.pop().close()


async def remote_manager(server: Served, home: Path, identity: str, *grants: str) -> SecretsManager:
    token = await server.token_for(identity, *grants)
    manager = SecretsManager(settings=remote_settings(server, token, home))
    OPENED.append(manager)
    return manager


async def test_audit_queries_answer_from_the_servers_trail(server: Served, tmp_path: Path) -> None:
    manager = await remote_manager(
        server, tmp_path, "aud-writer", "read,write:aud-*", "audit-read:*"
    )
    await manager.create_secret("aud-one", "v")
    await manager.get_secret("aud-one")
    audit = SecretsAudit(manager)  # type: ignore[arg-type]
    assert isinstance(audit, RemoteSecretsAudit)
    trail = await audit.get_audit_trail("aud-one")
    assert [(e["action"], e["actor_id"]) for e in trail] == [
        ("READ", "aud-writer"), ("CREATE", "aud-writer"),
    ]  # fmt: skip
    assert isinstance(trail[0]["timestamp"], datetime)
    assert len(await audit.get_audit_trail("aud-one", "READ", 10)) == 1
    summary = await audit.get_audit_summary("aud-one", days=1)
    assert summary["total_events"] == 2
    assert isinstance(summary["since"], datetime)
    threats = await audit.detect_suspicious_activity("aud-one")
    assert threats["threats_detected"] == 0
    assert (await audit.verify_integrity())["valid"] is True


async def test_revocation_separation_of_duties_follows_tokens_not_names(
    server: Served, tmp_path: Path
) -> None:
    grants = ("read,write:rev-*", "revoke-request,revoke-approve:rev-*")
    requester = await remote_manager(server, tmp_path / "a", "rev-alice", *grants)
    approver = await remote_manager(server, tmp_path / "b", "rev-bob", *grants)
    await requester.create_secret("rev-key", "leaked")
    revoke = EmergencyRevoke(requester)
    assert isinstance(revoke, RemoteEmergencyRevoke)
    request = RevocationRequest(
        "rev-key", RevocationReason.KEY_COMPROMISE, requested_by="someone-else", severity="low"
    )
    opened = await revoke.request_revocation(request)
    status = await revoke.get_revocation_status(opened["revocation_id"])
    assert status["requested_by"] == "rev-alice"  # the token, not the claimed name
    with acting_as("rev-bob"), pytest.raises(SeparationOfDutiesError):
        await revoke.approve_revocation(opened["revocation_id"], approved_by="rev-bob")
    assert [r["revocation_id"] for r in await revoke.list_pending_revocations()] == [
        opened["revocation_id"]
    ]
    done = await EmergencyRevoke(approver).approve_revocation(opened["revocation_id"], "x")
    assert done["status"] == "COMPLETED"
    with pytest.raises(SecretRevokedError):
        await requester.get_secret("rev-key")
    with pytest.raises(RevocationNotFoundError):
        await revoke.get_revocation_status(999_999)
    assert len(await revoke.get_revocation_history("rev-key")) == 1


async def test_rotation_with_a_generator_runs_on_the_server(server: Served, tmp_path: Path) -> None:
    manager = await remote_manager(server, tmp_path, "rot-ops", "read,write,list,rotate:rot-*")
    await manager.create_secret("rot-db", "initial-pw")
    rotation = SecretsRotation(manager)
    assert isinstance(rotation, RemoteSecretsRotation)
    await rotation.register_secret(
        RotationConfig("rot-db", rotation_days=30, generator="password", grace_period_hours=0)
    )
    status = await rotation.get_rotation_status("rot-db")
    assert status["days_until_rotation"] in (29, 30)
    await rotation.rotate_secret("rot-db")
    assert await manager.get_secret("rot-db") != "initial-pw"
    assert [c["name"] for c in await rotation.list_rotation_configs()] == ["rot-db"]
    assert await rotation.unregister_secret("rot-db") is True
    assert await rotation.unregister_secret("rot-db") is False


async def test_event_subscriptions_over_http(server: Served, tmp_path: Path) -> None:
    token = await server.token_for("evt-admin", "admin:*")
    subs = EventSubscriptions(settings=remote_settings(server, token, tmp_path))
    created = await subs.subscribe("http://127.0.0.1:9/hook", "billing-*", ["secret.revoked"])
    assert created["signing_key"]
    listed = await subs.list_subscriptions()
    assert [(s["id"], s["pattern"]) for s in listed] == [(created["id"], "billing-*")]
    assert "signing_key" not in listed[0]
    assert await subs.unsubscribe(created["id"]) is True
    assert await subs.unsubscribe(created["id"]) is False
    await subs.close()


async def test_break_glass_reviews_are_answered_for_by_a_second_token(
    server: Served, tmp_path: Path
) -> None:
    responder = await remote_manager(
        server,
        tmp_path / "a",
        "bg-erin",
        "read,write:bg-*",
        "revoke-break-glass,revoke-approve:bg-*",
    )
    reviewer = await remote_manager(server, tmp_path / "b", "bg-ciso", "revoke-approve:bg-*")
    await responder.create_secret("bg-key", "leaked")
    glass = RevocationRequest("bg-key", "key_compromise", requested_by="x", immediate=True)
    used = await EmergencyRevoke(responder).request_revocation(glass)
    (review,) = await EmergencyRevoke(reviewer).list_break_glass_reviews()
    assert (review["revocation_id"], review["used_by"], review["status"]) == (
        used["revocation_id"], "bg-erin", "OPEN",
    )  # fmt: skip
    assert isinstance(review["due_at"], datetime)
    status = await EmergencyRevoke(reviewer).get_revocation_status(used["revocation_id"])
    assert (status["review_status"], status["review_due_at"]) == ("OPEN", review["due_at"])
    with pytest.raises(SeparationOfDutiesError, match="their own break-glass use"):
        # The name given is a note: the token says who acknowledges.
        await EmergencyRevoke(responder).acknowledge_break_glass(
            used["revocation_id"], "bg-ciso", "fine"
        )
    done = await EmergencyRevoke(reviewer).acknowledge_break_glass(
        used["revocation_id"], "anyone", "confirmed leak, rotated downstream"
    )
    assert (done["status"], done["acknowledged_by"]) == ("ACKNOWLEDGED", "bg-ciso")
    assert await EmergencyRevoke(reviewer).list_break_glass_reviews() == []
