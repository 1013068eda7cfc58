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


async def test_each_break_glass_use_opens_a_review_a_second_identity_acknowledges(
    served: Served,
) -> None:
    await review_roundtrip(served)


async def test_break_glass_reviews_on_postgresql(served_pg: Served) -> None:
    await review_roundtrip(served_pg)


async def review_roundtrip(served: Served) -> None:
    responder = await served.token_for("erin", "revoke-break-glass:app-*")
    reviewer = await served.token_for("ciso", "revoke-approve:app-*")
    outsider = await served.token_for("dana", "read:app-*")
    async with served.admin() as admin:
        assert (await admin.post("/v1/secrets", json={"name": "app-bg", "value": "v"})).is_success
    async with served.client(responder) as erin:
        glass = await erin.post(
            "/v1/revocations", json={"secret_name": "app-bg", **REQUEST, "immediate": True}
        )
        assert glass.status_code == 201, glass.text
        rid = glass.json()["revocation_id"]
        listed = await erin.get("/v1/revocations/reviews")  # the responder sees it open too
        assert [(r["revocation_id"], r["status"]) for r in listed.json()] == [(rid, "OPEN")]
        own = await erin.post(f"/v1/revocations/{rid}/acknowledge", json={"note": "all good"})
        assert own.status_code == 403, own.text  # the grant to break glass is not enough
    async with served.client(outsider) as dana:
        assert (await dana.get("/v1/revocations/reviews")).status_code == 403
    async with served.client(reviewer) as ciso:
        (review,) = (await ciso.get("/v1/revocations/reviews")).json()
        assert (review["used_by"], review["overdue"], review["acknowledged_by"]) == (
            "erin", False, None,
        )  # fmt: skip
        empty = await ciso.post(f"/v1/revocations/{rid}/acknowledge", json={"note": ""})
        assert empty.status_code == 400
        assert empty.json()["error"]["code"] == "bad_parameter"
        assert (await ciso.get("/v1/revocations/reviews")).json()[0]["status"] == "OPEN"
        done = await ciso.post(
            f"/v1/revocations/{rid}/acknowledge", json={"note": "leak confirmed, rotated"}
        )
        assert done.status_code == 200, done.text
        assert (done.json()["status"], done.json()["acknowledged_by"]) == ("ACKNOWLEDGED", "ciso")
        again = await ciso.post(f"/v1/revocations/{rid}/acknowledge", json={"note": "again"})
        assert again.status_code == 409
        assert (await ciso.get("/v1/revocations/reviews")).json() == []
        every = (await ciso.get("/v1/revocations/reviews", params={"all": "true"})).json()
        assert [(r["revocation_id"], r["note"]) for r in every] == [
            (rid, "leak confirmed, rotated")
        ]
    ops = [(r["details"]["operation"], r["result"], r["actor_id"])
           for r in reversed(await trail(served, "app-bg"))
           if str(r["details"].get("operation", "")).startswith("review.")]  # fmt: skip
    assert ops == [
        ("review.open", "SUCCESS", "erin"),
        ("review.acknowledge", "SUCCESS", "ciso"),
        ("review.acknowledge", "FAILURE", "ciso"),
    ]


async def test_a_responder_who_may_also_approve_still_cannot_acknowledge_their_own_use(
    served: Served,
) -> None:
    both = await served.token_for("erin", "revoke-break-glass,revoke-approve:app-*")
    async with served.admin() as admin:
        assert (await admin.post("/v1/secrets", json={"name": "app-own", "value": "v"})).is_success
    async with served.client(both) as erin:
        glass = await erin.post(
            "/v1/revocations", json={"secret_name": "app-own", **REQUEST, "immediate": True}
        )
        rid = glass.json()["revocation_id"]
        own = await erin.post(f"/v1/revocations/{rid}/acknowledge", json={"note": "all good"})
        assert own.status_code == 403, own.text
        assert own.json()["error"]["code"] == "denied"
        assert "nobody acknowledges their own break-glass use" in own.json()["error"]["message"]
        assert (await erin.get("/v1/revocations/reviews")).json()[0]["status"] == "OPEN"
    refused = [r for r in await trail(served, "app-own")
               if r["details"].get("operation") == "review.acknowledge"]  # fmt: skip
    assert [(r["result"], r["actor_id"], r["error_code"]) for r in refused] == [
        ("FAILURE", "erin", "denied")
    ]
