"""The Key Vault-compatible API byte by byte: raw HTTPS requests and exact answers.

What an SDK hides is checked here: the 401 challenge (sent before the body is even read),
``api-version``, paging limits and links, status codes and empty bodies, the error document,
that ids name 32-hex versions, that values never appear in errors and that every call is
audited under the token's identity.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from served import Served, serve, server_settings

from strongroom import SecretsAudit, Strongroom

API = "api-version=7.4"
AUTHORITY = "https://login.strongroom.invalid/strongroom"
SECRET_VALUE = "Hunter2-do-not-echo"


@pytest.fixture
async def kv(tmp_path: Path) -> AsyncIterator[Served]:
    """strongroom over TLS, reached as 127.0.0.1 (and as kv.vault.test through Host)."""
    tls = tmp_path / "tls"
    tls.mkdir()
    app = await Strongroom.open(server_settings("sqlite", tmp_path))
    try:
        async with serve(app, tls_dir=tls, hostnames=("kv.vault.test", "127.0.0.1")) as running:
            yield running
    finally:
        await app.close()


def kv_error(response: httpx.Response) -> dict[str, Any]:
    """The Key Vault error document: ``{"error": {"code", "message", "innererror"?}}``."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"code", "message", "innererror"}
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    return dict(error)


async def put(client: httpx.AsyncClient, name: str, value: str, **body: Any) -> httpx.Response:
    return await client.put(f"/secrets/{name}?{API}", json={"value": value, **body})


# -- authentication: the challenge comes first ---------------------------------------------------


async def test_the_challenge_comes_before_the_body_is_validated(kv: Served) -> None:
    host = f"kv.vault.test:{kv.port}"
    async with kv.client(headers={"Host": host}) as anonymous:
        refused = await anonymous.put(
            "/secrets/some-name?api-version=7.4",
            content=b"{not json at all",
            headers={"Content-Type": "application/json"},
        )
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == (
            f'Bearer authorization="{AUTHORITY}", resource="https://vault.test:{kv.port}"'
        )
        assert kv_error(refused)["code"] == "Unauthorized"

        # the SDK's first request: no body, Content-Length 0
        empty = await anonymous.put(
            "/secrets/some-name?api-version=7.4", headers={"Content-Length": "0"}
        )
        assert empty.status_code == 401
        assert "resource=" in empty.headers["www-authenticate"]

        # no api-version either: still the challenge, not a 400
        assert (await anonymous.get("/secrets")).status_code == 401

    # a token that is not valid gets the challenge too
    async with kv.client("srt_0123456789abcdef_" + "A" * 43, headers={"Host": host}) as bad:
        refused = await bad.get(f"/secrets?{API}")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith(f'Bearer authorization="{AUTHORITY}"')


async def test_the_challenge_resource_follows_the_request_host(kv: Served) -> None:
    async with kv.client() as anonymous:
        by_address = await anonymous.get(f"/deletedsecrets?{API}")
        assert by_address.status_code == 401
        # an IP address is its own resource; no ',' or '"' can reach the header's values
        assert by_address.headers["www-authenticate"] == (
            f'Bearer authorization="{AUTHORITY}", resource="https://127.0.0.1:{kv.port}"'
        )
        deep = await anonymous.get(
            f"/secrets?{API}", headers={"Host": f"a.b.vault.example:{kv.port}"}
        )
        assert deep.headers["www-authenticate"].endswith(
            f'resource="https://b.vault.example:{kv.port}"'
        )
        # the SDK splits the challenge on ',' and strips '"': neither may come from the Host
        odd = await anonymous.get(f"/secrets?{API}", headers={"Host": f'kv.a,b"c.test:{kv.port}'})
        assert odd.status_code == 401
        params = odd.headers["www-authenticate"].removeprefix("Bearer ").split(", ")
        assert params == [f'authorization="{AUTHORITY}"', f'resource="https://abc.test:{kv.port}"']
        # outside the Key Vault paths, strongroom's own challenge and error shape
        native = await anonymous.get("/v1/secrets")
        assert native.status_code == 401
        assert native.headers["www-authenticate"] == 'Bearer realm="strongroom"'
        assert native.json()["error"]["code"] == "unauthorized"


