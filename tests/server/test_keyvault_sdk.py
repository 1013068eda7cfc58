"""Azure's own async Key Vault client against strongroom: the whole secrets lifecycle.

``azure.keyvault.secrets.aio.SecretClient`` runs unmodified over TLS (a test CA) to a vault
host with several labels (``kv.vault.test``, mapped to 127.0.0.1 by the session's resolver), so
its challenge flow and its default check of the challenge's resource both run as against Azure.
The credential hands out a strongroom token. The lifecycle runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.keyvault.secrets._shared import http_challenge_cache
from azure.keyvault.secrets.aio import SecretClient
from served import Served, serve, server_settings

from strongroom import SecretsAudit, Strongroom

HOST = "kv.vault.test"
VERSION = re.compile(r"[0-9a-f]{32}")
FAR_FUTURE = 4_102_444_800  # 2100-01-01


class StaticCredential:
    """An ``AsyncTokenCredential`` that hands out one strongroom token, recording the scopes
    the client asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[str] = []

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, FAR_FUTURE)

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        self.scopes.extend(scopes)
        return AccessTokenInfo(self.token, FAR_FUTURE)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


class StaticResolver(AbstractResolver):
    """Names that do not resolve here (``*.test``) mapped to loopback; anything else fails."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.names:
            raise OSError(f"{host} is not a test host")
        return [
            ResolveResult(
                hostname=host,
                host=self.names[host],
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@dataclass
class Wire:
    """Every request the client sent: (method, URL, status, whether it carried a token)."""

    calls: list[tuple[str, str, int, bool]] = field(default_factory=list)

    def trace(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def ended(
            session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
        ) -> None:
            authorized = "Authorization" in params.headers
            self.calls.append((params.method, str(params.url), params.response.status, authorized))

        config.on_request_end.append(ended)
        return config

    def pages(self, path: str) -> list[str]:
        """URLs of successful GETs of ``path`` (the listing's pages)."""
        return [
            url
            for method, url, status, _ in self.calls
            if method == "GET" and status == 200 and url.split("?")[0].endswith(path)
        ]


@asynccontextmanager
async def kv_server(
    backend: str, home: Path, schema: str | None = None, **changes: Any
) -> AsyncIterator[Served]:
    """strongroom on ``backend``, over TLS for ``kv.vault.test``."""
    tls = home / "tls"
    tls.mkdir()
    app = await Strongroom.open(server_settings(backend, home, schema, **changes))
    try:
        async with serve(app, tls_dir=tls, hostnames=(HOST,), url_host=HOST) as running:
            yield running
    finally:
        await app.close()


def vault_url(served: Served) -> str:
    return f"https://{HOST}:{served.port}"


@asynccontextmanager
async def kv_client(
    served: Served, credential: str | StaticCredential, wire: Wire | None = None
) -> AsyncIterator[SecretClient]:
    """The official async client, its transport an aiohttp session that trusts the test CA and
    resolves the vault host to loopback (the SDK's documented ``transport=`` option)."""
    assert served.ca_path is not None
    context = ssl.create_default_context(cafile=str(served.ca_path))
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=StaticResolver({HOST: "127.0.0.1"}), ssl=context),
        trace_configs=[wire.trace()] if wire is not None else None,
    )
    transport = AioHttpTransport(session=session)
    if isinstance(credential, str):
        credential = StaticCredential(credential)
    client = SecretClient(vault_url(served), credential, transport=transport)
    async with client:
        yield client


def inner_code(error: HttpResponseError) -> str | None:
    """The ``innererror.code`` of a Key Vault error answer."""
    assert error.response is not None
    inner = error.response.json()["error"].get("innererror") or {}
    code = inner.get("code")
    return code if isinstance(code, str) else None


def close_to(when: datetime | None, expected: datetime, seconds: float = 5) -> bool:
    return when is not None and abs((when - expected).total_seconds()) <= seconds


# -- the lifecycle, on both durable stores -----------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def durable_store(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """A backend and its PostgreSQL schema (a fresh one; no PostgreSQL is a failure)."""
    backend: str = request.param
    schema = request.getfixturevalue("pg_schema") if backend == "postgres" else None
    return backend, schema


async def test_lifecycle_through_the_official_client(
    durable_store: tuple[str, str | None], tmp_path: Path
) -> None:
    backend, schema = durable_store
    http_challenge_cache.clear()  # the SDK caches challenges per host:port, process-wide
    async with kv_server(backend, tmp_path, schema) as served:
        wire = Wire()
        credential = StaticCredential(await served.token_for("kv-app", "admin:*"))
        async with kv_client(served, credential, wire) as client:
            times = Times.around_now()
            v1, v2 = await _set_and_get(served, client, wire, times)
            # one token, asked for once, for the challenge's resource: the vault host minus
            # its first label
            assert credential.scopes == [f"https://vault.test:{served.port}/.default"]
            await _update_properties(client, v1, v2, times)
            await _page_past_25(client, wire)
            await _delete_and_recover(served, client, v1, v2)
            await _backup_purge_and_restore(client, v1, v2)
        await _audited(served)


