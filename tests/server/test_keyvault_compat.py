"""Where the Key Vault-compatible API answers as Azure Key Vault does (found with the official
client), and where the native API keeps its stricter rules.

- Listing the versions of a name that never existed, or that is soft-deleted, is an empty list
  (200); ``/v1`` says 404.
- The content type is a hint: set accepts any value with any content type, and no read ever
  fails because of it (``/v1``, the library and the CLI read such a value back as text).
- Expired and not-yet-valid secrets can be read through Key Vault's get (its date-time controls
  are for the application); disabled ones cannot (403). ``/v1`` refuses all three.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.secrets._shared import http_challenge_cache
from served import Served, serve, server_settings
from test_keyvault_sdk import HOST, inner_code, kv_client

from strongroom import SecretsManager, Strongroom

API = "api-version=7.4"
JSON = "application/json"


@asynccontextmanager
async def kv_server(backend: str, home: Path, schema: str | None) -> AsyncIterator[Served]:
    """strongroom over TLS, for the official client (as kv.vault.test) and raw HTTP (as
    127.0.0.1)."""
    tls = home / "tls"
    tls.mkdir()
    app = await Strongroom.open(server_settings(backend, home, schema))
    try:
        async with serve(app, tls_dir=tls, hostnames=(HOST, "127.0.0.1"), url_host=HOST) as s:
            yield s
    finally:
        await app.close()


def raw(served: Served, token: str) -> httpx.AsyncClient:
    assert served.ca_path is not None
    context = ssl.create_default_context(cafile=str(served.ca_path))
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{served.port}",
        headers={"Authorization": f"Bearer {token}"},
        verify=context,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    backend: str = request.param
    schema = request.getfixturevalue("pg_schema") if backend == "postgres" else None
    return backend, schema


async def test_versions_of_a_missing_or_deleted_name_are_an_empty_list(
    store: tuple[str, str | None], tmp_path: Path
) -> None:
    http_challenge_cache.clear()
    async with kv_server(store[0], tmp_path, store[1]) as served:
        token = await served.token_for("kv-app", "admin:*")
        async with kv_client(served, token) as client:
            assert [v async for v in client.list_properties_of_secret_versions("never")] == []
            await client.set_secret("gone", "v")
            await client.delete_secret("gone")
            assert [v async for v in client.list_properties_of_secret_versions("gone")] == []
        async with raw(served, token) as c:
            for name in ("never", "gone"):
                listed = await c.get(f"/secrets/{name}/versions?{API}")
                assert (listed.status_code, listed.json()) == (200, {"value": [], "nextLink": None})
                # The native API keeps telling the two apart from a live secret.
                assert (await c.get(f"/v1/secrets/{name}/versions")).status_code == 404


async def test_the_content_type_is_a_hint_and_never_breaks_a_read(
    store: tuple[str, str | None], tmp_path: Path
) -> None:
    http_challenge_cache.clear()
    async with kv_server(store[0], tmp_path, store[1]) as served:
        token = await served.token_for("kv-app", "admin:*")
        async with kv_client(served, token) as client:
            made = await client.set_secret("labelled", "not json at all", content_type=JSON)
            assert (made.value, made.properties.content_type) == ("not json at all", JSON)
            await client.set_secret("relabelled", "plain text")
            await client.update_secret_properties("relabelled", content_type=JSON)
            for name, value in (("labelled", "not json at all"), ("relabelled", "plain text")):
                got = await client.get_secret(name)
                assert (got.value, got.properties.content_type) == (value, JSON)
        async with raw(served, token) as c:
            # A PATCH on the native API may label any value too; reads answer its text.
            assert (await c.post("/v1/secrets", json={"name": "native", "value": "x{"})).is_success
            patched = await c.patch("/v1/secrets/native", json={"content_type": JSON})
            assert patched.status_code == 200, patched.text
            for name, value in (("labelled", "not json at all"), ("native", "x{")):
                read = await c.get(f"/v1/secrets/{name}")
                assert read.status_code == 200, read.text
                assert (read.json()["value"], read.json()["content_type"]) == (value, JSON)
            # JSON that is JSON still reads back decoded.
            made = await c.post("/v1/secrets", json={"name": "doc", "value": {"a": [1]}})
            assert made.is_success
            assert (await c.get("/v1/secrets/doc")).json()["value"] == {"a": [1]}
        manager = SecretsManager(served.app)
        assert await manager.get_secret("native") == "x{"
        assert await manager.get_secret("doc") == {"a": [1]}


async def test_key_vault_get_serves_expired_and_not_yet_valid_but_not_disabled(
    store: tuple[str, str | None], tmp_path: Path
) -> None:
    http_challenge_cache.clear()
    now = datetime.now(UTC)
    async with kv_server(store[0], tmp_path, store[1]) as served:
        token = await served.token_for("kv-app", "admin:*")
        async with kv_client(served, token) as client:
            await client.set_secret("lapsed", "old", expires_on=now - timedelta(days=1))
            await client.set_secret("early", "soon", not_before=now + timedelta(days=1))
            await client.set_secret("off", "hidden", enabled=False)
            assert (await client.get_secret("lapsed")).value == "old"
            assert (await client.get_secret("early")).value == "soon"
            with pytest.raises(HttpResponseError) as refused:
                await client.get_secret("off")
            assert refused.value.status_code == 403
            assert inner_code(refused.value) == "SecretDisabled"
        async with raw(served, token) as c:
            lapsed_version = (await c.get("/v1/secrets/lapsed/properties")).json()["version"]
            by_version = await c.get(f"/secrets/lapsed/{lapsed_version}?{API}")
            assert (by_version.status_code, by_version.json()["value"]) == (200, "old")
            # The native API and the library keep the stricter rule.
            for name, code in (("lapsed", "expired"), ("early", "not_yet_valid")):
                native = await c.get(f"/v1/secrets/{name}")
                assert native.status_code == 403, native.text
                assert native.json()["error"]["code"] == code