# -- api-version, paging parameters --------------------------------------------------------------


async def test_api_version_is_required_and_checked(kv: Served) -> None:
    async with kv.admin() as client:
        assert (await put(client, "versioned", "v")).status_code == 200
        for query in ("", "?api-version=", "?api-version=latest", "?api-version=7", "?x=7.4"):
            for method, path in (
                ("GET", "/secrets"),
                ("GET", "/secrets/versioned/"),
                ("GET", "/secrets/versioned/versions"),
                ("GET", "/deletedsecrets"),
                ("POST", "/secrets/versioned/backup"),
            ):
                answer = await client.request(method, path + query)
                assert answer.status_code == 400, (method, path, query)
                error = kv_error(answer)
                assert error["code"] == "BadParameter"
                assert "api-version" in error["message"]
        for good in ("7.4", "7.6", "2025-07-01", "7.6-preview.2", "2026-04-01"):
            assert (await client.get(f"/secrets?api-version={good}")).status_code == 200


async def test_maxresults_and_skiptoken_are_checked(kv: Served) -> None:
    async with kv.admin() as client:
        assert (await put(client, "paged", "v")).status_code == 200
        for path in ("/secrets", "/secrets/paged/versions", "/deletedsecrets"):
            for size in ("0", "26", "-1", "many"):
                answer = await client.get(f"{path}?{API}&maxresults={size}")
                assert answer.status_code == 400, (path, size)
                assert kv_error(answer)["code"] == "BadParameter"
            for size in ("1", "25"):
                assert (await client.get(f"{path}?{API}&maxresults={size}")).status_code == 200
            for token in (
                "not-base64!",
                base64.urlsafe_b64encode(b"[1, 2]").decode(),
                base64.urlsafe_b64encode(b'{"o": -5}').decode(),
                base64.urlsafe_b64encode(b'{"o": "3"}').decode(),
                base64.urlsafe_b64encode(b"\xff\xfe").decode(),
            ):
                answer = await client.get(f"{path}?{API}", params={"$skiptoken": token})
                assert answer.status_code == 400, (path, token)
                assert kv_error(answer)["code"] == "BadParameter"


async def test_next_link_is_absolute_and_followable(kv: Served) -> None:
    async with kv.admin() as client:
        for i in range(7):
            assert (await put(client, f"item-{i}", f"value-{i}")).status_code == 200
        seen: list[str] = []
        url: str | None = f"{kv.base_url}/secrets?{API}&maxresults=3"
        pages = 0
        while url is not None:
            page = await client.get(url)
            assert page.status_code == 200
            body = page.json()
            assert set(body) == {"value", "nextLink"}
            seen += [item["id"] for item in body["value"]]
            assert len(body["value"]) <= 3
            url = body["nextLink"]
            pages += 1
            if url is not None:
                parts = urlsplit(url)
                assert f"{parts.scheme}://{parts.netloc}" == kv.base_url
                assert parts.path == "/secrets"
                query = parse_qs(parts.query)
                assert query["api-version"] == ["7.4"]
                assert query["maxresults"] == ["3"]
                assert "$skiptoken" in query
        assert pages == 3
        assert seen == [f"{kv.base_url}/secrets/item-{i}" for i in range(7)]

        # versions page the same way (newest first), up to 25 a page by default
        for i in range(27):
            assert (await put(client, "busy", f"busy-{i}")).status_code == 200
        first = (await client.get(f"/secrets/busy/versions?{API}")).json()
        assert len(first["value"]) == 25
        rest = (await client.get(first["nextLink"])).json()
        assert len(rest["value"]) == 2
        assert rest["nextLink"] is None
        ids = [item["id"] for item in first["value"] + rest["value"]]
        assert len(set(ids)) == 27