@dataclass(frozen=True)
class Times:
    now: datetime
    not_before: datetime
    expires: datetime

    @classmethod
    def around_now(cls) -> Times:
        now = datetime.now(UTC).replace(microsecond=0)
        return cls(now, now - timedelta(hours=1), now + timedelta(days=30))


async def _set_and_get(
    served: Served, client: SecretClient, wire: Wire, times: Times
) -> tuple[str, str]:
    """set_secret with every property, a second version, get latest and by version."""
    base = vault_url(served)
    first = await client.set_secret(
        "Db-Password",
        "s3cret-one",
        content_type="text/plain",
        tags={"env": "test", "team": "core"},
        enabled=True,
        not_before=times.not_before,
        expires_on=times.expires,
    )
    v1 = first.properties.version
    assert v1 is not None
    assert VERSION.fullmatch(v1)
    assert first.name == "Db-Password"
    assert first.value == "s3cret-one"
    assert first.id == f"{base}/secrets/Db-Password/{v1}"
    assert first.properties.vault_url == base
    assert first.properties.content_type == "text/plain"
    assert first.properties.tags == {"env": "test", "team": "core"}
    assert first.properties.enabled is True
    assert first.properties.not_before == times.not_before
    assert first.properties.expires_on == times.expires
    assert close_to(first.properties.created_on, times.now, 60)
    assert first.properties.recoverable_days == 90
    assert first.properties.recovery_level == "Recoverable+Purgeable"

    # The first call went out without a token, met the challenge, and was sent again with one.
    method, url, status, authorized = wire.calls[0]
    assert (method, status, authorized) == ("PUT", 401, False)
    assert url.startswith(f"{base}/secrets/Db-Password?api-version=")
    assert wire.calls[1][2:] == (200, True)
    assert all(authorized for *_, authorized in wire.calls[1:])

    # a second version through another spelling of the name
    second = await client.set_secret("db-password", "s3cret-two")
    v2 = second.properties.version
    assert v2 is not None
    assert v2 != v1
    assert second.name == "Db-Password"  # the name as first stored
    assert second.properties.tags == {}  # a set replaces the tags, as in Key Vault
    assert second.properties.expires_on is None

    # get_secret: the latest (GET /secrets/{name}/) and by version
    latest = await client.get_secret("DB-PASSWORD")
    assert (latest.value, latest.properties.version) == ("s3cret-two", v2)
    older = await client.get_secret("db-password", v1)
    assert older.value == "s3cret-one"
    assert older.properties.content_type == "text/plain"
    assert older.properties.not_before == times.not_before
    assert ("GET", f"{base}/secrets/DB-PASSWORD/") in [
        (m, u.split("?")[0]) for m, u, *_ in wire.calls
    ]
    return v1, v2


async def _update_properties(client: SecretClient, v1: str, v2: str, times: Times) -> None:
    """Tags and expiry of the latest version; enabled of an older one (others untouched)."""
    later = times.now + timedelta(days=60)
    updated = await client.update_secret_properties(
        "db-password", tags={"env": "prod"}, expires_on=later
    )
    assert updated.version == v2
    assert updated.tags == {"env": "prod"}
    assert updated.expires_on == later
    assert updated.enabled is True
    disabled = await client.update_secret_properties("db-password", v1, enabled=False)
    assert disabled.enabled is False
    assert disabled.expires_on == times.expires  # what was not sent stays as it was
    assert disabled.not_before == times.not_before
    assert disabled.tags == {"env": "test", "team": "core"}
    with pytest.raises(HttpResponseError) as refused:
        await client.get_secret("db-password", v1)
    assert refused.value.status_code == 403
    assert refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    assert inner_code(refused.value) == "SecretDisabled"
    assert (await client.get_secret("db-password")).value == "s3cret-two"
    await client.update_secret_properties("db-password", v1, enabled=True)

    versions = [p async for p in client.list_properties_of_secret_versions("DB-password")]
    assert sorted(p.version or "" for p in versions) == sorted([v1, v2])
    assert all(p.name == "Db-Password" for p in versions)


