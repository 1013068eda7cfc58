"""Tokens in process, on every store: what a login token carries, renewal within its maximum,
revoking an identity, resuming a console session, the cache of verified tokens and the audit
details of each change (the HTTP tests reach these calls only through a server process)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from strongroom import SecretsAudit, Strongroom
from strongroom.core.actor import acting_as
from strongroom.core.clock import ManualClock
from strongroom.core.errors import (
    AccessObjectNotFoundError,
    AuthenticationError,
    PermissionDeniedError,
    ValidationError,
)
from strongroom.core.policy import Action, Policy
from strongroom.services.access import control
from strongroom.services.access.control import MAX_DECISIONS, MAX_TTL, AccessControl, Principal

pytestmark = pytest.mark.stores("sqlite", "postgres")

LOGIN_META = {
    "method": "jwt",
    "mount": "ci",
    "role": "deploy",
    "sub": "repo:fleet",
    "iss": "https://issuer.example",
    "fingerprint": "ab:cd",
    "policies": ["dispatch"],
    "ttl_seconds": 600,
}


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every line logged in the test, INFO included (the library's default level is WARNING)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


async def newest(app: Strongroom, operation: str) -> dict[str, Any]:
    """The newest audit event of an access change named ``operation``."""
    trail = await SecretsAudit(app).get_audit_trail(action="ACCESS_CHANGE", limit=50)
    return next(e for e in trail if e["details"].get("operation") == operation)


async def login_token(app: Strongroom, *, max_minutes: int = 25) -> Any:
    """A token as a login issues it: role policies in its meta, ten minutes, renewable."""
    await app.access.put_policy(Policy.build("dispatch", ["read:dispatch-*"], "the radios"))
    return await app.access.create_token(
        "ci-deploy",
        description="jwt login ci/deploy",
        ttl=timedelta(minutes=10),
        meta=dict(LOGIN_META),
        max_ttl=timedelta(minutes=max_minutes),
    )


async def test_a_login_token_carries_its_provenance_and_role_policies(
    app: Strongroom, clock: ManualClock
) -> None:
    issued = await login_token(app)
    principal = await app.access.authenticate(issued.token)
    assert principal.token_id == issued.record.id
    assert principal.auth == {
        "method": "jwt",
        "accessor": issued.record.id,
        "mount": "ci",
        "role": "deploy",
        "sub": "repo:fleet",
        "iss": "https://issuer.example",
        "fingerprint": "ab:cd",
    }
    # The role's policy binds to this token only, with its description.
    assert [(p.name, p.description) for p in principal.policies] == [("dispatch", "the radios")]
    assert await app.access.store.policies_of("ci-deploy") == []
    stored = await app.access.get_token(issued.record.id)
    assert stored.meta == LOGIN_META
    assert stored.expires_at == clock() + timedelta(minutes=10)
    assert stored.max_expires_at == clock() + timedelta(minutes=25)
    created = await newest(app, "token.create")
    assert created["details"]["auth_method"] == "jwt"


async def test_a_token_made_by_hand_says_so_and_nothing_more(app: Strongroom) -> None:
    issued = await app.access.create_token(
        "svc", meta={"role": 7, "sub": None}, ttl=timedelta(seconds=1)
    )
    principal = await app.access.authenticate(issued.token)
    assert principal.auth == {"method": "token", "accessor": issued.record.id}
    assert issued.record.description == ""
    assert issued.record.max_expires_at is None


async def test_bound_and_role_policies_are_each_loaded_once(app: Strongroom) -> None:
    await app.access.put_policy(Policy.build("ops", ["write:a-*"], "operators"))
    await app.access.put_policy(Policy.build("dispatch", ["read:dispatch-*"]))
    await app.access.attach("svc", "auditor")
    await app.access.attach("svc", "ops")
    meta = {"policies": ["ops", "dispatch", "auditor"]}
    issued = await app.access.create_token("svc", meta=meta)
    principal = await app.access.authenticate(issued.token)
    assert [p.name for p in principal.policies] == ["auditor", "ops", "dispatch"]
    assert principal.policies[1].description == "operators"
    found = await app.access.policies_for("svc", ["dispatch", "ops"])
    assert [p.name for p in found] == ["auditor", "ops", "dispatch"]
    assert await app.access.policies_for("nobody", []) == []


def test_holds_asks_whether_any_grant_allows_the_action_somewhere() -> None:
    reader = Principal("r", "0" * 16, (Policy.build("r", ["read:a-*"]),))
    admin = Principal("a", "1" * 16, (Policy.build("a", ["admin:b-*"]),))
    assert reader.holds(Action.READ)
    assert not reader.holds(Action.WRITE)
    assert admin.holds(Action.DELETE)
    assert not Principal("n", "2" * 16, ()).holds(Action.LIST)


def test_a_principal_remembers_its_decisions_within_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asked again, a principal answers as its policies do without evaluating them again; it
    keeps at most MAX_DECISIONS answers, starting over when full."""
    evaluated: list[tuple[Action, str | None]] = []
    evaluate = control.allowed

    def counted(policies: Any, action: Action, name: str | None) -> bool:
        evaluated.append((action, name))
        return evaluate(policies, action, name)

    monkeypatch.setattr(control, "allowed", counted)
    reader = Principal("r", "0" * 16, (Policy.build("r", ["read,list:a-*"]),))
    asked = [(Action.READ, "a-1"), (Action.READ, "b-1"), (Action.WRITE, "a-1")]
    for action, name in asked * 3:
        assert reader.may(action, name) is ((action, name) == (Action.READ, "a-1"))
    assert evaluated == asked  # the repeats were answered from memory
    assert reader.may(Action.LIST, None) is False  # "*" is not "a-*"
    for i in range(MAX_DECISIONS * 2):
        assert reader.may(Action.READ, f"a-{i}")
        assert len(reader._decided) <= MAX_DECISIONS
    assert reader == Principal("r", "0" * 16, reader.policies)  # its memory is no field


