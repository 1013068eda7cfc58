"""Who may call the service, over real HTTP: authentication (401), policies (403), the token,
policy and identity endpoints, and the per-address limit on failed authentication (429).

Every refusal is checked where it must leave a trace: the audit trail (read back over HTTP),
the Prometheus counters and threat detection.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from served import Served, serve, server_settings

from strongroom import Strongroom
from strongroom.core.policy import Action

CHALLENGE = 'Bearer realm="strongroom"'
USER_AGENT = "probe/2.1 (access tests)"


def code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


async def metric_samples(served: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (sample name, sorted labels)."""
    async with served.admin() as c:
        response = await c.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def audit_events(served: Served, **filters: Any) -> list[dict[str, Any]]:
    async with served.admin() as c:
        response = await c.get("/v1/audit/events", params={"limit": 1000, **filters})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


@asynccontextmanager
async def custom_server(tmp_path: Path, **changes: Any) -> AsyncIterator[Served]:
    app = await Strongroom.open(server_settings("sqlite", tmp_path, **changes))
    try:
        async with serve(app) as running:
            yield running
    finally:
        await app.close()


# -- authentication --------------------------------------------------------------------------


async def test_every_kind_of_bad_token_is_401_audited_and_counted(served: Served) -> None:
    expiring = await served.app.access.create_token("short-lived", ttl=timedelta(seconds=1))
    expires_by = time.monotonic() + 1.0
    revocable = await served.token_for("leaver", "read:*")
    async with served.client(expiring.token) as c:
        assert (await c.get("/v1/auth/self")).status_code == 200  # valid (and cached) for now
    async with served.client(revocable) as c:
        assert (await c.get("/v1/auth/self")).status_code == 200
    revocable_id = revocable.split("_")[1]
    async with served.admin() as c:
        revoked = await c.delete(f"/v1/auth/tokens/{revocable_id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert revoked.json()["revoked_by"] == "test-admin"

    unknown = f"srt_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    malformed = "not-a-token-" + secrets.token_hex(8)
    cases: dict[str, dict[str, str]] = {
        "none": {},
        "not bearer": {"Authorization": f"Basic {secrets.token_hex(8)}"},
        "malformed": {"Authorization": f"Bearer {malformed}"},
        "unknown": {"Authorization": f"Bearer {unknown}"},
        "revoked": {"Authorization": f"Bearer {revocable}"},  # at once: no cache delay
    }
    await asyncio.sleep(max(0.0, expires_by - time.monotonic()) + 0.05)
    cases["expired"] = {"Authorization": f"Bearer {expiring.token}"}

    async with served.client(headers={"User-Agent": USER_AGENT}) as c:
        for label, headers in cases.items():
            response = await c.get("/v1/secrets", headers=headers)
            assert response.status_code == 401, label
            assert code(response) == "unauthorized", label
            assert response.headers["www-authenticate"] == CHALLENGE, label
            sent = headers.get("Authorization", "").partition(" ")[2]
            if sent:
                assert sent not in response.text, label
                assert sent[-20:] not in response.text, label
    messages = {"revoked": "revoked", "expired": "expired"}
    async with served.client(revocable) as c:
        assert messages["revoked"] in (await c.get("/v1/secrets")).json()["error"]["message"]
    async with served.client(expiring.token) as c:
        assert messages["expired"] in (await c.get("/v1/secrets")).json()["error"]["message"]

    refusals = await audit_events(served, action="AUTHENTICATE")
    assert len(refusals) == len(cases) + 2
    ours = [r for r in refusals if r["actor_user_agent"] == USER_AGENT]
    assert len(ours) == len(cases)
    for row in refusals:
        assert row["result"] == "FAILURE"
        assert row["error_code"] == "unauthorized"
        assert row["actor_id"] == "anonymous"
        assert row["actor_ip"] == "127.0.0.1"
        assert row["details"]["path"] == "/v1/secrets"
        assert row["details"]["method"] == "GET"
        for token in (revocable, expiring.token, unknown, malformed):
            assert token not in str(row)

    samples = await metric_samples(served)
    unauthorized = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "strongroom_unauthorized_attempts_total"
    }
    assert unauthorized == {(("reason", "no_token"),): 1.0, (("reason", "bad_token"),): 7.0}
    assert (
        samples[
            ("strongroom_operations_total", (("action", "AUTHENTICATE"), ("result", "FAILURE")))
        ]
        == len(cases) + 2
    )