async def _page_past_25(client: SecretClient, wire: Wire) -> None:
    """30 secrets and 30 versions: every item comes back, over more than one page."""
    for i in range(30):
        await client.set_secret(f"page-{i:02d}", f"page-value-{i}")
    listed = [p async for p in client.list_properties_of_secrets()]
    names = [p.name for p in listed]
    assert len(names) == len(set(names)) == 31
    assert set(names) == {"Db-Password"} | {f"page-{i:02d}" for i in range(30)}
    assert all(p.version is None for p in listed)  # items name the secret, not a version
    pages = wire.pages("/secrets")
    assert len(pages) == 2
    assert "skiptoken" in pages[1]

    written = [await client.set_secret("many", f"many-value-{i}") for i in range(30)]
    many = [p.version async for p in client.list_properties_of_secret_versions("many")]
    assert sorted(v or "" for v in many) == sorted(s.properties.version or "" for s in written)
    assert len(wire.pages("/secrets/many/versions")) == 2


async def _delete_and_recover(served: Served, client: SecretClient, v1: str, v2: str) -> None:
    base = vault_url(served)
    deleted = await client.delete_secret("db-password")
    assert deleted.name == "Db-Password"
    assert deleted.recovery_id == f"{base}/deletedsecrets/Db-Password"
    assert deleted.deleted_date is not None
    assert deleted.scheduled_purge_date is not None
    assert close_to(deleted.scheduled_purge_date, deleted.deleted_date + timedelta(days=90), 2)
    assert close_to(deleted.deleted_date, datetime.now(UTC), 60)
    assert deleted.properties.version == v2
    assert deleted.properties.recoverable_days == 90
    with pytest.raises(ResourceNotFoundError):
        await client.get_secret("db-password")

    # the name stays held by the deleted secret
    with pytest.raises(ResourceExistsError) as held:
        await client.set_secret("DB-PASSWORD", "s3cret-three")
    assert held.value.status_code == 409
    assert held.value.error is not None
    assert held.value.error.code == "Conflict"
    assert inner_code(held.value) == "ObjectIsDeletedButRecoverable"
    assert held.value.response is not None
    assert "s3cret-three" not in held.value.response.text()

    found = await client.get_deleted_secret("DB-PASSWORD")
    assert found.recovery_id == deleted.recovery_id
    assert found.scheduled_purge_date == deleted.scheduled_purge_date
    gone = [d async for d in client.list_deleted_secrets()]
    assert [d.name for d in gone] == ["Db-Password"]
    assert gone[0].recovery_id == deleted.recovery_id
    assert gone[0].properties.version is None

    # recover: the properties come back and the values are readable again
    recovered = await client.recover_deleted_secret("db-password")
    assert recovered.name == "Db-Password"
    assert recovered.version == v2
    assert (await client.get_secret("db-password")).value == "s3cret-two"
    assert (await client.get_secret("db-password", v1)).value == "s3cret-one"
    assert [d async for d in client.list_deleted_secrets()] == []


async def _backup_purge_and_restore(client: SecretClient, v1: str, v2: str) -> None:
    backup = await client.backup_secret("db-password")
    assert isinstance(backup, bytes)
    assert b"s3cret" not in backup
    await client.delete_secret("db-password")
    assert await client.purge_deleted_secret("db-password") is None
    with pytest.raises(ResourceNotFoundError):
        await client.get_deleted_secret("db-password")
    with pytest.raises(ResourceNotFoundError):
        await client.get_secret("db-password")

    restored = await client.restore_secret_backup(backup)
    assert restored.name == "Db-Password"
    assert restored.version == v2
    back = [p.version async for p in client.list_properties_of_secret_versions("db-password")]
    assert sorted(v or "" for v in back) == sorted([v1, v2])
    assert (await client.get_secret("db-password")).value == "s3cret-two"
    assert (await client.get_secret("db-password", v1)).value == "s3cret-one"
    with pytest.raises(ResourceExistsError):  # over a live secret
        await client.restore_secret_backup(backup)


async def _audited(served: Served) -> None:
    """Every call was audited under the token's identity, with the SDK's user agent; a set
    that created the secret left a CREATE, not a failed UPDATE first."""
    trail = await SecretsAudit(served.app).get_audit_trail("Db-Password", limit=1000)
    assert {row["actor_id"] for row in trail} == {"kv-app"}
    assert {"CREATE", "UPDATE", "READ", "DELETE", "RECOVER", "PURGE"} <= {
        row["action"] for row in trail
    }
    assert all("azsdk-python-keyvault-secrets" in (row["actor_user_agent"] or "") for row in trail)
    first = trail[-1]
    assert (first["action"], first["result"]) == ("CREATE", "SUCCESS")
    failures = [(row["action"], row["error_code"]) for row in trail if row["result"] != "SUCCESS"]
    assert all(code != "not_found" or action != "UPDATE" for action, code in failures)


