"""Azure's own async keys clients (``KeyClient``, ``CryptographyClient``) against strongroom's
Key Vault-compatible keys API, over TLS to ``strongroom serve``, on SQLite and PostgreSQL."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import AioHttpTransport
from azure.keyvault.keys._shared import http_challenge_cache
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.keys.crypto import KeyWrapAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient
from cryptography.hazmat.primitives.serialization import load_der_private_key
from served import Served
from test_keyvault_compat import kv_server
from test_keyvault_sdk import HOST, StaticCredential, StaticResolver, inner_code

from strongroom import SecretsAudit
from strongroom.core.errors import TamperedError
from strongroom.db.dialect import POSTGRES, SQLITE
from strongroom.services.keys.vault_keys import VaultKeys

API = "api-version=7.4"


def _transport(served: Served) -> AioHttpTransport:
    assert served.ca_path is not None
    context = ssl.create_default_context(cafile=str(served.ca_path))
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=StaticResolver({HOST: "127.0.0.1"}), ssl=context)
    )
    return AioHttpTransport(session=session)


@asynccontextmanager
async def key_client(served: Served, token: str) -> AsyncIterator[KeyClient]:
    client = KeyClient(
        f"https://{HOST}:{served.port}", StaticCredential(token), transport=_transport(served)
    )
    async with client:
        yield client


@asynccontextmanager
async def crypto_client(served: Served, token: str, key: Any) -> AsyncIterator[CryptographyClient]:
    client = CryptographyClient(key, StaticCredential(token), transport=_transport(served))
    async with client:
        yield client


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


async def test_keys_wrap_and_unwrap_through_the_official_clients(
    store: tuple[str, str | None], tmp_path: Path
) -> None:
    http_challenge_cache.clear()
    async with kv_server(store[0], tmp_path, store[1]) as served:
        token = await served.token_for("kv-keys", "admin:*")
        async with key_client(served, token) as keys:
            first = await keys.create_rsa_key("unseal-key", size=3072, tags={"use": "unseal"})
            assert first.key_type == "RSA"
            assert first.key.n is not None
            assert len(first.key.n) * 8 == 3072
            assert first.key.d is None  # the public half only
            second = await keys.create_rsa_key("unseal-key", size=2048)
            assert second.properties.version != first.properties.version
            current = await keys.get_key("unseal-key")
            assert current.properties.version == second.properties.version
            assert (await keys.get_key("unseal-key", first.properties.version)).properties.tags == {
                "use": "unseal"
            }
            versions = [v.version async for v in keys.list_properties_of_key_versions("unseal-key")]
            assert sorted(versions) == sorted([first.properties.version, second.properties.version])
            assert [k.name async for k in keys.list_properties_of_keys()] == ["unseal-key"]
            with pytest.raises(ResourceNotFoundError):
                await keys.get_key("no-such-key")

            secret = b"\x01" * 32
            for algorithm in (KeyWrapAlgorithm.rsa_oaep_256, KeyWrapAlgorithm.rsa_oaep):
                # Wrapped locally by the SDK with the public half, unwrapped by the server.
                async with crypto_client(served, token, first) as crypto:
                    wrapped = (await crypto.wrap_key(algorithm, secret)).encrypted_key
                async with crypto_client(served, token, first.id) as remote:
                    assert (await remote.unwrap_key(algorithm, wrapped)).key == secret
            # The server's own wrapKey, on the current version (a key id without a version).
            async with raw(served, token) as http:
                body = {"alg": "RSA-OAEP-256", "value": "AQIDBA"}
                answer = await http.post(f"/keys/unseal-key/wrapkey?{API}", json=body)
                assert answer.status_code == 200
                assert answer.json()["kid"].endswith(
                    f"/keys/unseal-key/{second.properties.version}"
                )
            async with crypto_client(served, token, second.id) as remote:
                unwrapped = await remote.unwrap_key(
                    KeyWrapAlgorithm.rsa_oaep_256,
                    _b64url(answer.json()["value"]),
                )
                assert unwrapped.key == b"\x01\x02\x03\x04"

            # Disabled: neither handed out nor used.
            await keys.update_key_properties("unseal-key", first.properties.version, enabled=False)
            async with crypto_client(served, token, first.id) as remote:
                with pytest.raises(HttpResponseError) as refused:
                    await remote.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)
            assert refused.value.status_code == 403
            assert inner_code(refused.value) == "KeyDisabled"
            with pytest.raises(HttpResponseError) as hidden:
                await keys.get_key("unseal-key", first.properties.version)
            assert hidden.value.status_code == 403

        trail = await SecretsAudit(served.app).get_audit_trail(limit=200)
        actions = {e["action"] for e in trail}
        assert {"KEY_CREATE", "KEY_DESCRIBE", "KEY_LIST", "KEY_WRAP", "KEY_UNWRAP"} <= actions
        assert {"KEY_UPDATE"} <= actions
        refused_unwrap = [
            e for e in trail if e["action"] == "KEY_UNWRAP" and e["result"] == "FAILURE"
        ]
        assert refused_unwrap
        assert refused_unwrap[0]["error_code"] == "key_disabled"
        assert secret.hex() not in repr(trail)


async def test_private_keys_are_sealed_at_rest_and_survive_a_keyring_rotation(
    store: tuple[str, str | None], tmp_path: Path
) -> None:
    http_challenge_cache.clear()
    async with kv_server(store[0], tmp_path, store[1]) as served:
        token = await served.token_for("kv-keys", "admin:*")
        async with key_client(served, token) as keys:
            key = await keys.create_rsa_key("rest-key", size=2048)
            async with crypto_client(served, token, key) as crypto:
                wrapped = (
                    await crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
                ).encrypted_key
            rows = await _stored_private_halves(served)
            assert len(rows) == 1
            modulus = bytes(key.key.n or b"")
            assert modulus not in rows[0]  # a PKCS#8 key in the clear would hold its modulus
            with pytest.raises(ValueError, match="Could not deserialize"):
                load_der_private_key(rows[0], password=None)

            # The enabled flag is under the row's MAC: switched on behind strongroom's back,
            # the version is refused as tampered rather than used.
            await keys.update_key_properties("rest-key", key.properties.version, enabled=False)
            await _sql(served, "UPDATE vault_keys SET enabled = 1")
            with pytest.raises(TamperedError):
                await VaultKeys(served.app).get_key("rest-key")
            await _sql(served, "UPDATE vault_keys SET enabled = 0")
            await keys.update_key_properties("rest-key", key.properties.version, enabled=True)

            rotated = await served.app.store.rotate_key()
            assert rotated.kek_version == 2
            assert await _kek_versions(served) == {2}
            async with crypto_client(served, token, key.id) as remote:
                assert (await remote.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)).key == (
                    b"k" * 32
                )


async def test_bad_input_and_policies_are_refused_and_change_nothing(tmp_path: Path) -> None:
    http_challenge_cache.clear()
    async with kv_server("sqlite", tmp_path, None) as served:
        admin = await served.token_for("kv-admin", "admin:*")
        reader = await served.token_for("kv-reader", "read,list:other-*")
        async with raw(served, admin) as http:
            made = await http.post(f"/keys/k1/create?{API}", json={"kty": "RSA", "key_size": 2048})
            assert made.status_code == 200
            kid = made.json()["key"]["kid"]
            for body, words in (
                ({"kty": "EC", "key_size": 2048}, "kty"),
                ({"kty": "RSA", "key_size": 1024}, "key_size"),
                ({"kty": "RSA", "key_ops": ["sign"]}, "unsupported key operations"),
                ({"kty": "RSA", "attributes": {"exp": 2000000000}}, "expiry"),
            ):
                refused = await http.post(f"/keys/k2/create?{API}", json=body)
                assert refused.status_code == 400, body
                assert words in refused.json()["error"]["message"]
            assert (await http.get(f"/keys/k2?{API}")).json()["error"]["code"] == "KeyNotFound"

            bad_alg = await http.post(
                f"/keys/k1/unwrapkey?{API}", json={"alg": "RSA1_5", "value": "AA"}
            )
            assert bad_alg.status_code == 400
            garbage = "Z" * 342  # 256 bytes of base64url that no RSA-OAEP wrap produced
            failed = await http.post(
                f"/keys/k1/unwrapkey?{API}", json={"alg": "RSA-OAEP-256", "value": garbage}
            )
            assert failed.status_code == 400
            assert failed.json()["error"]["message"] == "the value does not unwrap with this key"
            assert garbage not in failed.text
        async with raw(served, reader) as http:
            assert (
                await http.post(f"/keys/k1/create?{API}", json={"kty": "RSA"})
            ).status_code == 403
            assert (await http.get(f"/keys/k1?{API}")).status_code == 403
            assert (await http.get(f"/keys?{API}")).json()["value"] == []
            wrap = await http.post(
                f"/keys/k1/wrapkey?{API}", json={"alg": "RSA-OAEP-256", "value": "AA"}
            )
            assert wrap.status_code == 403
        async with raw(served, admin) as http:
            versions = (await http.get(f"/keys/k1/versions?{API}")).json()["value"]
            assert [v["kid"] for v in versions] == [kid]  # nothing refused added a version


async def test_the_azure_profile_keeps_no_keys(tmp_path: Path) -> None:
    """A store without a key table answers 501, saying where keys can live."""
    from helpers_vault import azure_settings, vault_server
    from strongroom import Strongroom
    from strongroom.core.errors import UnsupportedError

    async with vault_server(tmp_path / "vault") as vault:
        app = await Strongroom.open(azure_settings(vault, tmp_path / "home"))
        try:
            with pytest.raises(UnsupportedError, match="SQLite, PostgreSQL or memory"):
                await VaultKeys(app).create_key("k")
        finally:
            await app.close()


def _b64url(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _sql(served: Served, statement: str) -> None:
    """Change the table directly, as someone with write access to the database could."""
    store: Any = served.app.store
    runner = store.vault_keys()._run
    dialect = SQLITE if runner.dialect == "sqlite" else POSTGRES
    assert await runner.execute(dialect.prepare(statement), {})


async def _stored_private_halves(served: Served) -> list[bytes]:
    store: Any = served.app.store
    runner = store.vault_keys()._run
    dialect = SQLITE if runner.dialect == "sqlite" else POSTGRES
    rows = await runner.fetch(dialect.prepare("SELECT private_key FROM vault_keys"), {})
    return [bytes(r["private_key"]) for r in rows]


async def _kek_versions(served: Served) -> set[int]:
    store: Any = served.app.store
    runner = store.vault_keys()._run
    dialect = SQLITE if runner.dialect == "sqlite" else POSTGRES
    rows = await runner.fetch(dialect.prepare("SELECT kek_version FROM vault_keys"), {})
    return {int(r["kek_version"]) for r in rows}
