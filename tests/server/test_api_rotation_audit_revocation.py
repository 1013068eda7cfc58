"""Rotation, audit and emergency revocation over real HTTP.

Rotation: schedules with a generator or the secret's registered callback, status, force,
rotate now, history,
compliance, removal. Audit: the trail with its filters, the summary, threats, the chain check,
and who may read them. Revocation: requests whose requester is always the caller, approval by
someone else (never oneself), rejection, cancellation, break-glass, and who may do which.
"""

from __future__ import annotations

from typing import Any

import httpx
from served import Served

from strongroom import SecretsAudit, SecretsRotation

REQUEST = {"reason": "key_compromise", "severity": "high", "description": "seen in a paste"}


def code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


async def create(c: httpx.AsyncClient, name: str, value: Any = "initial") -> dict[str, Any]:
    response = await c.post("/v1/secrets", json={"name": name, "value": value})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# -- rotation ------------------------------------------------------------------------------------


async def check_compliance_and_removal(c: httpx.AsyncClient, value: str) -> None:
    report = await c.get("/v1/rotation/compliance")
    assert report.status_code == 200, report.text
    entries = {e["name"]: e for e in report.json()["entries"]}
    assert entries["app-rot"]["policy"] == "configured"
    assert entries["app-rot"]["overdue"] is False
    assert entries["app-plain"]["policy"] == "default"
    assert report.json()["without_policy"] == ["app-plain"]
    assert report.json()["compliant"] == 1
    assert report.json()["secrets"] == 2

    removed = await c.delete("/v1/rotation/app-rot")
    assert removed.status_code == 204
    gone = await c.get("/v1/rotation/app-rot")
    assert (gone.status_code, code(gone)) == (404, "rotation_not_configured")
    assert (await c.delete("/v1/rotation/app-rot")).status_code == 404
    assert (await c.post("/v1/rotation/app-rot/rotate")).status_code == 404
    assert (await c.get("/v1/rotation")).json() == []
    # The secret itself is untouched by removing its schedule.
    assert (await c.get("/v1/secrets/app-rot")).json()["value"] == value


async def test_rotation_endpoints(served: Served) -> None:
    async with served.admin() as c:
        first = await create(c, "app-rot")
        await create(c, "app-plain")
        config = await c.put(
            "/v1/rotation/app-rot",
            json={"generator": "password", "generator_options": {"length": 40},
                  "rotation_days": 30, "description": "nightly", "grace_period_hours": 0},
        )  # fmt: skip
        assert config.status_code == 200, config.text
        status = config.json()
        assert (status["name"], status["generator"], status["rotation_days"]) == (
            "app-rot", "password", 30,
        )  # fmt: skip
        assert (status["enabled"], status["overdue"], status["force_on_next"]) == (
            True, False, False,
        )  # fmt: skip
        assert status["description"] == "nightly"
        assert status["days_until_rotation"] in (29, 30)

        listed = await c.get("/v1/rotation")
        assert [r["name"] for r in listed.json()] == ["app-rot"]
        got = await c.get("/v1/rotation/app-rot")
        assert got.status_code == 200
        assert got.json()["rotation_days"] == 30

        forced = await c.post("/v1/rotation/app-rot/force")
        assert forced.status_code == 200, forced.text
        assert forced.json()["force_on_next"] is True
        assert forced.json()["overdue"] is True

        rotated = await c.post("/v1/rotation/app-rot/rotate")
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["rotated"] is True
        new_version = rotated.json()["version"]
        assert new_version != first["version"]
        read = (await c.get("/v1/secrets/app-rot")).json()
        assert read["version"] == new_version
        assert read["value"] != "initial"
        assert len(read["value"]) == 40
        after = (await c.get("/v1/rotation/app-rot")).json()
        assert (after["force_on_next"], after["last_result"], after["attempts"]) == (
            False, "SUCCESS", 0,
        )  # fmt: skip

        history = await c.get("/v1/rotation/app-rot/history")
        assert history.status_code == 200
        assert [(h["action"], h["result"]) for h in history.json()] == [("ROTATE", "SUCCESS")]
        assert history.json()[0]["details"]["version"] == new_version
        assert read["value"] not in history.text

        await check_compliance_and_removal(c, read["value"])


