"""Bad text and extreme dates over HTTP, on SQLite and PostgreSQL alike: a clear 400 that
names the field, never a 500, never an outage (503), never a failed audit write, and nothing
changed. Also the request that used to hang the audit writer (a lone surrogate in a Key Vault
tag) while innocent reads went on beside it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import Served, serve, server_settings

from strongroom import Strongroom

API = "api-version=7.4"
CAP = 20.0  # an upper bound on every wait, never a timing assertion
EXTREME_DATES = ["9999-12-31T23:59:59.999999-12:00", "0001-01-01T00:00:00+14:00"]
LONE_SURROGATE = "\\ud800"  # as JSON writes it: decodes to a str no UTF-8 encoder accepts


@pytest.fixture(params=["sqlite", "postgres"])
async def server(
    request: pytest.FixtureRequest, tmp_path: Path, pg_schema: str
) -> AsyncIterator[Served]:
    app = await Strongroom.open(server_settings(request.param, tmp_path, pg_schema))
    try:
        async with serve(app) as running:
            yield running
    finally:
        await app.close()


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    error: dict[str, str] = body["error"]
    return error


async def assert_healthy(served: Served) -> None:
    """Nothing counted as an audit failure, and the service still says it is ready."""
    assert served.app.metrics.value("audit_write_failures_total") == 0
    async with served.client() as c:
        ready = await c.get("/readyz")
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize("when", EXTREME_DATES)
@pytest.mark.parametrize("field", ["expires_at", "not_before"])
async def test_extreme_dates_are_a_400_naming_the_field(
    server: Served, when: str, field: str
) -> None:
    async with server.admin() as c:
        created = await c.post("/v1/secrets", json={"name": "app-x", "value": "v", field: when})
        assert created.status_code == 400, created.text
        assert field in error_of(created)["message"]
        assert (await c.get("/v1/secrets/app-x")).status_code == 404  # nothing was made

        assert (
            await c.post("/v1/secrets", json={"name": "app-y", "value": "v"})
        ).status_code == 201
        before = (await c.get("/v1/secrets/app-y/properties")).json()
        patched = await c.patch("/v1/secrets/app-y", json={field: when})
        assert patched.status_code == 400, patched.text
        assert field in error_of(patched)["message"]
        updated = await c.put("/v1/secrets/app-y", json={"value": "w", field: when})
        assert updated.status_code == 400, updated.text
        assert (await c.get("/v1/secrets/app-y/properties")).json() == before
    await assert_healthy(server)


def as_json(body: object) -> dict[str, Any]:
    """Keyword arguments for httpx that send ``body`` as JSON with every non-ASCII character
    escaped, so a lone surrogate travels as JSON's ``\\ud800`` escape."""
    return {
        "content": json.dumps(body, ensure_ascii=True),
        "headers": {"Content-Type": "application/json"},
    }


@pytest.mark.parametrize("bad", ["nul\u0000here", "lone\ud800surrogate"])
async def test_bad_free_text_is_a_400_on_every_store(server: Served, bad: str) -> None:
    async with server.admin() as c:
        assert (
            await c.post("/v1/secrets", json={"name": "app-t", "value": "v"})
        ).status_code == 201
        grants = [{"actions": ["read"], "pattern": "x"}]
        attempts = {
            "revocation": await c.post("/v1/revocations", **as_json(
                {"secret_name": "app-t", "reason": "other", "description": bad})),
            "policy": await c.put("/v1/auth/policies/p-bad", **as_json(
                {"description": bad, "grants": grants})),
            "token": await c.post("/v1/auth/tokens", **as_json(
                {"identity": "someone", "description": bad})),
            "rotation": await c.put("/v1/rotation/app-t", **as_json(
                {"generator": "password", "description": bad})),
            "metadata": await c.post("/v1/secrets", **as_json(
                {"name": "app-m", "value": "v", "metadata": {"k": bad}})),
            "metadata key": await c.post("/v1/secrets", **as_json(
                {"name": "app-m", "value": "v", "metadata": {bad: "v"}})),
        }  # fmt: skip
        if "\x00" in bad:  # a URL carries UTF-8 only: no surrogate can reach a query
            attempts["audit actor"] = await c.get("/v1/audit/events", params={"actor": bad})
        for what, response in attempts.items():
            assert response.status_code == 400, (what, response.status_code, response.text)
            assert error_of(response)["code"] == "bad_parameter", what
        # Nothing was made.
        assert (await c.get("/v1/revocations", params={"secret": "app-t"})).json() == []
        assert (await c.get("/v1/auth/policies/p-bad")).status_code == 404
        assert (await c.get("/v1/rotation/app-t")).json().get("configured") is not True
        assert (await c.get("/v1/secrets/app-m")).status_code == 404
    await assert_healthy(server)


async def test_a_lone_surrogate_in_a_key_vault_tag_is_refused_while_reads_go_on(
    server: Served,
) -> None:
    """The request that used to kill the audit writer: twenty of them beside 40 reads."""
    body = '{"value":"x","tags":{"k":"' + LONE_SURROGATE + '"}}'
    async with server.admin() as c:
        assert (
            await c.post("/v1/secrets", json={"name": "innocent", "value": "v"})
        ).status_code == 201

        async def bad_set() -> httpx.Response:
            return await c.put(
                f"/secrets/s1?{API}", content=body, headers={"Content-Type": "application/json"}
            )

        answers = await asyncio.wait_for(
            asyncio.gather(
                *(bad_set() for _ in range(20)),
                *(c.get("/v1/secrets/innocent") for _ in range(40)),
            ),
            CAP,
        )
        refused, reads = answers[:20], answers[20:]
        assert {r.status_code for r in refused} == {400}, {r.text for r in refused}
        assert {error_of(r)["code"] for r in refused} == {"BadParameter"}
        assert [r.status_code for r in reads] == [200] * 40
        assert (await c.get(f"/secrets/s1/?{API}")).status_code == 404
        patched = await c.patch(
            f"/secrets/innocent/?{API}", content=body.replace('"value":"x",', ""),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert patched.status_code == 400, patched.text
    await assert_healthy(server)
