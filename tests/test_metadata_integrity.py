"""Metadata and access-control rows are authenticated: with write access to the database but
not the master key, nobody makes strongroom serve what it would refuse.

Each test performs the attack a database administrator could make (plain SQL around
strongroom), then shows the row is refused (``TamperedError``), alerted (counter, INTEGRITY
audit event) and never trusted. The memory profile keeps nothing at rest: SQLite and
PostgreSQL only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helpers_raw import raw_execute, raw_fetch
from strongroom import (
    EmergencyRevoke,
    RevocationRequest,
    RotationConfig,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    Settings,
    Strongroom,
)
from strongroom.core.errors import AuthenticationError, SecretRevokedError, TamperedError
from strongroom.core.policy import Action, Policy

pytestmark = pytest.mark.stores("sqlite", "postgres")


async def _integrity_events(app: Strongroom) -> list[dict[str, Any]]:
    for _ in range(200):  # the alarm records its event on the loop, right after the refusal
        await app.alarm.drain()  # type: ignore[union-attr]
        found = await SecretsAudit(app).get_audit_trail(action="INTEGRITY")
        if found:
            return found
        await asyncio.sleep(0.01)
    return []


async def _break_glass(app: Strongroom, name: str) -> None:
    await SecretsRotation(app).register_secret(RotationConfig(name=name, generator="password"))
    done = await EmergencyRevoke(app).request_revocation(
        RevocationRequest(
            secret_name=name, reason="key_compromise", requested_by="alice", severity="critical",
            immediate=True, rotate_after=True,
        )
    )  # fmt: skip
    assert done["status"] == "COMPLETED"


async def test_un_revoking_and_setting_the_pointer_back_is_refused(
    app: Strongroom, store_settings: Settings
) -> None:
    """The review's proof: after a break-glass revocation (with a fresh value), un-revoke the
    compromised version and point the secret back at it."""
    manager = SecretsManager(app)
    await manager.create_secret("payments-key", "compromised-value")
    await _break_glass(app, "payments-key")
    assert await manager.get_secret("payments-key") != "compromised-value"

    true = "true" if store_settings.backend.value == "postgres" else "1"
    await raw_execute(
        store_settings,
        f"UPDATE secret_versions SET revoked_at = NULL, enabled = {true} "
        "WHERE name_key = 'payments-key'",
        "UPDATE secrets SET current_seq = 1 WHERE name_key = 'payments-key'",
    )
    with pytest.raises(TamperedError) as refused:
        await manager.get_secret("payments-key")
    assert "compromised-value" not in str(refused.value)
    with pytest.raises(TamperedError):
        await manager.get_secret_versions("payments-key")
    assert app.metrics.value("integrity_violations_total", table="secrets") >= 1
    reads = await SecretsAudit(app).get_audit_trail("payments-key", "READ", result="FAILURE")
    assert reads[0]["error_code"] == "tampered"
    assert await _integrity_events(app)


async def test_a_revoked_version_row_replayed_from_before_the_revocation_is_refused(
    app: Strongroom, store_settings: Settings
) -> None:
    """Copy the version's genuine row (and MAC) before the revocation, write it back after."""
    manager = SecretsManager(app)
    created = await manager.create_secret("replayed", "compromised-value")
    saved = await raw_fetch(
        store_settings,
        "SELECT enabled, revoked_at, updated_at, gen, mac FROM secret_versions "
        "WHERE name_key = 'replayed'",
    )
    await _break_glass(app, "replayed")
    enabled, revoked_at, updated_at, gen, mac = saved[0]
    await raw_execute(
        store_settings,
        ("UPDATE secret_versions SET enabled = ?, revoked_at = ?, updated_at = ?, gen = ?, "
         "mac = ? WHERE name_key = 'replayed' AND seq = 1",
         (enabled, revoked_at, updated_at, gen, mac)),
    )  # fmt: skip
    with pytest.raises(TamperedError):
        await manager.get_secret("replayed", version=created["version"])


async def test_an_old_current_pointer_replayed_is_refused(
    app: Strongroom, store_settings: Settings
) -> None:
    manager = SecretsManager(app)
    await manager.create_secret("pointer", "first-value")
    saved = await raw_fetch(
        store_settings, "SELECT current_seq, gen, mac FROM secrets WHERE name_key = 'pointer'"
    )
    await manager.update_secret("pointer", "second-value")
    seq, gen, mac = saved[0]
    await raw_execute(
        store_settings,
        ("UPDATE secrets SET current_seq = ?, gen = ?, mac = ? WHERE name_key = 'pointer'",
         (seq, gen, mac)),
    )  # fmt: skip
    with pytest.raises(TamperedError):
        await manager.get_secret("pointer")


async def test_changing_expiry_or_enabling_a_disabled_version_is_refused(
    app: Strongroom, store_settings: Settings
) -> None:
    manager = SecretsManager(app)
    await manager.create_secret("switched-off", "value", enabled=False)
    await raw_execute(
        store_settings,
        "UPDATE secret_versions SET enabled = "
        + ("true" if store_settings.backend.value == "postgres" else "1")
        + " WHERE name_key = 'switched-off'",
    )
    with pytest.raises(TamperedError):
        await manager.get_secret("switched-off")
    with pytest.raises(TamperedError):  # a write never launders a tampered row
        await manager.update_secret("switched-off", "other")