async def test_rotation_with_the_registered_callback_and_bad_configurations(served: Served) -> None:
    calls: list[str] = []

    def issue(name: str) -> str:
        calls.append(name)
        return f"issued-for-{name}"

    async with served.admin() as c:
        await create(c, "app-cb")
        unknown = await c.put("/v1/rotation/app-cb", json={"use_registered_callback": True})
        assert (unknown.status_code, code(unknown)) == (400, "bad_parameter")
        assert "app-cb" in unknown.json()["error"]["message"]
        neither = await c.put("/v1/rotation/app-cb", json={})
        assert (neither.status_code, code(neither)) == (400, "bad_parameter")
        # Callbacks are code, attached in the serving process to the secret they rotate.
        await SecretsRotation(served.app).register_callback("app-cb", issue)
        both = await c.put(
            "/v1/rotation/app-cb",
            json={"use_registered_callback": True, "generator": "password"},
        )
        assert (both.status_code, code(both)) == (400, "bad_parameter")
        for bad in (
            {"generator": "dice"},
            {"generator": "password", "generator_options": {"length": 3}},
            {"generator": "password", "rotation_days": 0},
            {"generator": "password", "rotator": "no-such-rotator"},
            {"generator": "password", "colour": "blue"},
        ):
            refused = await c.put("/v1/rotation/app-cb", json=bad)
            assert (refused.status_code, code(refused)) == (400, "bad_parameter"), bad
        assert (await c.get("/v1/rotation")).json() == []

        config = await c.put("/v1/rotation/app-cb", json={"use_registered_callback": True})
        assert config.status_code == 200, config.text
        rotated = await c.post("/v1/rotation/app-cb/rotate")
        assert rotated.json()["rotated"] is True
        assert calls == ["app-cb"]
        assert (await c.get("/v1/secrets/app-cb")).json()["value"] == "issued-for-app-cb"


async def test_rotation_needs_the_rotate_grant(served: Served) -> None:
    async with served.admin() as c:
        for name in ("app-r", "other-r"):
            await create(c, name)
            assert (await c.put(f"/v1/rotation/{name}", json={"generator": "api_key"})).is_success
    rotator = await served.token_for("rotator", "rotate,list:app-*")
    async with served.client(rotator) as c:
        assert [r["name"] for r in (await c.get("/v1/rotation")).json()] == ["app-r"]
        assert (await c.post("/v1/rotation/app-r/rotate")).json()["rotated"] is True
        for method, path in (
            ("POST", "/v1/rotation/other-r/rotate"),
            ("POST", "/v1/rotation/other-r/force"),
            ("DELETE", "/v1/rotation/other-r"),
            ("GET", "/v1/rotation/app-r/history"),  # history is audit-read
            ("GET", "/v1/rotation/compliance"),
            ("POST", "/v1/rotation/check"),
        ):
            refused = await c.request(method, path)
            assert (refused.status_code, code(refused)) == (403, "forbidden"), path
    async with served.admin() as c:
        assert len((await c.get("/v1/secrets/other-r/versions")).json()) == 1
        assert (await c.get("/v1/rotation/other-r")).status_code == 200


async def test_a_schedule_cannot_borrow_another_secrets_callback(served: Served) -> None:
    calls: list[str] = []

    def rotate_database_password(name: str) -> str:
        calls.append(name)  # e.g. ALTER ROLE main_db PASSWORD ... whatever name it is given
        return "fresh-db-main-password"

    await SecretsRotation(served.app).register_callback("db-main", rotate_database_password)
    async with served.admin() as c:
        await create(c, "db-main", "db-main-password")
        await create(c, "app-x")
    team = await served.token_for("app-team", "rotate,read:app-*")
    async with served.client(team) as c:
        borrowed = await c.put("/v1/rotation/app-x", json={"callback": "db-main"})
        assert borrowed.status_code in (400, 403), borrowed.text
        own = await c.put("/v1/rotation/app-x", json={"use_registered_callback": True})
        assert own.status_code == 400, own.text  # app-x has no callback of its own
        await c.post("/v1/rotation/app-x/rotate")
        assert (await c.get("/v1/secrets/app-x")).json()["value"] != "fresh-db-main-password"
    assert calls == []


async def test_rotation_schedule_changes_are_audited(served: Served) -> None:
    audit = SecretsAudit(served.app)
    async with served.admin() as c:
        await create(c, "app-sched")
        steps = [
            ("PUT", "/v1/rotation/app-sched", {"generator": "password"}),
            ("POST", "/v1/rotation/app-sched/force", None),
            ("DELETE", "/v1/rotation/app-sched", None),
        ]
        for method, path, body in steps:
            before = await audit.count_events("app-sched", actor_id="test-admin")
            response = await c.request(method, path, json=body)
            assert response.is_success, response.text
            after = await audit.count_events("app-sched", actor_id="test-admin")
            assert after > before, f"{method} {path} left no audit event"


