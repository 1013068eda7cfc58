"""The remote profile's SecretsManager against a real server over HTTPS: same results, same
typed errors, the token's identity acting, nothing opened or written locally."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from helpers_remote import remote_server, remote_settings
from helpers_serve import Served
from strongroom import (
    AuditAction,
    DeletedSecretConflictError,
    SecretAlreadyExistsError,
    SecretDisabledError,
    SecretIsDeletedError,
    SecretNotFoundError,
    SecretsAudit,
    SecretsManager,
    ValidationError,
    acting_as,
)
from strongroom.core.errors import AuthenticationError, PermissionDeniedError
from strongroom.services.remote.manager import RemoteSecretsManager


def files_in(path: Path) -> list[Path]:
    return list(path.iterdir())


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with remote_server(tmp_path_factory.mktemp("remote")) as running:
        yield running


@pytest.fixture
def client_home(tmp_path: Path) -> Path:
    home = tmp_path / "client-home"
    home.mkdir()
    return home


@pytest.fixture
async def manager(server: Served, client_home: Path) -> AsyncIterator[SecretsManager]:
    token = await server.token_for("deploy-bot", "read,write,list,delete:rm-*")
    async with SecretsManager(settings=remote_settings(server, token, client_home)) as remote:
        yield remote


async def test_settings_with_an_address_build_the_remote_manager(
    server: Served, client_home: Path
) -> None:
    built = SecretsManager(settings=remote_settings(server, "srt_x", client_home))
    assert type(built) is RemoteSecretsManager
    assert isinstance(built, SecretsManager)
    local = SecretsManager(server.app)
    assert type(local) is SecretsManager


async def test_round_trip_matches_the_local_shapes(
    manager: SecretsManager, server: Served, client_home: Path
) -> None:
    created = await manager.create_secret(
        "rm-api", "v1-value", "api_key", {"env": "prod"}, expires_in_days=30
    )
    assert created["name"] == "rm-api"
    assert isinstance(created["created_at"], datetime)
    assert isinstance(created["expires_at"], datetime)
    assert created["secret_type"] == "api_key"
    assert await manager.get_secret("rm-api") == "v1-value"
    await manager.update_secret("rm-api", "v2-value")
    versions = await manager.get_secret_versions("rm-api")
    assert [v["current"] for v in versions] == [True, False]
    assert await manager.get_secret("rm-api", version=versions[-1]["version"]) == "v1-value"
    assert await manager.get_secret("rm-api", version=versions[-1]["version"][:8]) == "v1-value"
    local = await SecretsManager(server.app).get_secret_properties("rm-api")
    remote = await manager.get_secret_properties("rm-api")
    assert remote == local

    await manager.create_secret("rm-db", {"user": "fleet", "password": "pw"})
    assert await manager.get_secret("rm-db") == {"user": "fleet", "password": "pw"}
    bundle = await manager.get_secret_bundle("rm-db")
    assert "pw" not in repr(bundle.value)
    assert {s["name"] for s in await manager.list_secrets()} >= {"rm-api", "rm-db"}

    await manager.delete_secret("rm-api")
    assert [d["name"] for d in await manager.list_deleted_secrets()] == ["rm-api"]
    assert isinstance((await manager.get_deleted_secret("rm-api"))["deleted_at"], datetime)
    await manager.recover_deleted_secret("rm-api")
    assert await manager.get_secret("rm-api") == "v2-value"
    await manager.delete_secret("rm-db", immediate=True)
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("rm-db")
    assert files_in(client_home) == []  # no key file, no database: nothing local


async def test_server_errors_come_back_as_the_same_typed_errors(manager: SecretsManager) -> None:
    await manager.create_secret("rm-err", "x1")
    with pytest.raises(SecretAlreadyExistsError):
        await manager.create_secret("rm-err", "x2")
    with pytest.raises(SecretNotFoundError) as missing:
        await manager.get_secret("rm-nothing-here")
    assert type(missing.value) is SecretNotFoundError
    assert "rm-nothing-here" in str(missing.value)
    await manager.update_secret_properties("rm-err", enabled=False)
    with pytest.raises(SecretDisabledError):
        await manager.get_secret("rm-err")
    await manager.delete_secret("rm-err")
    with pytest.raises(SecretIsDeletedError):
        await manager.get_secret("rm-err")
    with pytest.raises(DeletedSecretConflictError):
        await manager.create_secret("rm-err", "x3")
    await manager.purge_deleted_secret("rm-err")
    with pytest.raises(ValidationError):
        await manager.create_secret("rm bad name", "x")
    with pytest.raises(ValidationError):
        await manager.create_secret("rm-empty", "")


async def test_a_policy_refusal_names_the_identity_and_a_bad_token_says_login(
    server: Served, client_home: Path
) -> None:
    token = await server.token_for("reader-only", "read:other-*")
    async with SecretsManager(settings=remote_settings(server, token, client_home)) as remote:
        with pytest.raises(PermissionDeniedError) as refused:
            await remote.create_secret("rm-denied", "nope")
        assert "reader-only" in str(refused.value)
    bogus = "srt_0123456789abcdef_" + "A" * 43
    async with SecretsManager(settings=remote_settings(server, bogus, client_home)) as remote:
        with pytest.raises(AuthenticationError) as unknown:
            await remote.list_secrets()
    message = str(unknown.value)
    assert "token expired or revoked; run `strongroom login`" in message
    assert server.base_url in message
    assert bogus not in message
    assert "A" * 43 not in repr(unknown.value)


async def test_the_tokens_identity_acts_and_a_claimed_name_changes_nothing(
    server: Served, client_home: Path
) -> None:
    token = await server.token_for("svc-billing", "read,write:rm-claim-*")
    async with SecretsManager(settings=remote_settings(server, token, client_home)) as remote:
        with acting_as("ciso"):
            await remote.create_secret("rm-claim-1", "c1")
    trail = await SecretsAudit(server.app).get_audit_trail("rm-claim-1", AuditAction.CREATE)
    assert [event["actor_id"] for event in trail] == ["svc-billing"]
    assert "(on behalf of ciso)" in trail[0]["actor_user_agent"]


async def test_no_argument_facade_follows_strongroom_addr(
    server: Served, client_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.services.remote.session import reset_default_client

    token = await server.token_for("env-user", "read,write,delete:rm-env-*")
    assert server.ca_path is not None
    for key, value in {
        "STRONGROOM_ADDR": server.base_url,
        "STRONGROOM_TOKEN": token,
        "STRONGROOM_CACERT": str(server.ca_path),
        "STRONGROOM_HOME": str(client_home),
    }.items():
        monkeypatch.setenv(key, value)
    try:
        manager = SecretsManager()
        assert isinstance(manager, RemoteSecretsManager)
        await manager.create_secret("rm-env-1", "from-env")
        assert await SecretsManager().get_secret("rm-env-1") == "from-env"
        with contextlib.suppress(SecretNotFoundError):
            await manager.delete_secret("rm-env-1", immediate=True)
    finally:
        await reset_default_client()
    assert files_in(client_home) == []