async def test_paging_survives_writes_between_pages(kv: Served) -> None:
    """A page boundary stays put when versions or secrets are added while a client pages."""
    async with kv.admin() as client:
        for i in range(6):
            assert (await put(client, "moving", f"moving-{i}")).status_code == 200
        first = (await client.get(f"/secrets/moving/versions?{API}&maxresults=3")).json()
        assert (await put(client, "moving", "moving-new")).status_code == 200  # newest first
        rest = (await client.get(first["nextLink"])).json()
        ids = [item["id"] for item in first["value"] + rest["value"]]
        assert len(ids) == len(set(ids)) == 6

        for name in ("b-one", "d-two", "f-three", "h-four"):
            assert (await put(client, name, "x")).status_code == 200
        head = (await client.get(f"/secrets?{API}&maxresults=2")).json()
        assert [i["id"].rsplit("/", 1)[1] for i in head["value"]] == ["b-one", "d-two"]
        assert (await put(client, "a-early", "x")).status_code == 200  # sorts before the page
        tail = (await client.get(head["nextLink"])).json()
        assert [i["id"].rsplit("/", 1)[1] for i in tail["value"]] == ["f-three", "h-four"]


# -- shapes of the answers ------------------------------------------------------------------------


async def test_bundles_ids_and_status_codes(kv: Served) -> None:
    base = kv.base_url
    async with kv.admin() as client:
        created = await put(
            client,
            "Shape-Check",
            "v1",
            contentType="text/plain",
            tags={"a": "b"},
            attributes={"enabled": True, "exp": 4102444800, "nbf": 1700000000},
        )
        assert created.status_code == 200
        bundle = created.json()
        version = bundle["id"].rsplit("/", 1)[1]
        assert re.fullmatch(r"[0-9a-f]{32}", version)
        assert bundle["id"] == f"{base}/secrets/Shape-Check/{version}"
        assert bundle["value"] == "v1"
        assert bundle["contentType"] == "text/plain"
        assert bundle["tags"] == {"a": "b"}
        attributes = bundle["attributes"]
        assert attributes["enabled"] is True
        assert attributes["exp"] == 4102444800
        assert attributes["nbf"] == 1700000000
        assert isinstance(attributes["created"], int)
        assert attributes["updated"] == attributes["created"]
        assert attributes["recoveryLevel"] == "Recoverable+Purgeable"
        assert attributes["recoverableDays"] == 90

        # the latest version at GET /secrets/{name}/ (trailing slash), any spelling of the name
        latest = await client.get(f"/secrets/shape-check/?{API}")
        assert latest.status_code == 200
        assert latest.json()["id"] == bundle["id"]
        by_version = await client.get(f"/secrets/SHAPE-CHECK/{version}?{API}")
        assert by_version.json()["value"] == "v1"
        # without the slash too: the REST reference lets the version fragment be left out
        no_slash = await client.get(f"/secrets/Shape-Check?{API}")
        assert no_slash.status_code == 200
        assert no_slash.json()["id"] == bundle["id"]

        # PATCH changes only what it names
        patched = await client.patch(
            f"/secrets/shape-check/{version}?{API}", json={"tags": {"c": "d"}}
        )
        assert patched.status_code == 200
        assert "value" not in patched.json()
        assert patched.json()["tags"] == {"c": "d"}
        assert patched.json()["attributes"]["exp"] == 4102444800
        assert patched.json()["contentType"] == "text/plain"
        cleared = await client.patch(
            f"/secrets/shape-check/?{API}", json={"attributes": {"exp": None}}
        )
        assert "exp" not in cleared.json()["attributes"]

        # list items name the secret, not a version, and carry no value
        listed = (await client.get(f"/secrets?{API}")).json()["value"]
        assert listed[0]["id"] == f"{base}/secrets/Shape-Check"
        assert "value" not in listed[0]
        versions = (await client.get(f"/secrets/shape-check/versions?{API}")).json()["value"]
        assert versions[0]["id"] == bundle["id"]