# -- audit ---------------------------------------------------------------------------------------


async def test_audit_trail_filters_summary_threats_and_verify(served: Served) -> None:
    reader = await served.token_for("audit-reader", "read:app-*")
    async with served.admin() as c:
        await create(c, "app-aud")
        await create(c, "app-other")
        for _ in range(2):
            assert (await c.get("/v1/secrets/app-aud")).status_code == 200
        assert (await c.get("/v1/secrets/app-nope")).status_code == 404
    async with served.client(reader) as c:
        assert (await c.get("/v1/secrets/app-aud")).status_code == 200

    async with served.admin() as c:
        trail = await c.get("/v1/audit/events", params={"secret": "app-aud"})
        assert trail.status_code == 200, trail.text
        rows = trail.json()
        assert [r["action"] for r in rows] == ["READ", "READ", "READ", "CREATE"]  # newest first
        assert {r["resource_name"] for r in rows} == {"app-aud"}
        ids = [r["id"] for r in rows]
        assert ids == sorted(ids, reverse=True)

        reads = await c.get("/v1/audit/events", params={"action": "READ", "limit": 1000})
        assert {r["action"] for r in reads.json()} == {"READ"}
        assert len(reads.json()) == 4  # three of app-aud, the missing one
        failed = await c.get("/v1/audit/events", params={"result": "FAILURE"})
        assert [(r["resource_name"], r["error_code"]) for r in failed.json()] == [
            ("app-nope", "not_found")
        ]
        by_actor = await c.get("/v1/audit/events", params={"actor": "audit-reader"})
        assert [(r["action"], r["resource_name"]) for r in by_actor.json()] == [("READ", "app-aud")]
        one = await c.get("/v1/audit/events", params={"limit": 1})
        assert len(one.json()) == 1
        second = await c.get("/v1/audit/events", params={"limit": 1, "offset": 1})
        assert second.json()[0]["id"] == one.json()[0]["id"] - 1
        for bad in ({"action": "EXPLODE"}, {"limit": 0}, {"secret": "bad_name"}):
            refused = await c.get("/v1/audit/events", params=bad)
            assert (refused.status_code, code(refused)) == (400, "bad_parameter"), bad

        summary = await c.get("/v1/audit/summary", params={"secret": "app-aud"})
        assert summary.status_code == 200, summary.text
        body = summary.json()
        assert body["total_events"] == 4
        assert body["by_action"] == {"CREATE": 1, "READ": 3}
        assert body["by_result"] == {"SUCCESS": 4}
        assert body["by_actor"] == {"test-admin": 3, "audit-reader": 1}
        assert (body["unique_actors"], body["unique_ips"], body["failure_rate"]) == (2, 1, 0.0)

        quiet = await c.get("/v1/audit/threats", params={"failure_threshold": 3})
        assert quiet.status_code == 200, quiet.text
        assert quiet.json()["threats_detected"] == 0
        assert quiet.json()["failure_threshold"] == 3

        verified = await c.post("/v1/audit/verify")
        assert verified.status_code == 200, verified.text
        check = verified.json()
        assert (check["valid"], check["broken_at"], check["reason"]) == (True, None, None)
        everything = await c.get("/v1/audit/events", params={"limit": 1000})
        assert check["checked"] == len(everything.json())
        assert check["last_id"] == everything.json()[0]["id"]


async def test_audit_reads_are_scoped_by_the_audit_read_grant(served: Served) -> None:
    async with served.admin() as c:
        await create(c, "app-s")
        await create(c, "other-s")
    scoped = await served.token_for("team-auditor", "audit-read:app-*")
    plain = await served.token_for("plain", "read,list,write:*")
    async with served.client(scoped) as c:
        own = await c.get("/v1/audit/events", params={"secret": "app-s"})
        assert own.status_code == 200
        assert [r["resource_name"] for r in own.json()] == ["app-s"]
        assert (await c.get("/v1/audit/summary", params={"secret": "app-s"})).status_code == 200
        for path, params in (
            ("/v1/audit/events", {"secret": "other-s"}),
            ("/v1/audit/events", {}),  # the whole trail needs audit-read on "*"
            ("/v1/audit/summary", {}),
            ("/v1/audit/threats", {}),
        ):
            refused = await c.get(path, params=params)
            assert (refused.status_code, code(refused)) == (403, "forbidden"), (path, params)
        assert (await c.post("/v1/audit/verify")).status_code == 403
    async with served.client(plain) as c:
        assert (await c.get("/v1/audit/events", params={"secret": "app-s"})).status_code == 403
        assert (await c.post("/v1/audit/verify")).status_code == 403