async def test_a_token_revoked_by_its_owner_stops_at_once(served: Served) -> None:
    token = await served.token_for("self-revoker", "read:*")
    other = await served.token_for("bystander", "read:*")
    async with served.client(token) as c:
        me = await c.get("/v1/auth/self")
        assert me.status_code == 200
        # Nobody revokes another identity's token without admin...
        refused = await c.delete(f"/v1/auth/tokens/{other.split('_')[1]}")
        assert (refused.status_code, code(refused)) == (403, "forbidden")
        # ...but anyone may revoke their own.
        own = await c.delete(f"/v1/auth/tokens/{me.json()['token_id']}")
        assert own.status_code == 200, own.text
        assert own.json()["revoked_by"] == "self-revoker"
        assert (await c.get("/v1/auth/self")).status_code == 401
    async with served.client(other) as c:
        assert (await c.get("/v1/auth/self")).status_code == 200


# -- authorization -----------------------------------------------------------------------------


async def test_requests_outside_policy_are_403_audited_and_detected(served: Served) -> None:
    async with served.admin() as admin:
        for name in ("app-x", "other-y"):
            created = await admin.post("/v1/secrets", json={"name": name, "value": f"{name}-v"})
            assert created.status_code == 201
    reader = await served.token_for("reader-1", "read:app-*")
    attempts = [
        ("GET", "/v1/secrets/other-y", None, "read", "READ", "other-y"),
        ("PUT", "/v1/secrets/app-x", {"value": "overwritten"}, "write", "UPDATE", "app-x"),
        ("DELETE", "/v1/secrets/app-x", None, "delete", "DELETE", "app-x"),
        ("POST", "/v1/auth/tokens", {"identity": "reader-1", "policies": ["admin"]}, "admin",
         "ACCESS_CHANGE", None),
        ("GET", "/v1/auth/policies", None, "admin", "ACCESS_CHANGE", None),
        ("PUT", "/v1/auth/identities/reader-1/policies/admin", None, "admin", "ACCESS_CHANGE",
         None),
    ]  # fmt: skip
    async with served.client(reader, headers={"User-Agent": USER_AGENT}) as c:
        assert (await c.get("/v1/secrets/app-x")).json()["value"] == "app-x-v"
        for method, path, body, *_ in attempts:
            response = await c.request(method, path, json=body)
            assert (response.status_code, code(response)) == (403, "forbidden"), path
        me = await c.get("/v1/auth/self")
        assert me.json()["policies"] != ["admin"]  # the refused self-promotion changed nothing
    async with served.admin() as admin:
        assert (await admin.get("/v1/secrets/app-x")).json()["value"] == "app-x-v"
        assert len((await admin.get("/v1/secrets/app-x/versions")).json()) == 1

    denied = list(reversed(await audit_events(served, actor="reader-1", result="FAILURE")))
    assert len(denied) == len(attempts)
    for row, (_, path, _, action, audit_action, resource) in zip(denied, attempts, strict=True):
        assert row["error_code"] == "forbidden", path
        assert row["details"]["denied_action"] == action, path
        assert row["action"] == audit_action, path
        assert row["resource_name"] == resource, path
        assert (row["actor_ip"], row["actor_user_agent"]) == ("127.0.0.1", USER_AGENT)

    async with served.admin() as admin:
        found = await admin.get("/v1/audit/threats", params={"failure_threshold": 3})
    assert found.status_code == 200, found.text
    bursts = [
        t
        for t in found.json()["threats"]
        if t["type"] == "failure_burst_actor" and t["actor_id"] == "reader-1"
    ]
    assert len(bursts) == 1, found.json()
    assert bursts[0]["count"] == len(attempts)
    assert bursts[0]["severity"] == "high"  # 6 failures: twice the threshold of 3
    samples = await metric_samples(served)
    assert samples[("strongroom_unauthorized_attempts_total", (("reason", "forbidden"),))] == len(
        attempts
    )


# -- tokens, policies, identities ---------------------------------------------------------------