async def test_creation_is_audited_and_logged_without_the_token(
    app: Strongroom, logs: list[dict[str, Any]]
) -> None:
    issued = await app.access.create_token("svc", policies=["auditor"])
    created = await newest(app, "token.create")
    assert created["details"]["identity"] == "svc"
    assert created["details"]["token_id"] == issued.record.id
    assert created["details"]["policies"] == ["auditor"]
    assert created["details"]["auth_method"] == "token"
    assert created["resource_name"] is None
    line = next(e for e in logs if e["event"] == "token created")
    assert (line["token_id"], line["identity"]) == (issued.record.id, "svc")
    assert all(issued.token.split("_", 2)[2] not in str(e) for e in logs)


async def test_time_to_live_and_description_bounds(app: Strongroom, clock: ManualClock) -> None:
    for ttl in (timedelta(0), MAX_TTL + timedelta(seconds=1)):
        with pytest.raises(ValidationError):
            await app.access.create_token("svc", ttl=ttl)
    with pytest.raises(ValidationError, match=r"^a token description must be text"):
        await app.access.create_token("svc", description="d" * 257)
    assert await app.access.list_tokens() == []
    longest = await app.access.create_token("svc", ttl=MAX_TTL, description="d" * 256)
    assert longest.record.expires_at == clock() + MAX_TTL


async def test_list_tokens_of_one_identity(app: Strongroom) -> None:
    mine = await app.access.create_token("a")
    await app.access.create_token("b")
    assert [t.id for t in await app.access.list_tokens("a")] == [mine.record.id]
    assert len(await app.access.list_tokens()) == 2
    with pytest.raises(ValidationError):
        await app.access.list_tokens("not an identity!")


