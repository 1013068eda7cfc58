"""The native ``/v1`` secrets API over real HTTP: every endpoint, its status codes and bodies.

The whole lifecycle (create, read, version, properties, enable/disable, soft delete, recover,
purge, immediate delete) runs on the embedded (SQLite) and the PostgreSQL profile; conflicts,
bad input and list filtering run on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from served import Served

PROPERTY_KEYS = {
    "name", "version", "secret_type", "content_type", "metadata", "enabled", "created_at",
    "updated_at", "expires_at", "not_before", "current", "revoked", "revoked_at",
}  # fmt: skip


def code(response: httpx.Response) -> str:
    """The error code of a native ``/v1`` error body."""
    body = response.json()
    assert set(body) == {"error"}, body
    # A refusal by policy also names the caller's policies, none of which allowed the action.
    extra = {"policies"} if body["error"].get("code") == "forbidden" else set()
    assert set(body["error"]) == {"code", "message"} | extra, body
    return str(body["error"]["code"])


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(item["name"] for item in response.json())


async def create_and_version(c: httpx.AsyncClient, name: str) -> tuple[str, str]:
    """Create ``name`` (value one) and add a second version (value two): both version ids."""
    created = await c.post(
        "/v1/secrets",
        json={"name": name, "value": "value-one", "secret_type": "api_key",
              "metadata": {"owner": "team-a"}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    first = created.json()
    assert set(first) == PROPERTY_KEYS  # properties only: the create answer carries no value
    assert first["name"] == name
    assert first["secret_type"] == "api_key"
    assert first["metadata"] == {"owner": "team-a"}
    assert first["current"] is True
    assert first["enabled"] is True
    assert first["revoked"] is False

    read = await c.get(f"/v1/secrets/{name}")
    assert read.status_code == 200, read.text
    assert read.json()["value"] == "value-one"
    assert read.json()["version"] == first["version"]

    updated = await c.put(f"/v1/secrets/{name}", json={"value": "value-two"})
    assert updated.status_code == 200, updated.text
    second = updated.json()
    assert "value" not in second
    assert second["version"] != first["version"]
    assert second["current"] is True
    assert second["secret_type"] == "api_key"  # type and metadata carry over
    assert second["metadata"] == {"owner": "team-a"}
    return first["version"], second["version"]


async def check_reads_by_version(c: httpx.AsyncClient, name: str, v1: str, v2: str) -> None:
    current = await c.get(f"/v1/secrets/{name}")
    assert (current.json()["value"], current.json()["version"]) == ("value-two", v2)
    old = await c.get(f"/v1/secrets/{name}", params={"version": v1})
    assert old.status_code == 200, old.text
    assert (old.json()["value"], old.json()["version"], old.json()["current"]) == (
        "value-one", v1, False,
    )  # fmt: skip
    by_path = await c.get(f"/v1/secrets/{name}/versions/{v1}")
    assert by_path.status_code == 200, by_path.text
    assert by_path.json()["value"] == "value-one"

    versions = await c.get(f"/v1/secrets/{name}/versions")
    assert versions.status_code == 200, versions.text
    assert [(v["version"], v["current"]) for v in versions.json()] == [(v2, True), (v1, False)]
    assert all("value" not in v for v in versions.json())

    props = await c.get(f"/v1/secrets/{name}/properties")
    assert props.status_code == 200, props.text
    assert set(props.json()) == PROPERTY_KEYS
    assert props.json()["version"] == v2
    old_props = await c.get(f"/v1/secrets/{name}/properties", params={"version": v1})
    assert old_props.json()["version"] == v1

    missing = "0" * 32
    assert (await c.get(f"/v1/secrets/{name}", params={"version": missing})).status_code == 404
    assert (await c.get(f"/v1/secrets/{name}/versions/{missing}")).status_code == 404


async def check_patch_and_enable(c: httpx.AsyncClient, name: str, v1: str, v2: str) -> None:
    expiry = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    patched = await c.patch(
        f"/v1/secrets/{name}",
        json={"expires_at": expiry.isoformat(), "metadata": {"owner": "team-b"},
              "content_type": "text/plain"},
    )  # fmt: skip
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["version"] == v2
    assert datetime.fromisoformat(body["expires_at"]) == expiry
    assert (body["metadata"], body["content_type"]) == ({"owner": "team-b"}, "text/plain")

    # Only the fields present change; null clears the expiry (metadata is left alone).
    cleared = await c.patch(f"/v1/secrets/{name}", json={"expires_at": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["expires_at"] is None
    assert cleared.json()["metadata"] == {"owner": "team-b"}
    assert cleared.json()["content_type"] == "text/plain"
    stored = (await c.get(f"/v1/secrets/{name}/properties")).json()
    assert stored["expires_at"] is None

    # A PATCH of an older version by id leaves the current one alone.
    old = await c.patch(f"/v1/secrets/{name}", json={"version": v1, "enabled": False})
    assert (old.status_code, old.json()["version"], old.json()["enabled"]) == (200, v1, False)
    assert (await c.get(f"/v1/secrets/{name}")).json()["value"] == "value-two"
    refused_old = await c.get(f"/v1/secrets/{name}", params={"version": v1})
    assert (refused_old.status_code, code(refused_old)) == (403, "disabled")

    disabled = await c.post(f"/v1/secrets/{name}/disable")
    assert (disabled.status_code, disabled.json()["enabled"]) == (200, False)
    refused = await c.get(f"/v1/secrets/{name}")
    assert (refused.status_code, code(refused)) == (403, "disabled")
    assert "value-two" not in refused.text
    enabled = await c.post(f"/v1/secrets/{name}/enable")
    assert (enabled.status_code, enabled.json()["enabled"]) == (200, True)
    assert (await c.get(f"/v1/secrets/{name}")).json()["value"] == "value-two"
    again = await c.post(f"/v1/secrets/{name}/enable", params={"version": v1})
    assert (again.status_code, again.json()["version"]) == (200, v1)
    assert (await c.get(f"/v1/secrets/{name}/versions/{v1}")).json()["value"] == "value-one"


async def check_delete_recover_purge(c: httpx.AsyncClient, name: str) -> None:
    deleted = await c.delete(f"/v1/secrets/{name}")
    assert deleted.status_code == 200, deleted.text
    body = deleted.json()
    assert (body["name"], body["deleted"], body["purged"]) == (name, True, False)
    assert body["recoverable_days"] == 90
    assert datetime.fromisoformat(body["scheduled_purge_at"]) > datetime.now(UTC) + timedelta(89)

    gone = await c.get(f"/v1/secrets/{name}")
    assert gone.status_code == 404, gone.text
    assert name not in names(await c.get("/v1/secrets"))
    assert name in names(await c.get("/v1/deleted-secrets"))
    one = await c.get(f"/v1/deleted-secrets/{name}")
    assert one.status_code == 200, one.text
    assert one.json()["name"] == name
    assert one.json()["recoverable_days"] == 90
    assert "deleted_at" in one.json()
    assert "value" not in one.json()

    recovered = await c.post(f"/v1/deleted-secrets/{name}/recover")
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["name"] == name
    assert (await c.get(f"/v1/secrets/{name}")).json()["value"] == "value-two"
    assert name not in names(await c.get("/v1/deleted-secrets"))
    missing = await c.get(f"/v1/deleted-secrets/{name}")
    assert missing.status_code == 404

    assert (await c.delete(f"/v1/secrets/{name}")).status_code == 200
    purged = await c.delete(f"/v1/deleted-secrets/{name}")
    assert purged.status_code == 204
    assert purged.content == b""
    assert (await c.get(f"/v1/deleted-secrets/{name}")).status_code == 404
    assert (await c.post(f"/v1/deleted-secrets/{name}/recover")).status_code == 404
    assert (await c.get(f"/v1/secrets/{name}")).status_code == 404
    # Purged: the name is free again.
    fresh = await c.post("/v1/secrets", json={"name": name, "value": "value-three"})
    assert fresh.status_code == 201, fresh.text


async def check_immediate_delete(c: httpx.AsyncClient, name: str) -> None:
    assert (await c.post("/v1/secrets", json={"name": name, "value": "short-lived"})).is_success
    deleted = await c.delete(f"/v1/secrets/{name}", params={"immediate": "true"})
    assert deleted.status_code == 200, deleted.text
    assert (deleted.json()["deleted"], deleted.json()["purged"]) == (True, True)
    assert (await c.get(f"/v1/secrets/{name}")).status_code == 404
    assert name not in names(await c.get("/v1/deleted-secrets"))
    assert (await c.get(f"/v1/deleted-secrets/{name}")).status_code == 404
    assert (await c.post("/v1/secrets", json={"name": name, "value": "again"})).status_code == 201


@pytest.fixture(params=["served", "served_pg"])
def any_profile(request: pytest.FixtureRequest) -> Served:
    """The server on the embedded, then on the PostgreSQL profile."""
    found: Served = request.getfixturevalue(request.param)
    return found


async def test_secret_lifecycle_over_http(any_profile: Served) -> None:
    async with any_profile.admin() as c:
        v1, v2 = await create_and_version(c, "app-db")
        await check_reads_by_version(c, "app-db", v1, v2)
        await check_patch_and_enable(c, "app-db", v1, v2)
        assert names(await c.get("/v1/secrets")) == ["app-db"]
        await check_delete_recover_purge(c, "app-db")
        await check_immediate_delete(c, "app-tmp")
        assert names(await c.get("/v1/secrets")) == ["app-db", "app-tmp"]


async def test_json_values_round_trip(served: Served) -> None:
    value: dict[str, Any] = {
        "user": "svc", "password": "p@ss \"quoted\" ünïcode", "port": 5432, "tls": True,
        "hosts": ["db-1", "db-2"], "nested": {"ratio": 0.5, "none": None},
    }  # fmt: skip
    async with served.admin() as c:
        created = await c.post("/v1/secrets", json={"name": "app-json", "value": value})
        assert created.status_code == 201, created.text
        assert created.json()["content_type"] == "application/json"
        read = await c.get("/v1/secrets/app-json")
        assert read.json()["value"] == value
        assert read.json()["content_type"] == "application/json"

        items = [1, "two", {"three": 3}]
        assert (await c.put("/v1/secrets/app-json", json={"value": items})).status_code == 200
        assert (await c.get("/v1/secrets/app-json")).json()["value"] == items
        # A text value stays text, even when it looks like JSON.
        assert (await c.put("/v1/secrets/app-json", json={"value": '{"a": 1}'})).is_success
        assert (await c.get("/v1/secrets/app-json")).json()["value"] == '{"a": 1}'


async def test_create_conflicts(served: Served) -> None:
    async with served.admin() as c:
        assert (await c.post("/v1/secrets", json={"name": "app-x", "value": "one"})).is_success
        for name in ("app-x", "APP-X"):  # names compare case-insensitively
            taken = await c.post("/v1/secrets", json={"name": name, "value": "two"})
            assert (taken.status_code, code(taken)) == (409, "already_exists")
        assert (await c.get("/v1/secrets/app-x")).json()["value"] == "one"
        assert len((await c.get("/v1/secrets/app-x/versions")).json()) == 1

        assert (await c.delete("/v1/secrets/app-x")).status_code == 200
        held = await c.post("/v1/secrets", json={"name": "app-x", "value": "three"})
        assert (held.status_code, code(held)) == (409, "deleted_but_recoverable")
        # Still the soft-deleted secret: recovering it brings the original value back.
        assert (await c.post("/v1/deleted-secrets/app-x/recover")).status_code == 200
        assert (await c.get("/v1/secrets/app-x")).json()["value"] == "one"


async def test_bad_input_is_400_and_changes_nothing(served: Served) -> None:
    async with served.admin() as c:
        for bad in ("bad_name", "has space", "x" * 128, "dots.not.allowed", ""):
            refused = await c.post("/v1/secrets", json={"name": bad, "value": "v"})
            assert (refused.status_code, code(refused)) == (400, "bad_parameter"), bad
        assert (r := await c.get("/v1/secrets/bad_name")).status_code == 400
        assert code(r) == "bad_parameter"
        bad_version = await c.get("/v1/secrets/app-a", params={"version": "not-a-version"})
        assert (bad_version.status_code, code(bad_version)) == (400, "bad_parameter")

        unknown = await c.post("/v1/secrets", json={"name": "app-a", "value": "v", "colour": "x"})
        assert (unknown.status_code, code(unknown)) == (400, "bad_parameter")
        assert "colour" in unknown.json()["error"]["message"]
        assert names(await c.get("/v1/secrets")) == []  # nothing was created

        assert (await c.post("/v1/secrets", json={"name": "app-a", "value": "v"})).is_success
        for method, body in (
            ("PUT", {"value": "w", "colour": "x"}),
            ("PATCH", {"colour": "x"}),
            ("PATCH", {"value": "w"}),  # a PATCH changes properties, never the value
            ("PATCH", {"expires_at": "2030-01-01T00:00:00"}),  # naive: no time zone
        ):
            refused = await c.request(method, "/v1/secrets/app-a", json=body)
            assert (refused.status_code, code(refused)) == (400, "bad_parameter"), body
        assert len((await c.get("/v1/secrets/app-a/versions")).json()) == 1
        assert (await c.get("/v1/secrets/app-a")).json()["value"] == "v"
        empty = await c.post("/v1/secrets", json={"name": "app-b", "value": ""})
        assert (empty.status_code, code(empty)) == (400, "bad_parameter")
        assert names(await c.get("/v1/secrets")) == ["app-a"]


async def test_lists_show_only_what_the_callers_list_grant_covers(served: Served) -> None:
    async with served.admin() as admin:
        for name in ("app-a", "app-b", "other-c", "other-d"):
            assert (await admin.post("/v1/secrets", json={"name": name, "value": "v"})).is_success
        assert (await admin.delete("/v1/secrets/app-b")).status_code == 200
        assert (await admin.delete("/v1/secrets/other-d")).status_code == 200

    lister = await served.token_for("lister", "list:app-*")
    async with served.client(lister) as c:
        live = await c.get("/v1/secrets")
        assert names(live) == ["app-a"]
        assert all("value" not in item for item in live.json())
        assert names(await c.get("/v1/deleted-secrets")) == ["app-b"]
        outside = await c.get("/v1/deleted-secrets/other-d")
        assert (outside.status_code, code(outside)) == (403, "forbidden")
        # LIST does not grant READ.
        value = await c.get("/v1/secrets/app-a")
        assert (value.status_code, code(value)) == (403, "forbidden")

    reader = await served.token_for("reader", "read:*")
    async with served.client(reader) as c:
        refused = await c.get("/v1/secrets")
        assert (refused.status_code, code(refused)) == (403, "forbidden")
        assert (await c.get("/v1/deleted-secrets")).status_code == 403

    async with served.admin() as admin:
        assert names(await admin.get("/v1/secrets")) == ["app-a", "other-c"]
        assert names(await admin.get("/v1/deleted-secrets")) == ["app-b", "other-d"]


async def test_enable_and_disable_act_on_the_version_named_in_the_body(served: Served) -> None:
    async with served.admin() as c:
        first, second = await create_and_version(c, "by-body")
        disabled = await c.post("/v1/secrets/by-body/disable", json={"version": first})
        assert disabled.status_code == 200, disabled.text
        assert (disabled.json()["version"], disabled.json()["enabled"]) == (first, False)
        current = (await c.get("/v1/secrets/by-body/properties")).json()
        assert (current["version"], current["enabled"]) == (second, True)  # untouched
        # The 8-character version the CLI prints is enough.
        enabled = await c.post("/v1/secrets/by-body/enable", json={"version": first[:8]})
        assert (enabled.json()["version"], enabled.json()["enabled"]) == (first, True)
        # Two different versions named: refused, nothing changes.
        both = await c.post(
            "/v1/secrets/by-body/disable", params={"version": second}, json={"version": first}
        )
        assert (both.status_code, code(both)) == (400, "bad_parameter")
        versions = (await c.get("/v1/secrets/by-body/versions")).json()
        assert all(v["enabled"] for v in versions)
        unknown = await c.post("/v1/secrets/by-body/disable", json={"versoin": first})
        assert unknown.status_code == 400
        assert "versoin" in unknown.json()["error"]["message"]
        assert all(v["enabled"] for v in (await c.get("/v1/secrets/by-body/versions")).json())


async def test_validation_errors_name_the_field_and_say_why_in_words(served: Served) -> None:
    async with served.admin() as c:
        too_long = await c.post("/v1/secrets", json={"name": "words", "value": "x" * 25_001})
        message = too_long.json()["error"]["message"]
        assert message.startswith("invalid request: value: ")
        assert "25000 characters" in message
        assert "constrained-str" not in message
        assert "body." not in message
        wrong_type = await c.post("/v1/secrets", json={"name": "words", "value": 12})
        message = wrong_type.json()["error"]["message"]
        assert "value: must be text or an object or a list" in message
        as_list = await c.post("/v1/secrets", json=["name", "value"])
        message = as_list.json()["error"]["message"]
        assert "the request body" in message
        assert "body.1" not in message
        days = await c.post(
            "/v1/secrets", json={"name": "words", "value": "v", "expires_in_days": "soon"}
        )
        assert "expires_in_days: " in days.json()["error"]["message"]
        assert "must be a whole number" in days.json()["error"]["message"]
        assert names(await c.get("/v1/secrets")) == []


async def test_a_generator_option_of_the_wrong_type_is_a_type_error(served: Served) -> None:
    async with served.admin() as c:
        for options, expected in (
            ({"length": "24"}, "option 'length' must be a whole number, not text"),
            ({"length": 8}, "option 'length' must be between 16 and 1024"),
            ({"lenght": 24}, "generator 'password' has no option 'lenght'"),
        ):
            refused = await c.put(
                "/v1/rotation/gen-typed",
                json={"generator": "password", "generator_options": options, "rotation_days": 30},
            )
            assert (refused.status_code, code(refused)) == (400, "bad_parameter"), options
            assert expected in refused.json()["error"]["message"]
        assert (await c.get("/v1/rotation/gen-typed")).status_code == 404