async def test_token_endpoints_show_a_token_once(served: Served) -> None:
    async with served.admin() as admin:
        policy = await admin.put(
            "/v1/auth/policies/svc-read",
            json={"grants": [{"actions": ["read", "list"], "pattern": "svc-*"}]},
        )
        assert policy.status_code == 200, policy.text
        issued = await admin.post(
            "/v1/auth/tokens",
            json={"identity": "svc-a", "policies": ["svc-read"], "description": "ci job",
                  "ttl_seconds": 3600},
        )  # fmt: skip
        assert issued.status_code == 201, issued.text
        body = issued.json()
        token, token_id = body["token"], body["id"]
        assert token.startswith(f"srt_{token_id}_")
        assert (body["identity"], body["description"], body["created_by"]) == (
            "svc-a", "ci job", "test-admin",
        )  # fmt: skip
        assert body["expires_at"] is not None
        assert body["revoked_at"] is None
        token_secret = token.split("_", 2)[2]  # the secret part may hold "_" itself

        listed = await admin.get("/v1/auth/tokens")
        assert listed.status_code == 200
        assert token_id in {t["id"] for t in listed.json()}
        only = await admin.get("/v1/auth/tokens", params={"identity": "svc-a"})
        assert [t["id"] for t in only.json()] == [token_id]
        for response in (listed, only):
            assert token_secret not in response.text
            for row in response.json():
                assert set(row) == {
                    "id", "identity", "description", "created_by", "created_at", "expires_at",
                    "revoked_at", "revoked_by", "auth_method", "role", "max_expires_at",
                }  # fmt: skip
                assert (row["auth_method"], row["role"]) == ("token", None)

    async with served.client(token) as c:
        me = await c.get("/v1/auth/self")
        assert me.json() == {"identity": "svc-a", "token_id": token_id, "policies": ["svc-read"]}
        assert (await c.get("/v1/auth/tokens")).status_code == 403

    async with served.admin() as admin:
        revoked = await admin.delete(f"/v1/auth/tokens/{token_id}")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_by"] == "test-admin"
        again = await admin.delete(f"/v1/auth/tokens/{token_id}")  # idempotent
        assert again.status_code == 200
        assert (await admin.delete(f"/v1/auth/tokens/{'0' * 16}")).status_code == 404
        bad = await admin.delete("/v1/auth/tokens/not-an-id")
        assert (bad.status_code, code(bad)) == (400, "bad_parameter")
        unknown_policy = await admin.post(
            "/v1/auth/tokens", json={"identity": "svc-b", "policies": ["no-such-policy"]}
        )
        assert unknown_policy.status_code == 404
        assert (await admin.get("/v1/auth/tokens", params={"identity": "svc-b"})).json() == []
        assert "svc-b" not in {
            i["identity"] for i in (await admin.get("/v1/auth/identities")).json()
        }
        extra = await admin.post("/v1/auth/tokens", json={"identity": "svc-c", "secret": "x"})
        assert extra.status_code == 400
    async with served.client(token) as c:
        assert (await c.get("/v1/auth/self")).status_code == 401


async def test_policy_and_identity_endpoints(served: Served) -> None:
    grants = [{"actions": ["list", "read"], "pattern": "app-*"}]
    async with served.admin() as admin:
        put = await admin.put(
            "/v1/auth/policies/app-readers", json={"description": "readers", "grants": grants}
        )
        assert put.status_code == 200, put.text
        assert put.json() == {"name": "app-readers", "description": "readers", "grants": grants}
        got = await admin.get("/v1/auth/policies/app-readers")
        assert got.json() == put.json()
        listed = {p["name"] for p in (await admin.get("/v1/auth/policies")).json()}
        assert {"admin", "auditor", "app-readers"} <= listed

        for builtin in ("admin", "auditor"):
            changed = await admin.put(f"/v1/auth/policies/{builtin}", json={"grants": grants})
            assert (changed.status_code, code(changed)) == (400, "bad_parameter")
            deleted = await admin.delete(f"/v1/auth/policies/{builtin}")
            assert (deleted.status_code, code(deleted)) == (400, "bad_parameter")
        admin_policy = await admin.get("/v1/auth/policies/admin")
        assert admin_policy.json()["grants"][0]["pattern"] == "*"
        every_action = admin_policy.json()["grants"][0]["actions"]
        assert sorted(every_action) == sorted(a.value for a in Action)  # admin holds them all
        assert "revoke-break-glass" in every_action

        bad_action = await admin.put(
            "/v1/auth/policies/broken", json={"grants": [{"actions": ["sudo"], "pattern": "*"}]}
        )
        assert bad_action.status_code == 400
        assert (await admin.get("/v1/auth/policies/broken")).status_code == 404

        attached = await admin.put("/v1/auth/identities/ops-bob/policies/app-readers")
        assert (attached.status_code, attached.json()) == (200, ["app-readers"])
        found = {i["identity"]: i for i in (await admin.get("/v1/auth/identities")).json()}
        assert found["ops-bob"] == {"identity": "ops-bob", "policies": ["app-readers"], "tokens": 0}
        assert found["test-admin"]["policies"] == ["admin"]
        missing = await admin.put("/v1/auth/identities/ops-bob/policies/no-such")
        assert missing.status_code == 404
        detached = await admin.delete("/v1/auth/identities/ops-bob/policies/app-readers")
        assert (detached.status_code, detached.json()) == (200, [])
        twice = await admin.delete("/v1/auth/identities/ops-bob/policies/app-readers")
        assert twice.status_code == 404

        assert (await admin.delete("/v1/auth/policies/app-readers")).status_code == 204
        assert (await admin.get("/v1/auth/policies/app-readers")).status_code == 404
        assert (await admin.delete("/v1/auth/policies/app-readers")).status_code == 404


