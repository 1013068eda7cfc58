"""The hot reads answered without the framework's router give exactly what the documented
routes give: same status, body and headers, for values and for every error.

A query parameter the fast path does not know (``?via=router``) sends the same request through
FastAPI's routing, which ignores it, so each pair below compares the two paths.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import httpx
import pytest
from served import Served

from strongroom import SecretsAudit
from strongroom.server import fastpath

SKIP_HEADERS = {"date", "content-length"}


def _same(fast: httpx.Response, routed: httpx.Response) -> None:
    assert fast.status_code == routed.status_code
    assert fast.json() == routed.json()
    strip = lambda r: {k: v for k, v in r.headers.items() if k not in SKIP_HEADERS}  # noqa: E731
    assert strip(fast) == strip(routed)


async def test_native_reads_match_the_routed_answers(served: Served) -> None:
    reader = await served.token_for("reader", "read:app-*")
    async with served.admin() as admin:
        created = await admin.post("/v1/secrets", json={"name": "app-db", "value": "pw-1"})
        version = created.json()["version"]
        await admin.post("/v1/secrets", json={"name": "app-off", "value": "x"})
        await admin.post("/v1/secrets/app-off/disable")
        await admin.post("/v1/secrets", json={"name": "other-db", "value": "x"})
    async with served.client(reader) as c:
        for path in (
            "/v1/secrets/app-db",
            f"/v1/secrets/app-db?version={version}",
            "/v1/secrets/app-missing",
            "/v1/secrets/app-off",  # 403 disabled
            "/v1/secrets/other-db",  # 403 outside policy
            f"/v1/secrets/app-db?version={'0' * 32}",  # 404 no such version
        ):
            sep = "&" if "?" in path else "?"
            _same(await c.get(path), await c.get(f"{path}{sep}via=router"))
        assert (await c.get("/v1/secrets/app-db")).json()["value"] == "pw-1"
    async with served.client("srt_0000000000000000_" + "A" * 43) as c:
        assert (await c.get("/v1/secrets/app-db")).status_code == 401


async def test_malformed_reads_fall_through_to_the_framework(served: Served) -> None:
    async with served.admin() as c:
        await c.post("/v1/secrets", json={"name": "app-db", "value": "pw-1"})
        bad_version = await c.get("/v1/secrets/app-db?version=nothex")
        assert bad_version.status_code == 400
        assert bad_version.json()["error"]["code"] == "bad_parameter"
        twice = await c.get(f"/v1/secrets/app-db?version={'0' * 32}&version={'1' * 32}")
        assert twice.status_code in (400, 404)
        no_api_version = await c.get("/secrets/app-db/")
        assert no_api_version.status_code == 400
        assert no_api_version.json()["error"]["code"] == "BadParameter"


def test_the_fast_path_matches_only_well_formed_reads() -> None:
    def match(method: str, path_: str, query: str = "") -> bool:
        scope = {"type": "http", "method": method, "path": path_, "query_string": query.encode()}
        return fastpath.match(scope) is not None

    assert match("GET", "/v1/secrets/app-db")
    assert match("GET", "/v1/secrets/app-db", "version=" + "a" * 32)
    assert not match("GET", "/v1/secrets/app-db", "version=ABC")
    assert not match("GET", "/v1/secrets/app-db/versions")
    assert not match("GET", "/v1/secrets/bad_name")
    assert not match("PUT", "/v1/secrets/app-db")
    assert match("GET", "/secrets/app-db/", "api-version=7.5")
    assert match("GET", "/secrets/app-db/" + "a" * 32, "api-version=7.5")
    assert not match("GET", "/secrets/app-db/", "")
    assert not match("GET", "/secrets/app-db/versions", "api-version=7.5")


async def test_hot_reads_skip_the_framework_stack_but_not_the_guard(served: Served) -> None:
    """The outer match answers the read itself (the framework's stack is never built for it),
    and the guard in front of it still refuses a bad token, audited, with Key Vault's
    challenge on its path."""
    assert served.server is not None
    api = served.server.config.app  # the application object uvicorn serves
    assert api.hot_reads is not None
    api.middleware_stack = None  # rebuilt by the framework on its next request
    async with served.admin() as c:
        await c.post("/v1/secrets", json={"name": "app-db", "value": "pw-1"})
    api.middleware_stack = None
    async with served.admin() as c:
        read = await c.get("/v1/secrets/app-db")
        kv = await c.get("/secrets/app-db/", params={"api-version": "7.5"})
    assert (read.status_code, read.json()["value"]) == (200, "pw-1")
    assert (kv.status_code, kv.json()["value"]) == (200, "pw-1")
    assert read.headers["x-frame-options"] == "DENY"
    assert api.middleware_stack is None  # neither read went through the framework
    async with served.client("srt_0000000000000000_" + "A" * 43) as c:
        refused = await c.get("/secrets/app-db/", params={"api-version": "7.5"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer authorization=")
    trail = await SecretsAudit(served.app).get_audit_trail(None, "AUTHENTICATE")
    assert trail[0]["result"] == "FAILURE"


async def test_a_reused_answer_follows_every_change(served: Served) -> None:
    """The hot read's body is encoded once per opened version: repeated reads get the same
    bytes, and a new version, a property change or a disable is answered at once."""
    async with served.admin() as c:
        await c.post("/v1/secrets", json={"name": "app-db", "value": "pw-1"})
        first, again = await c.get("/v1/secrets/app-db"), await c.get("/v1/secrets/app-db")
        assert first.content == again.content
        assert first.json()["value"] == "pw-1"
        await c.put("/v1/secrets/app-db", json={"value": "pw-2"})
        assert (await c.get("/v1/secrets/app-db")).json()["value"] == "pw-2"
        await c.patch("/v1/secrets/app-db", json={"metadata": {"team": "dispatch"}})
        assert (await c.get("/v1/secrets/app-db")).json()["metadata"] == {"team": "dispatch"}
        await c.post("/v1/secrets/app-db/disable")
        assert (await c.get("/v1/secrets/app-db")).status_code == 403


async def test_a_reused_key_vault_answer_names_the_address_it_was_read_through(
    served: Served,
) -> None:
    """Key Vault's body is reused per opened version and vault address: each Host gets ids
    under its own address, however many addresses read the same version, and a new version
    or a property change is answered at once."""
    kv = {"api-version": "7.5"}
    async with served.admin() as c:
        await c.post("/v1/secrets", json={"name": "app-db", "value": "pw-1"})
        version = (await c.get("/v1/secrets/app-db")).json()["version"]
        for round_ in range(2):
            for n in range(7):  # more addresses than a bundle keeps bodies for
                host = f"vault-{n}.example:8443"
                got = await c.get("/secrets/app-db/", params=kv, headers={"Host": host})
                assert got.json()["id"] == f"http://{host}/secrets/app-db/{version}", round_
                assert got.json()["value"] == "pw-1"
        first = await c.get("/secrets/app-db/", params=kv)
        assert first.content == (await c.get("/secrets/app-db/", params=kv)).content
        await c.put("/v1/secrets/app-db", json={"value": "pw-2"})
        second = (await c.get("/secrets/app-db/", params=kv)).json()
        assert second["value"] == "pw-2"
        assert not second["id"].endswith(version)
        await c.patch("/v1/secrets/app-db", json={"metadata": {"team": "dispatch"}})
        assert (await c.get("/secrets/app-db/", params=kv)).json()["tags"] == {"team": "dispatch"}


@pytest.mark.parametrize(
    "raw",
    [b"", b"api-version=7.5", b"api-version", b"api-version=", b"=x", b"a=b=c", b"==",
     b"version=" + b"a" * 32, b"a=1&b=2", b"a=%41", b"a=b+c", b"x;y=1", b"a b=c"],
)  # fmt: skip
def test_the_fast_path_reads_a_query_as_the_standard_library_does(raw: bytes) -> None:
    expected = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    assert fastpath._query(raw) == expected