async def test_delete_recover_and_purge_answers(kv: Served) -> None:
    base = kv.base_url
    async with kv.admin() as client:
        bundle = (await put(client, "Shape-Check", "v1", contentType="text/plain")).json()

        # delete: the deleted bundle with its recovery id and purge date
        deleted = await client.delete(f"/secrets/shape-check?{API}")
        assert deleted.status_code == 200
        gone = deleted.json()
        assert "value" not in gone
        assert gone["id"] == bundle["id"]
        assert gone["recoveryId"] == f"{base}/deletedsecrets/Shape-Check"
        assert gone["scheduledPurgeDate"] - gone["deletedDate"] == 90 * 86400
        assert gone["attributes"]["recoverableDays"] == 90
        assert (await client.get(f"/secrets/shape-check/?{API}")).status_code == 404
        assert (await client.delete(f"/secrets/shape-check?{API}")).status_code == 404
        items = (await client.get(f"/deletedsecrets?{API}")).json()["value"]
        assert items[0]["id"] == f"{base}/secrets/Shape-Check"
        assert items[0]["recoveryId"] == gone["recoveryId"]

        # recover: the bundle without a value
        recovered = await client.post(f"/deletedsecrets/shape-check/recover?{API}")
        assert recovered.status_code == 200
        assert "value" not in recovered.json()
        assert recovered.json()["id"] == bundle["id"]
        assert (await client.post(f"/deletedsecrets/shape-check/recover?{API}")).status_code == 404

        # purge: 204 and nothing else
        assert (await client.delete(f"/secrets/shape-check?{API}")).status_code == 200
        purged = await client.delete(f"/deletedsecrets/shape-check?{API}")
        assert purged.status_code == 204
        assert purged.content == b""
        assert (await client.delete(f"/deletedsecrets/shape-check?{API}")).status_code == 404
        assert (await client.get(f"/deletedsecrets/shape-check?{API}")).status_code == 404


async def test_backup_and_restore(kv: Served) -> None:
    async with kv.admin() as client:
        first = (await put(client, "kept", "kept-1")).json()
        second = (await put(client, "kept", "kept-2")).json()
        backup = await client.post(f"/secrets/kept/backup?{API}")
        assert backup.status_code == 200
        blob = backup.json()["value"]
        assert set(backup.json()) == {"value"}
        assert re.fullmatch(r"[A-Za-z0-9_-]+", blob)  # base64url, as the SDK decodes it
        assert "kept-1" not in base64.urlsafe_b64decode(blob + "==").decode("latin-1")

        conflict = await client.post(f"/secrets/restore?{API}", json={"value": blob})
        assert conflict.status_code == 409
        assert kv_error(conflict)["code"] == "Conflict"

        assert (await client.delete(f"/secrets/kept?{API}")).status_code == 200
        held = await client.post(f"/secrets/restore?{API}", json={"value": blob})
        assert held.status_code == 409
        assert kv_error(held)["innererror"] == {"code": "ObjectIsDeletedButRecoverable"}

        assert (await client.delete(f"/deletedsecrets/kept?{API}")).status_code == 204
        restored = await client.post(f"/secrets/restore?{API}", json={"value": blob})
        assert restored.status_code == 200
        assert restored.json()["id"] == second["id"]
        assert "value" not in restored.json()
        old = await client.get(first["id"] + f"?{API}")
        assert old.json()["value"] == "kept-1"

        damaged = await client.post(f"/secrets/restore?{API}", json={"value": blob[:-4] + "AAAA"})
        assert damaged.status_code == 400
        assert kv_error(damaged)["code"] == "BadParameter"


# -- errors -------------------------------------------------------------------------------------


