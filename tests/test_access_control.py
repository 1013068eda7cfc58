"""Tokens, policies and bindings on every store: hashed at rest, constant-time checks, expiry,
revocation at once, and every change audited."""

from __future__ import annotations

from datetime import timedelta

import pytest

from strongroom import SecretsAudit, Strongroom
from strongroom.core.clock import ManualClock
from strongroom.core.errors import (
    AccessObjectNotFoundError,
    AuthenticationError,
    PermissionDeniedError,
    ValidationError,
)
from strongroom.core.policy import Action, Policy

pytestmark = pytest.mark.stores("sqlite", "postgres")


async def test_a_token_authenticates_as_its_identity_with_its_policies(app: Strongroom) -> None:
    await app.access.put_policy(Policy.build("dispatch", ["read:dispatch-*"]))
    issued = await app.access.create_token("radio-7", policies=["dispatch"])
    principal = await app.access.authenticate(issued.token)
    assert principal.identity == "radio-7"
    assert [p.name for p in principal.policies] == ["dispatch"]
    assert principal.may(Action.READ, "dispatch-db")
    assert not principal.may(Action.READ, "billing-db")
    assert issued.record.id in issued.token
    assert issued.token not in repr(issued)


async def test_only_a_keyed_hash_of_the_token_is_stored(app: Strongroom) -> None:
    issued = await app.access.create_token("svc")
    stored = await app.access.store.get_token(issued.record.id)
    assert stored is not None
    secret = issued.token.split("_", 2)[2]
    assert secret.encode() not in stored.digest
    assert len(stored.digest) == 32  # HMAC-SHA256
    assert stored.digest == issued.record.digest


@pytest.mark.parametrize(
    "bad",
    [None, "", "Bearer x", "srt_0123456789abcdef_short", "srt_XYZ_" + "a" * 43, "x" * 5000],
)
async def test_malformed_tokens_are_refused(app: Strongroom, bad: str | None) -> None:
    with pytest.raises(AuthenticationError):
        await app.access.authenticate(bad)


async def test_a_guessed_secret_for_a_real_id_is_refused(app: Strongroom) -> None:
    issued = await app.access.create_token("svc")
    prefix, token_id, secret = issued.token.split("_", 2)
    forged = f"{prefix}_{token_id}_{'A' * len(secret)}"
    with pytest.raises(AuthenticationError, match="not valid") as caught:
        await app.access.authenticate(forged)
    assert secret not in str(caught.value)


async def test_a_guessed_secret_is_refused_once_the_real_token_is_cached(app: Strongroom) -> None:
    """The cache is keyed by token id: a hit must still compare the secret's digest."""
    assert app.settings.auth_cache_seconds > 0  # the cached path is the one under test
    issued = await app.access.create_token("svc")
    assert (await app.access.authenticate(issued.token)).identity == "svc"  # now cached
    prefix, token_id, secret = issued.token.split("_", 2)
    for guess in ("A" * len(secret), secret[:-1] + ("B" if secret[-1] != "B" else "C")):
        with pytest.raises(AuthenticationError, match="not valid"):
            await app.access.authenticate(f"{prefix}_{token_id}_{guess}")
    assert (await app.access.authenticate(issued.token)).identity == "svc"


async def test_revocation_takes_effect_at_once_even_after_a_cached_success(
    app: Strongroom,
) -> None:
    issued = await app.access.create_token("svc")
    await app.access.authenticate(issued.token)  # now cached
    await app.access.revoke_token(issued.record.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        await app.access.authenticate(issued.token)


async def test_revocation_by_another_process_is_seen_within_the_cache_time(
    app: Strongroom, store_settings: object, clock: ManualClock
) -> None:
    issued = await app.access.create_token("svc")
    await app.access.authenticate(issued.token)
    other = await Strongroom.open(app.settings, clock=clock)  # another process's wiring
    try:
        await other.access.revoke_token(issued.record.id)
    finally:
        await other.close()
    app.access.invalidate()  # what the cache time does on its own after auth_cache_seconds
    with pytest.raises(AuthenticationError):
        await app.access.authenticate(issued.token)


async def test_an_expired_token_is_refused(app: Strongroom, clock: ManualClock) -> None:
    issued = await app.access.create_token("svc", ttl=timedelta(minutes=5))
    assert (await app.access.authenticate(issued.token)).identity == "svc"
    clock.advance(minutes=6)
    app.access.invalidate()
    with pytest.raises(AuthenticationError, match="expired"):
        await app.access.authenticate(issued.token)


async def test_a_policy_change_applies_to_existing_tokens(app: Strongroom) -> None:
    await app.access.put_policy(Policy.build("ops", ["read:a-*"]))
    issued = await app.access.create_token("svc", policies=["ops"])
    assert not (await app.access.authenticate(issued.token)).may(Action.WRITE, "a-1")
    await app.access.put_policy(Policy.build("ops", ["read,write:a-*"]))
    assert (await app.access.authenticate(issued.token)).may(Action.WRITE, "a-1")
    await app.access.detach("svc", "ops")
    assert (await app.access.authenticate(issued.token)).policies == ()
    await app.access.attach("svc", "ops")
    await app.access.delete_policy("ops")
    assert (await app.access.authenticate(issued.token)).policies == ()


async def test_bad_input_changes_nothing(app: Strongroom) -> None:
    with pytest.raises(ValidationError):
        await app.access.create_token("bad identity!")
    with pytest.raises(AccessObjectNotFoundError):
        await app.access.create_token("svc", policies=["missing"])
    with pytest.raises(ValidationError):
        await app.access.create_token("svc", ttl=timedelta(seconds=-1))
    with pytest.raises(ValidationError):
        await app.access.put_policy(Policy.build("admin", ["read:*"]))
    with pytest.raises(ValidationError):
        await app.access.revoke_token("not-an-id")
    with pytest.raises(AccessObjectNotFoundError):
        await app.access.revoke_token("0123456789abcdef")
    assert await app.access.list_tokens() == []
    assert [p.name for p in await app.access.list_policies()] == ["admin", "auditor"]


async def test_denials_and_changes_are_audited(app: Strongroom) -> None:
    issued = await app.access.create_token("svc", policies=["auditor"])
    principal = await app.access.authenticate(issued.token)
    with pytest.raises(PermissionDeniedError):
        await app.access.require(principal, Action.READ, "fleet-db")
    await app.access.revoke_token(issued.record.id)
    trail = await SecretsAudit(app).get_audit_trail(limit=10)
    denied = next(e for e in trail if e["error_code"] == "forbidden")
    assert denied["action"] == "READ"
    assert denied["resource_name"] == "fleet-db"
    assert denied["details"]["denied_action"] == "read"
    operations = [e["details"].get("operation") for e in trail if e["action"] == "ACCESS_CHANGE"]
    assert operations == ["token.revoke", "token.create"]
    assert app.metrics.value("unauthorized_attempts_total", reason="forbidden") == 1
    assert all(issued.token not in str(e) for e in trail)


async def test_identities_lists_holders_of_policies_and_live_tokens(app: Strongroom) -> None:
    await app.access.create_token("a", policies=["auditor"])
    dead = await app.access.create_token("b")
    await app.access.revoke_token(dead.record.id)
    assert await app.access.identities() == [
        {"identity": "a", "policies": ["auditor"], "tokens": 1},
        {"identity": "b", "policies": [], "tokens": 0},
    ]