# -- revocation ----------------------------------------------------------------------------------


async def revocation_tokens(served: Served) -> dict[str, str]:
    return {
        "alice": await served.token_for("alice", "revoke-request,revoke-approve:app-*"),
        "bob": await served.token_for("bob", "revoke-approve:app-*"),
        "carol": await served.token_for("carol", "revoke-request,revoke-break-glass:app-*"),
    }


async def test_revocation_request_then_approval_by_someone_else(served: Served) -> None:
    tokens = await revocation_tokens(served)
    async with served.admin() as admin:
        await create(admin, "app-key", "still-good")
    async with served.client(tokens["alice"]) as alice:
        forged = await alice.post(
            "/v1/revocations", json={"secret_name": "app-key", "requested_by": "mallory", **REQUEST}
        )
        assert (forged.status_code, code(forged)) == (400, "bad_parameter")
        assert (await alice.get("/v1/revocations")).json() == []

        created = await alice.post("/v1/revocations", json={"secret_name": "app-key", **REQUEST})
        assert created.status_code == 201, created.text
        req = created.json()
        rid = req["revocation_id"]
        assert (req["status"], req["requested_by"], req["severity"]) == (
            "PENDING", "alice", "high",
        )  # fmt: skip
        assert (req["required_approvals"], req["immediate"], req["revoked_at"]) == (1, False, None)
        assert req["description"] == "seen in a paste"

        status = await alice.get(f"/v1/revocations/{rid}")
        assert (status.status_code, status.json()["status"]) == (200, "PENDING")
        assert [r["revocation_id"] for r in (await alice.get("/v1/revocations")).json()] == [rid]
        pending = await alice.get("/v1/revocations", params={"pending": "true"})
        assert [r["revocation_id"] for r in pending.json()] == [rid]
        for_secret = await alice.get(
            "/v1/revocations", params={"secret": "app-key", "pending": "true"}
        )
        assert [r["revocation_id"] for r in for_secret.json()] == [rid]

        own = await alice.post(f"/v1/revocations/{rid}/approve")
        assert (own.status_code, code(own)) == (403, "denied")  # separation of duties
    async with served.admin() as admin:
        assert (await admin.get("/v1/secrets/app-key")).json()["value"] == "still-good"
        self_approval = await admin.get(
            "/v1/audit/events", params={"actor": "alice", "result": "FAILURE"}
        )
        assert [r["error_code"] for r in self_approval.json()] == ["denied"]
    async with served.client(tokens["carol"]) as carol:
        no_grant = await carol.post(f"/v1/revocations/{rid}/approve")
        assert (no_grant.status_code, code(no_grant)) == (403, "forbidden")
        assert (await carol.get(f"/v1/revocations/{rid}")).json()["status"] == "PENDING"

    async with served.client(tokens["bob"]) as bob:
        assert (await bob.get(f"/v1/revocations/{rid}")).status_code == 200
        approved = await bob.post(f"/v1/revocations/{rid}/approve")
        assert approved.status_code == 200, approved.text
        done = approved.json()
        assert (done["status"], done["approved_by"], done["versions_revoked"]) == (
            "COMPLETED", "bob", 1,
        )  # fmt: skip
        assert [a["by"] for a in done["approvals"]] == ["bob"]
        assert done["revoked_at"] is not None
        again = await bob.post(f"/v1/revocations/{rid}/approve")
        assert (again.status_code, code(again)) == (409, "revocation_state")
        assert (await bob.get("/v1/revocations", params={"pending": "true"})).json() == []
    async with served.admin() as admin:
        revoked = await admin.get("/v1/secrets/app-key")
        assert (revoked.status_code, code(revoked)) == (403, "revoked")
        assert "still-good" not in revoked.text
        versions = (await admin.get("/v1/secrets/app-key/versions")).json()
        assert [v["revoked"] for v in versions] == [True]