async def test_error_codes(kv: Served) -> None:
    reader = await kv.token_for("kv-reader", "read,list:app-*")
    async with kv.admin() as admin, kv.client(reader) as client:
        assert (await put(admin, "app-one", "one")).status_code == 200
        assert (await put(admin, "ops-two", "two")).status_code == 200

        missing = await client.get(f"/secrets/app-missing/?{API}")
        assert missing.status_code == 404
        assert kv_error(missing) == {
            "code": "SecretNotFound",
            "message": "secret 'app-missing' not found",
        }

        denied = await client.get(f"/secrets/ops-two/?{API}")
        assert denied.status_code == 403
        error = kv_error(denied)
        assert error["code"] == "Forbidden"
        assert error["innererror"] == {"code": "ForbiddenByRbac"}
        assert "two" not in json.dumps(error).replace("ops-two", "")

        no_write = await put(client, "app-one", SECRET_VALUE)
        assert no_write.status_code == 403
        assert SECRET_VALUE not in no_write.text

        assert (
            await admin.patch(f"/secrets/app-one/?{API}", json={"attributes": {"enabled": False}})
        ).status_code == 200
        disabled = await client.get(f"/secrets/app-one/?{API}")
        assert disabled.status_code == 403
        assert kv_error(disabled)["code"] == "Forbidden"
        assert kv_error(disabled)["innererror"] == {"code": "SecretDisabled"}
        assert "one" not in disabled.text.replace("app-one", "")

        # As in Key Vault, an expired value is served (the date is the application's to act
        # on); the native API refuses it.
        lapsed = await put(admin, "app-lapsed", SECRET_VALUE, attributes={"exp": 1_000_000_000})
        assert lapsed.status_code == 200
        expired = await client.get(f"/secrets/app-lapsed/?{API}")
        assert (expired.status_code, expired.json()["value"]) == (200, SECRET_VALUE)
        native = await client.get("/v1/secrets/app-lapsed")
        assert (native.status_code, native.json()["error"]["code"]) == (403, "expired")
        assert SECRET_VALUE not in native.text

        assert (await admin.delete(f"/secrets/app-one?{API}")).status_code == 200
        held = await put(admin, "APP-ONE", SECRET_VALUE)
        assert held.status_code == 409
        assert kv_error(held) == {
            "code": "Conflict",
            "message": held.json()["error"]["message"],
            "innererror": {"code": "ObjectIsDeletedButRecoverable"},
        }
        assert SECRET_VALUE not in held.text

        unknown = await client.get(f"/secrets/app-one/extra/path?{API}")
        assert unknown.status_code == 404
        assert kv_error(unknown)["code"] == "SecretNotFound"
        wrong_method = await client.post(f"/secrets/app-one?{API}")
        assert wrong_method.status_code == 405
        assert kv_error(wrong_method)["code"] == "MethodNotAllowed"


async def test_values_never_appear_in_error_answers(kv: Served) -> None:
    async with kv.admin() as client:
        assert (await put(client, "known", "k")).status_code == 200
        refusals = [
            await put(client, "bad_name", SECRET_VALUE),
            await put(client, "known", SECRET_VALUE * 2000),
            await put(client, "known", SECRET_VALUE, tags={str(i): "t" for i in range(16)}),
            await put(client, "known", SECRET_VALUE, tags={"k": SECRET_VALUE * 20}),
            await put(client, "known", SECRET_VALUE, attributes={"exp": -1}),
            await put(client, "known", SECRET_VALUE, attributes={"enabled": SECRET_VALUE}),
            await put(client, "known", SECRET_VALUE, contentType=SECRET_VALUE * 20),
            await client.put(f"/secrets/known?{API}", json={"value": {"nested": SECRET_VALUE}}),
            await client.put(f"/secrets/known?{API}", json={"value": [SECRET_VALUE]}),
            await client.put(
                f"/secrets/known?{API}",
                content=('{"value": "' + SECRET_VALUE + '"').encode(),
                headers={"Content-Type": "application/json"},
            ),
            await client.put(f"/secrets/known?{API}", json={"nothing": SECRET_VALUE}),
            await client.put(f"/secrets/known?{API}", json={"value": ""}),
            await client.post(f"/secrets/restore?{API}", json={"value": SECRET_VALUE}),
            await client.patch(f"/secrets/known/?{API}", json={"tags": {"k": SECRET_VALUE * 20}}),
        ]
        for answer in refusals:
            assert answer.status_code == 400, answer.text
            assert kv_error(answer)["code"] == "BadParameter"
            assert SECRET_VALUE not in answer.text
            assert SECRET_VALUE[:8] not in answer.text
        assert (await client.get(f"/secrets/known/?{API}")).json()["value"] == "k"