# -- errors through the client -----------------------------------------------------------------


@pytest.fixture
async def kv_served(tmp_path: Path) -> AsyncIterator[Served]:
    async with kv_server("sqlite", tmp_path) as running:
        yield running


async def test_a_missing_secret_is_resource_not_found(kv_served: Served) -> None:
    token = await kv_served.token_for("kv-app", "admin:*")
    async with kv_client(kv_served, token) as client:
        with pytest.raises(ResourceNotFoundError) as missing:
            await client.get_secret("no-such-secret")
        assert missing.value.status_code == 404
        assert missing.value.error is not None
        assert missing.value.error.code == "SecretNotFound"
        with pytest.raises(ResourceNotFoundError):
            await client.get_secret("no-such-secret", "0" * 32)
        with pytest.raises(ResourceNotFoundError):
            await client.get_deleted_secret("no-such-secret")
        with pytest.raises(ResourceNotFoundError):
            await client.delete_secret("no-such-secret")
        with pytest.raises(ResourceNotFoundError):
            await client.update_secret_properties("no-such-secret", enabled=False)
        created = await client.set_secret("present", "here")
        with pytest.raises(ResourceNotFoundError):
            await client.get_secret("present", "f" * 32)
        assert created.properties.version != "f" * 32


async def test_an_identity_outside_its_policy_is_forbidden_by_rbac(kv_served: Served) -> None:
    admin = await kv_served.token_for("kv-admin", "admin:*")
    reader = await kv_served.token_for("kv-reader", "read,list:app-*")
    async with kv_client(kv_served, admin) as client:
        await client.set_secret("app-one", "one")
        await client.set_secret("ops-two", "two")
    async with kv_client(kv_served, reader) as client:
        assert (await client.get_secret("APP-one")).value == "one"
        with pytest.raises(HttpResponseError) as denied:
            await client.get_secret("ops-two")
        assert denied.value.status_code == 403
        assert denied.value.error is not None
        assert denied.value.error.code == "Forbidden"
        assert inner_code(denied.value) == "ForbiddenByRbac"
        with pytest.raises(HttpResponseError) as no_write:
            await client.set_secret("app-one", "changed")
        assert no_write.value.status_code == 403
        assert inner_code(no_write.value) == "ForbiddenByRbac"
        assert "changed" not in no_write.value.response.text()  # type: ignore[union-attr]
        with pytest.raises(HttpResponseError) as no_delete:
            await client.delete_secret("app-one")
        assert no_delete.value.status_code == 403
        # listing shows only what the policy covers
        assert [p.name async for p in client.list_properties_of_secrets()] == ["app-one"]
    async with kv_client(kv_served, admin) as client:
        assert (await client.get_secret("app-one")).value == "one"


async def test_a_revoked_token_is_a_client_authentication_error(kv_served: Served) -> None:
    token = await kv_served.token_for("kv-app", "admin:*")
    async with kv_client(kv_served, token) as client:
        await client.set_secret("before", "works")
        record = await kv_served.app.access.revoke_token(token)
        assert record.revoked_at is not None
        with pytest.raises(ClientAuthenticationError) as refused:
            await client.get_secret("before")
        assert refused.value.status_code == 401
        assert refused.value.error is not None
        assert refused.value.error.code == "Unauthorized"


async def test_the_client_refuses_plain_http(tmp_path: Path) -> None:
    app = await Strongroom.open(server_settings("sqlite", tmp_path))
    try:
        async with serve(app) as served:
            token = await served.token_for("kv-app", "admin:*")
            credential = StaticCredential(token)
            async with SecretClient(served.base_url, credential, retry_total=0) as client:
                with pytest.raises(Exception, match="non-TLS") as refused:
                    await client.get_secret("anything")
            assert type(refused.value).__name__ == "ServiceRequestError"
            assert credential.scopes == []
    finally:
        await app.close()


async def test_disabled_on_creation_is_forbidden_until_enabled(kv_served: Served) -> None:
    token = await kv_served.token_for("kv-app", "admin:*")
    async with kv_client(kv_served, token) as client:
        created = await client.set_secret("later", "not-yet", enabled=False)
        assert created.properties.enabled is False
        with pytest.raises(HttpResponseError) as refused:
            await client.get_secret("later")
        assert refused.value.status_code == 403
        assert inner_code(refused.value) == "SecretDisabled"
        assert "not-yet" not in refused.value.response.text()  # type: ignore[union-attr]
        await client.update_secret_properties("later", enabled=True)
        assert (await client.get_secret("later")).value == "not-yet"
