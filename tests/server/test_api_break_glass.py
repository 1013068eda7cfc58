"""Break-glass revocation (``immediate``: executed at once, no approval) needs a grant of its
own, ``revoke-break-glass``. Holding only ``revoke-request`` gets 403, the refusal is audited
as a break-glass attempt, and the secret stays readable; with the grant it is revoked within
the call and the trail says it was break-glass."""

from __future__ import annotations

from typing import Any

from served import Served

from strongroom.core.policy import Action, parse_grant, revocation_grant

REQUEST = {"reason": "key_compromise", "severity": "critical", "description": "in a paste"}


async def trail(served: Served, name: str) -> list[dict[str, Any]]:
    async with served.admin() as admin:
        found = await admin.get("/v1/audit/events", params={"secret": name, "action": "REVOKE"})
    assert found.status_code == 200, found.text
    rows: list[dict[str, Any]] = found.json()
    return rows


def test_break_glass_is_its_own_grant() -> None:
    assert revocation_grant(immediate=True) is Action.REVOKE_BREAK_GLASS
    assert revocation_grant(immediate=False) is Action.REVOKE_REQUEST
    grant = parse_grant("revoke-break-glass:app-*")
    assert grant.permits(Action.REVOKE_BREAK_GLASS, "app-one")
    assert not grant.permits(Action.REVOKE_REQUEST, "app-one")
    assert not parse_grant("revoke-request:app-*").permits(Action.REVOKE_BREAK_GLASS, "app-one")


async def test_revoke_request_alone_cannot_break_glass(served: Served) -> None:
    requester = await served.token_for("dana", "revoke-request,read:app-*")
    async with served.admin() as admin:
        made = await admin.post("/v1/secrets", json={"name": "app-one", "value": "v1"})
        assert made.status_code == 201
    async with served.client(requester) as dana:
        refused = await dana.post(
            "/v1/revocations", json={"secret_name": "app-one", **REQUEST, "immediate": True}
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        assert "revoke-break-glass" in refused.json()["error"]["message"]
        assert (await dana.get("/v1/secrets/app-one")).json()["value"] == "v1"  # not revoked
        assert (await dana.get("/v1/revocations")).json() == []  # nothing was recorded
        # The same grant still asks for a revocation that waits for approval.
        asked = await dana.post("/v1/revocations", json={"secret_name": "app-one", **REQUEST})
        assert asked.status_code == 201, asked.text
        assert asked.json()["status"] == "PENDING"
    denied = [r for r in await trail(served, "app-one") if r["result"] == "FAILURE"]
    assert len(denied) == 1
    assert denied[0]["actor_id"] == "dana"
    assert denied[0]["details"]["denied_action"] == "revoke-break-glass"


async def test_the_break_glass_grant_revokes_at_once_and_is_audited_as_such(
    served: Served,
) -> None:
    responder = await served.token_for("erin", "revoke-break-glass:app-*")
    async with served.admin() as admin:
        made = await admin.post("/v1/secrets", json={"name": "app-two", "value": "v2"})
        assert made.status_code == 201
        policy = await admin.put(
            "/v1/auth/policies/incident",
            json={"grants": [{"actions": ["revoke-break-glass"], "pattern": "app-*"}]},
        )
        assert policy.status_code == 200, policy.text
    async with served.client(responder) as erin:
        glass = await erin.post(
            "/v1/revocations", json={"secret_name": "app-two", **REQUEST, "immediate": True}
        )
        assert glass.status_code == 201, glass.text
        body = glass.json()
        assert (body["status"], body["break_glass"], body["requested_by"]) == (
            "COMPLETED", True, "erin",
        )  # fmt: skip
        # The grant is for break-glass only: it does not ask for approval-bound requests.
        plain = await erin.post("/v1/revocations", json={"secret_name": "app-two", **REQUEST})
        assert plain.status_code == 403
    async with served.admin() as admin:
        assert (await admin.get("/v1/secrets/app-two")).status_code == 403  # revoked
    requested = [
        r for r in await trail(served, "app-two")
        if r["result"] == "SUCCESS" and r["details"].get("operation") == "request"
    ]  # fmt: skip
    assert len(requested) == 1
    assert requested[0]["actor_id"] == "erin"
    assert requested[0]["details"]["break_glass"] is True