async def test_policy_changes_reach_existing_tokens_at_once(tmp_path: Path) -> None:
    # A long cache: only the cache being dropped on change can make the new grants visible.
    async with custom_server(tmp_path, auth_cache_seconds=60) as served:
        async with served.admin() as admin:
            for name in ("app-a", "other-b"):
                assert (
                    await admin.post("/v1/secrets", json={"name": name, "value": "v"})
                ).is_success
            put = await admin.put(
                "/v1/auth/policies/dev",
                json={"grants": [{"actions": ["read"], "pattern": "app-*"}]},
            )
            assert put.status_code == 200
            issued = await admin.post(
                "/v1/auth/tokens", json={"identity": "dev-1", "policies": ["dev"]}
            )
            token = issued.json()["token"]
        async with served.client(token) as dev, served.admin() as admin:
            assert (await dev.get("/v1/secrets/app-a")).status_code == 200
            assert (await dev.get("/v1/secrets/other-b")).status_code == 403

            narrowed = {"grants": [{"actions": ["read"], "pattern": "other-*"}]}
            assert (await admin.put("/v1/auth/policies/dev", json=narrowed)).status_code == 200
            assert (await dev.get("/v1/secrets/app-a")).status_code == 403
            assert (await dev.get("/v1/secrets/other-b")).status_code == 200

            assert (await admin.delete("/v1/auth/identities/dev-1/policies/dev")).status_code == 200
            assert (await dev.get("/v1/secrets/other-b")).status_code == 403
            assert (await dev.get("/v1/auth/self")).json()["policies"] == []

            assert (
                await admin.put("/v1/auth/identities/dev-1/policies/auditor")
            ).status_code == 200
            assert (await dev.get("/v1/auth/self")).json()["policies"] == ["auditor"]
            assert (await dev.get("/v1/audit/events", params={"limit": 1})).status_code == 200

            assert (await admin.put("/v1/auth/identities/dev-1/policies/dev")).status_code == 200
            assert (await dev.get("/v1/secrets/other-b")).status_code == 200
            assert (await admin.delete("/v1/auth/policies/dev")).status_code == 204
            assert (await dev.get("/v1/secrets/other-b")).status_code == 403


# -- failed-authentication limit ----------------------------------------------------------------


async def test_repeated_failed_authentication_is_throttled_per_address(served: Served) -> None:
    statuses: list[int] = []
    throttled: httpx.Response | None = None
    async with served.client() as c:
        for _ in range(40):
            response = await c.get("/v1/secrets", headers={"Authorization": "Bearer nope"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                throttled = response
                break
    # The burst of 20 is always allowed; the limit refills at 2/s, so a fast client meets it soon.
    assert statuses[:20] == [401] * 20
    assert throttled is not None, statuses
    assert set(statuses[20:-1]) <= {401}
    assert code(throttled) == "throttled"
    assert int(throttled.headers["retry-after"]) >= 1
    assert "www-authenticate" not in throttled.headers
    async with served.client() as c:
        assert (await c.get("/healthz")).status_code == 200  # public paths stay open
    # A valid token from the same address is never held back...
    refusals = await audit_events(served, action="AUTHENTICATE")
    # ...and throttled attempts leave no audit row each (only the 401s do): no log flooding.
    assert len(refusals) == statuses.count(401)
    samples = await metric_samples(served)
    assert samples[("strongroom_rate_limited_total", ())] == 1
    assert samples[
        ("strongroom_unauthorized_attempts_total", (("reason", "bad_token"),))
    ] == statuses.count(401)


def test_the_policy_schema_names_every_action() -> None:
    """A policy holding any action the core knows can be written and read back through the
    API's schema (an action added to one list and not the other fails here, not in use)."""
    from typing import get_args

    from strongroom.core.policy import Action
    from strongroom.server.schemas import ActionName, GrantModel

    assert set(get_args(ActionName)) == {a.value for a in Action}
    every = GrantModel(actions=[a.value for a in Action], pattern="*")
    assert len(every.actions) == len(Action)