async def test_reject_cancel_and_break_glass(served: Served) -> None:
    tokens = await revocation_tokens(served)
    async with served.admin() as admin:
        for name in ("app-one", "app-two", "app-three"):
            await create(admin, name, f"{name}-value")
        await create(admin, "other-one")
    async with served.client(tokens["carol"]) as carol, served.client(tokens["bob"]) as bob:
        first = await carol.post("/v1/revocations", json={"secret_name": "app-one", **REQUEST})
        rid1 = first.json()["revocation_id"]
        rejected = await bob.post(f"/v1/revocations/{rid1}/reject", json={"reason": "false alarm"})
        assert rejected.status_code == 200, rejected.text
        assert (rejected.json()["status"], rejected.json()["closed_by"]) == ("REJECTED", "bob")
        late = await bob.post(f"/v1/revocations/{rid1}/approve")
        assert (late.status_code, code(late)) == (409, "revocation_state")

        second = await carol.post("/v1/revocations", json={"secret_name": "app-two", **REQUEST})
        rid2 = second.json()["revocation_id"]
        # Cancelling is the requester's side: an approver without revoke-request may not.
        refused = await bob.post(f"/v1/revocations/{rid2}/cancel")
        assert (refused.status_code, code(refused)) == (403, "forbidden")
        cancelled = await carol.post(f"/v1/revocations/{rid2}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert (cancelled.json()["status"], cancelled.json()["closed_by"]) == (
            "CANCELLED", "carol",
        )  # fmt: skip
        # Carol cannot reject (that is approval work), and nothing outside app-* is hers.
        no_reject = await carol.post(f"/v1/revocations/{rid2}/reject")
        assert (no_reject.status_code, code(no_reject)) == (403, "forbidden")
        outside = await carol.post("/v1/revocations", json={"secret_name": "other-one", **REQUEST})
        assert (outside.status_code, code(outside)) == (403, "forbidden")
        missing = await carol.post("/v1/revocations", json={"secret_name": "app-none", **REQUEST})
        assert missing.status_code == 404
        assert (await carol.get("/v1/revocations/999999")).status_code == 404

        glass = await carol.post(
            "/v1/revocations",
            json={"secret_name": "app-three", **REQUEST, "severity": "critical",
                  "immediate": True},
        )  # fmt: skip
        assert glass.status_code == 201, glass.text
        body = glass.json()
        assert (body["status"], body["break_glass"], body["immediate"]) == (
            "COMPLETED", True, True,
        )  # fmt: skip
        assert (body["requested_by"], body["approvals"]) == ("carol", [])

        history = await carol.get("/v1/revocations")
        assert [(r["secret_name"], r["status"]) for r in history.json()] == [
            ("app-three", "COMPLETED"), ("app-two", "CANCELLED"), ("app-one", "REJECTED"),
        ]  # fmt: skip
        assert (await carol.get("/v1/revocations", params={"pending": "true"})).json() == []

    async with served.admin() as admin:
        for name in ("app-one", "app-two"):
            assert (await admin.get(f"/v1/secrets/{name}")).json()["value"] == f"{name}-value"
        revoked = await admin.get("/v1/secrets/app-three")
        assert (revoked.status_code, code(revoked)) == (403, "revoked")
        others = await admin.get(
            "/v1/audit/events", params={"secret": "app-three", "action": "REVOKE"}
        )
        assert {r["actor_id"] for r in others.json()} == {"carol"}


async def test_revocations_are_visible_only_within_the_callers_grants(served: Served) -> None:
    async with served.admin() as admin:
        await create(admin, "app-v")
        await create(admin, "other-v")
        mine = await admin.post("/v1/revocations", json={"secret_name": "app-v", **REQUEST})
        theirs = await admin.post("/v1/revocations", json={"secret_name": "other-v", **REQUEST})
        assert mine.json()["requested_by"] == "test-admin"
    scoped = await served.token_for("scoped", "revoke-request:app-*")
    nobody = await served.token_for("nobody", "read:*")
    async with served.client(scoped) as c:
        assert [r["secret_name"] for r in (await c.get("/v1/revocations")).json()] == ["app-v"]
        pending = await c.get("/v1/revocations", params={"pending": "true"})
        assert [r["secret_name"] for r in pending.json()] == ["app-v"]
        hidden = await c.get(f"/v1/revocations/{theirs.json()['revocation_id']}")
        assert (hidden.status_code, code(hidden)) == (403, "forbidden")
        assert (await c.get("/v1/revocations", params={"secret": "other-v"})).status_code == 403
    async with served.client(nobody) as c:
        assert (await c.get("/v1/revocations")).status_code == 403
        refused = await c.post("/v1/revocations", json={"secret_name": "app-v", **REQUEST})
        assert (refused.status_code, code(refused)) == (403, "forbidden")