async def test_revoking_by_the_whole_token_is_audited_with_who_and_whose(
    app: Strongroom, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    issued = await app.access.create_token("svc")
    with acting_as("alice"):
        revoked = await app.access.revoke_token(issued.token)  # pasted whole
    assert revoked.id == issued.record.id
    assert (revoked.revoked_by, revoked.revoked_at) == ("alice", clock())
    event = await newest(app, "token.revoke")
    assert event["details"]["token_id"] == issued.record.id
    assert event["details"]["identity"] == "svc"
    assert event["resource_name"] is None
    assert {"event": "token revoked", "token_id": issued.record.id, "log_level": "info"} in logs
    assert issued.token.split("_", 2)[2] not in str(event) + str(logs)


async def test_renewal_extends_by_the_role_ttl_never_past_the_maximum(
    app: Strongroom, clock: ManualClock
) -> None:
    issued = await login_token(app, max_minutes=25)
    start = clock()
    clock.advance(minutes=5)
    renewed = await app.access.renew_token(issued.record.id)
    assert renewed.expires_at == start + timedelta(minutes=15)
    clock.advance(minutes=8)
    renewed = await app.access.renew_token(issued.token)  # a whole token names it too
    assert renewed.expires_at == start + timedelta(minutes=23)
    clock.advance(minutes=9)  # 22 minutes in: ten more would pass the maximum
    renewed = await app.access.renew_token(issued.record.id)
    assert renewed.expires_at == start + timedelta(minutes=25)
    event = await newest(app, "token.renew")
    assert event["details"]["token_id"] == issued.record.id
    assert event["details"]["identity"] == "ci-deploy"
    assert event["result"] == "SUCCESS"
    assert (await app.access.authenticate(issued.token)).identity == "ci-deploy"


async def test_only_a_live_login_token_can_be_renewed(app: Strongroom, clock: ManualClock) -> None:
    by_hand = await app.access.create_token("svc", ttl=timedelta(minutes=10))
    with pytest.raises(ValidationError, match="login"):
        await app.access.renew_token(by_hand.record.id)
    no_ttl = await app.access.create_token(
        "svc", meta={"ttl_seconds": "600"}, max_ttl=timedelta(hours=1)
    )
    with pytest.raises(ValidationError, match="login"):
        await app.access.renew_token(no_ttl.record.id)
    issued = await login_token(app)
    clock.advance(minutes=10)  # expires exactly now
    with pytest.raises(AuthenticationError, match="expired"):
        await app.access.renew_token(issued.record.id)
    assert (await app.access.get_token(issued.record.id)).expires_at == clock()
    other = await login_token(app)
    await app.access.revoke_token(other.record.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        await app.access.renew_token(other.record.id)
    failed = await newest(app, "token.renew")
    assert failed["result"] == "FAILURE"
    assert failed["details"]["identity"] == "ci-deploy"


async def test_revoking_an_identity_revokes_its_live_tokens_only(
    app: Strongroom, clock: ManualClock, logs: list[dict[str, Any]]
) -> None:
    first = await app.access.create_token("svc")
    second = await app.access.create_token("svc")
    already = await app.access.create_token("svc")
    await app.access.revoke_token(already.record.id)
    other = await app.access.create_token("other")
    await app.access.authenticate(first.token)  # cached
    clock.advance(minutes=1)
    with acting_as("alice"):
        ids = await app.access.revoke_identity("svc")
    assert sorted(ids) == sorted([first.record.id, second.record.id])
    for token_id in ids:
        record = await app.access.get_token(token_id)
        assert (record.revoked_by, record.revoked_at) == ("alice", clock())
    assert (await app.access.get_token(already.record.id)).revoked_at == clock() - timedelta(
        minutes=1
    )
    with pytest.raises(AuthenticationError, match="revoked"):
        await app.access.authenticate(first.token)
    assert (await app.access.authenticate(other.token)).identity == "other"
    event = await newest(app, "identity.revoke")
    assert event["details"]["identity"] == "svc"
    assert event["details"]["count"] == 2
    line = next(e for e in logs if e["event"] == "identity revoked")
    assert (line["identity"], line["tokens"]) == ("svc", 2)
    with pytest.raises(ValidationError):
        await app.access.revoke_identity("not an identity!")


async def test_a_session_resumes_with_the_policies_of_now(
    app: Strongroom, clock: ManualClock
) -> None:
    issued = await app.access.create_token("svc", ttl=timedelta(minutes=5))
    assert (await app.access.resume_token(issued.record.id)).policies == ()
    await app.access.attach("svc", "auditor")
    resumed = await app.access.resume_token(issued.record.id)
    assert (resumed.identity, resumed.token_id) == ("svc", issued.record.id)
    assert [p.name for p in resumed.policies] == ["auditor"]
    assert resumed.auth == {"method": "token", "accessor": issued.record.id}
    with pytest.raises(AuthenticationError, match="revoked"):
        await app.access.resume_token("0123456789abcdef")
    clock.advance(minutes=5)  # expires exactly now
    with pytest.raises(AuthenticationError, match="expired"):
        await app.access.resume_token(issued.record.id)
    lasting = await app.access.create_token("svc")
    await app.access.revoke_token(lasting.record.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        await app.access.resume_token(lasting.record.id)


async def test_a_token_is_refused_at_the_instant_it_expires(
    app: Strongroom, clock: ManualClock
) -> None:
    issued = await app.access.create_token("svc", ttl=timedelta(minutes=5))
    clock.advance(minutes=5)
    with pytest.raises(AuthenticationError, match="expired"):
        await app.access.authenticate(issued.token)


async def test_require_passes_what_a_grant_allows_and_records_nothing(app: Strongroom) -> None:
    await app.access.put_policy(Policy.build("reader", ["read:a-*"]))
    issued = await app.access.create_token("svc", policies=["reader"])
    principal = await app.access.authenticate(issued.token)
    before = len(await SecretsAudit(app).get_audit_trail(limit=100))
    await app.access.require(principal, Action.READ, "a-1")
    assert len(await SecretsAudit(app).get_audit_trail(limit=100)) == before
    assert app.metrics.value("unauthorized_attempts_total", reason="forbidden") == 0


@pytest.mark.parametrize(
    ("action", "name", "audited_as", "says"),
    [
        (Action.WRITE, "b-1", "UPDATE", "identity 'svc' may not write secret 'b-1'"),
        (Action.LIST, None, "LIST", "identity 'svc' may not list every secret"),
        (Action.ADMIN, None, "ACCESS_CHANGE", "identity 'svc' may not admin every secret"),
        (Action.REVOKE_APPROVE, "a-1", "REVOKE", "may not revoke-approve secret 'a-1'"),
    ],
)
async def test_a_denial_names_who_what_and_is_audited_as_its_action(
    app: Strongroom, action: Action, name: str | None, audited_as: str, says: str
) -> None:
    await app.access.put_policy(Policy.build("reader", ["read:a-*"]))
    await app.access.put_policy(Policy.build("rotator", ["rotate:z-*"]))
    issued = await app.access.create_token("svc", policies=["reader", "rotator"])
    principal = await app.access.authenticate(issued.token)
    with pytest.raises(PermissionDeniedError) as caught:
        await app.access.require(principal, action, name)
    assert says in str(caught.value)
    # The policies that refused: the caller's own, none of which allows it.
    assert str(caught.value).endswith(": no grant of its policies (reader, rotator) allows it")
    assert caught.value.policies == ("reader", "rotator")
    denied = (await SecretsAudit(app).get_audit_trail(limit=1))[0]
    assert denied["details"]["policies"] == ["reader", "rotator"]
    assert (denied["action"], denied["result"]) == (audited_as, "FAILURE")
    assert denied["details"]["token_id"] == issued.record.id
    assert denied["details"]["denied_action"] == action.value


async def test_break_glass_needs_its_own_grant(app: Strongroom) -> None:
    await app.access.put_policy(Policy.build("asker", ["revoke-request:db-*"]))
    await app.access.put_policy(Policy.build("glass", ["revoke-break-glass:db-*"]))
    asker = await app.access.authenticate(
        (await app.access.create_token("a", policies=["asker"])).token
    )
    glass = await app.access.authenticate(
        (await app.access.create_token("g", policies=["glass"])).token
    )
    await app.access.require_revocation(asker, "db-1", immediate=False)
    with pytest.raises(PermissionDeniedError, match="revoke-break-glass"):
        await app.access.require_revocation(asker, "db-1", immediate=True)
    await app.access.require_revocation(glass, "db-1", immediate=True)
    with pytest.raises(PermissionDeniedError, match="revoke-request"):
        await app.access.require_revocation(glass, "db-1", immediate=False)
    with pytest.raises(PermissionDeniedError):
        await app.access.require_revocation(asker, "web-1", immediate=False)


async def test_access_control_without_a_shared_signal_keeps_its_own(app: Strongroom) -> None:
    """A bare AccessControl (a library user's, or a test's) still authenticates."""
    issued = await app.access.create_token("svc")
    own = AccessControl(app, app.access.store, app.access._key, 1.0)
    assert (await own.authenticate(issued.token)).identity == "svc"
    with pytest.raises(AccessObjectNotFoundError):
        await own.get_token("0123456789abcdef")


async def test_a_denial_of_an_identity_without_policies_says_so(app: Strongroom) -> None:
    issued = await app.access.create_token("bare")
    principal = await app.access.authenticate(issued.token)
    with pytest.raises(PermissionDeniedError) as caught:
        await app.access.require(principal, Action.READ, "a-1")
    assert str(caught.value) == "identity 'bare' may not read secret 'a-1': it holds no policy"
    assert caught.value.policies == ()