async def test_a_binding_inserted_by_hand_grants_nothing(
    app: Strongroom, store_settings: Settings
) -> None:
    """``INSERT INTO strongroom_identity_policies VALUES ('svc', 'admin')``: the read-only token
    stays read-only, and the forged row is alerted and audited."""
    await app.access.put_policy(Policy.build("read-only", ["read:svc-*"]))
    issued = await app.access.create_token("svc", policies=["read-only"])
    await raw_execute(
        store_settings,
        "INSERT INTO strongroom_identity_policies (identity, policy) VALUES ('svc', 'admin')",
    )
    app.access.invalidate()
    principal = await app.access.authenticate(issued.token)
    assert [p.name for p in principal.policies] == ["read-only"]
    assert not principal.may(Action.ADMIN, None)
    assert ("svc", "admin") not in await app.access.store.bindings()
    events = await _integrity_events(app)
    assert events[0]["details"]["table"] == "strongroom_identity_policies"


async def test_a_token_moved_to_another_identity_or_a_widened_policy_is_refused(
    app: Strongroom, store_settings: Settings
) -> None:
    await app.access.put_policy(Policy.build("narrow", ["read:svc-*"]))
    issued = await app.access.create_token("svc", policies=["narrow"])
    await app.access.create_token("root-user", policies=["admin"])
    grants = '[{"actions": ["admin"], "pattern": "*"}]'
    cast = "::jsonb" if store_settings.backend.value == "postgres" else ""
    await raw_execute(
        store_settings,
        (f"UPDATE strongroom_policies SET grants = ?{cast} WHERE name = 'narrow'", (grants,)),
    )
    app.access.invalidate()
    principal = await app.access.authenticate(issued.token)
    assert principal.policies == ()  # the widened policy is refused: it grants nothing
    await raw_execute(
        store_settings, "UPDATE strongroom_tokens SET identity = 'root-user' WHERE identity = 'svc'"
    )
    app.access.invalidate()
    with pytest.raises(AuthenticationError):
        await app.access.authenticate(issued.token)


_PRE_MAC = (
    "ALTER TABLE secrets DROP COLUMN mac",
    "ALTER TABLE secrets DROP COLUMN revoked_gen",
    "ALTER TABLE secrets DROP COLUMN gen",
    "ALTER TABLE secret_versions DROP COLUMN mac",
    "ALTER TABLE secret_versions DROP COLUMN gen",
    "ALTER TABLE strongroom_tokens DROP COLUMN mac",
    "ALTER TABLE strongroom_policies DROP COLUMN mac",
    "ALTER TABLE strongroom_identity_policies DROP COLUMN mac",
    "DELETE FROM schema_migrations WHERE number IN (10, 11)",
)


async def test_a_store_made_before_row_macs_keeps_working_and_is_protected_after_upgrade(
    store_settings: Settings,
) -> None:
    """Take the schema back to what the previous release made (no MAC columns, migrations 10
    and 11 not applied), with secrets, a revoked one, a token and a binding in it; open it with
    this release: everything reads as before, and the rows now carry MACs that hold."""
    async with await Strongroom.open(store_settings) as app:
        manager = SecretsManager(app)
        await manager.create_secret("kept", "kept-value")
        await manager.update_secret("kept", "kept-value-2")
        await manager.create_secret("gone", "gone-value")
        await EmergencyRevoke(app).request_revocation(
            RevocationRequest(secret_name="gone", reason="key_compromise", requested_by="alice",
                              severity="high", immediate=True)
        )  # fmt: skip
        await app.access.put_policy(Policy.build("reader", ["read:kept"]))
        token = (await app.access.create_token("svc", policies=["reader"])).token
    await raw_execute(store_settings, *_PRE_MAC)

    async with await Strongroom.open(store_settings) as app:
        manager = SecretsManager(app)
        assert await manager.get_secret("kept") == "kept-value-2"
        assert len(await manager.get_secret_versions("kept")) == 2
        with pytest.raises(Exception, match="revoked"):
            await manager.get_secret("gone")
        principal = await app.access.authenticate(token)
        assert principal.may(Action.READ, "kept")
    missing = await raw_fetch(
        store_settings,
        "SELECT count(*) FROM secret_versions WHERE mac IS NULL",
    )
    assert missing[0][0] == 0

    # From now on the upgraded rows are protected like any other.
    await raw_execute(
        store_settings,
        "UPDATE secret_versions SET revoked_at = NULL WHERE name_key = 'gone'",
    )
    async with await Strongroom.open(store_settings) as app:
        with pytest.raises(TamperedError):
            await SecretsManager(app).get_secret("gone")


async def test_a_break_glass_revocation_goes_through_a_tampered_secret_row(
    app: Strongroom, store_settings: Settings
) -> None:
    """The one place a row's MAC is not enforced: an emergency is never blocked by what it
    responds to. The tampered row is alarmed, every version is revoked, and the secret row is
    rewritten with a fresh MAC, so nothing of the compromised value is readable again."""
    manager = SecretsManager(app)
    await manager.create_secret("tampered-leak", "compromised-value")
    await raw_execute(
        store_settings, "UPDATE secrets SET gen = gen + 7 WHERE name_key = 'tampered-leak'"
    )
    with pytest.raises(TamperedError):
        await manager.get_secret("tampered-leak")

    done = await EmergencyRevoke(app).request_revocation(
        RevocationRequest(
            secret_name="tampered-leak", reason="key_compromise", requested_by="alice",
            severity="critical", immediate=True, rotate_after=False,
        )
    )  # fmt: skip
    assert done["status"] == "COMPLETED"
    with pytest.raises(SecretRevokedError) as refused:
        await manager.get_secret("tampered-leak")
    assert "compromised-value" not in str(refused.value)
    [version] = await raw_fetch(
        store_settings, "SELECT revoked_at FROM secret_versions WHERE name_key = 'tampered-leak'"
    )
    assert version[0] is not None
    assert app.metrics.value("integrity_violations_total", table="secrets") >= 1
    assert await _integrity_events(app)