async def test_throttling_answers_429_with_retry_after(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    settings = server_settings("sqlite", tmp_path, rate_limit_per_second=0.01, rate_limit_burst=3)
    app = await Strongroom.open(settings)
    try:
        async with serve(app, tls_dir=tls) as running, running.admin() as client:
            answers = [await client.get(f"/secrets?{API}") for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429]
            throttled = answers[-1]
            assert int(throttled.headers["retry-after"]) >= 1
            assert kv_error(throttled)["code"] == "Throttled"
    finally:
        await app.close()


# -- audit --------------------------------------------------------------------------------------


async def test_every_call_is_audited_under_the_token_identity(kv: Served) -> None:
    token = await kv.token_for("kv-auditee", "admin:*")
    async with kv.client(token, headers={"User-Agent": "kv-test-agent/1"}) as client:
        assert (await put(client, "audited", SECRET_VALUE)).status_code == 200
        assert (await client.get(f"/secrets/audited/?{API}")).status_code == 200
        patched = await client.patch(f"/secrets/audited/?{API}", json={"tags": {}})
        assert patched.status_code == 200
        assert (await client.get(f"/secrets?{API}")).status_code == 200
        assert (await client.get(f"/secrets/audited/versions?{API}")).status_code == 200
        assert (await client.post(f"/secrets/audited/backup?{API}")).status_code == 200
        assert (await client.delete(f"/secrets/audited?{API}")).status_code == 200
        assert (await client.get(f"/deletedsecrets/audited?{API}")).status_code == 200
        assert (await client.get(f"/deletedsecrets?{API}")).status_code == 200
        assert (await client.post(f"/deletedsecrets/audited/recover?{API}")).status_code == 200
        assert (await client.delete(f"/secrets/audited?{API}")).status_code == 200
        assert (await client.delete(f"/deletedsecrets/audited?{API}")).status_code == 204
        assert (await client.get(f"/secrets/audited/?{API}")).status_code == 404

    trail = await SecretsAudit(kv.app).get_audit_trail(actor_id="kv-auditee", limit=1000)
    assert all(row["actor_user_agent"] == "kv-test-agent/1" for row in trail)
    assert all(row["actor_ip"] == "127.0.0.1" for row in trail)
    done = [(row["action"], row["result"]) for row in reversed(trail)]
    assert done == [
        ("CREATE", "SUCCESS"),
        ("READ", "SUCCESS"),
        ("UPDATE", "SUCCESS"),
        ("LIST", "SUCCESS"),
        ("LIST", "SUCCESS"),
        ("READ", "SUCCESS"),
        ("DELETE", "SUCCESS"),
        ("DESCRIBE", "SUCCESS"),
        ("LIST", "SUCCESS"),
        ("RECOVER", "SUCCESS"),
        ("DELETE", "SUCCESS"),
        ("PURGE", "SUCCESS"),
        ("READ", "FAILURE"),
    ]
    assert SECRET_VALUE not in json.dumps(trail, default=str)

    # the same trail over the native API
    async with kv.admin() as admin:
        events = await admin.get("/v1/audit/events", params={"actor": "kv-auditee"})
        assert events.status_code == 200
        assert len(events.json()) == len(trail)


async def test_a_shorter_recovery_window_is_reported(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    app = await Strongroom.open(server_settings("sqlite", tmp_path, recovery_days=7))
    try:
        async with serve(app, tls_dir=tls) as running, running.admin() as client:
            created = (await put(client, "short", "v")).json()
            assert created["attributes"]["recoverableDays"] == 7
            assert created["attributes"]["recoveryLevel"] == "CustomizedRecoverable+Purgeable"
            gone = (await client.delete(f"/secrets/short?{API}")).json()
            assert gone["scheduledPurgeDate"] - gone["deletedDate"] == 7 * 86400
    finally:
        await app.close()
