"""The azure store at its edges: Key Vault's errors as strongroom's, Key Vault's limits said
clearly, and revocation that disables the secret in the vault itself.

The vault is strongroom's own Key Vault-compatible endpoint over HTTPS (helpers_vault); the
store talks to it through the official SDK, challenge, TLS and all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers_serve import free_socket
from helpers_vault import Vault, azure_settings, secret_str, vault_server
from strongroom import (
    EmergencyRevoke,
    RevocationRequest,
    SecretsAudit,
    SecretsManager,
    Strongroom,
)
from strongroom.core.errors import (
    ConfigurationError,
    DeletedSecretConflictError,
    PermissionDeniedError,
    RateLimitedError,
    SecretRevokedError,
    StoreUnavailableError,
    ValidationError,
)
from strongroom.core.policy import Policy

VALUE = "azure-canary-value-7f3a"


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[Vault]:
    async with vault_server(tmp_path / "vault") as running:
        yield running


async def _open(vault: Vault, home: Path, **changes: object) -> Strongroom:
    return await Strongroom.open(azure_settings(vault, home, **changes))


async def test_a_name_held_by_a_deleted_secret_is_a_conflict(vault: Vault, tmp_path: Path) -> None:
    async with await _open(vault, tmp_path) as app:
        manager = SecretsManager(app)
        await manager.create_secret("fleet-db", VALUE)
        await manager.delete_secret("fleet-db")
        with pytest.raises(DeletedSecretConflictError) as caught:
            await manager.create_secret("fleet-db", VALUE)
        assert VALUE not in str(caught.value)
        await manager.recover_deleted_secret("fleet-db")
        assert await manager.get_secret("fleet-db") == VALUE


async def test_an_identity_outside_its_policy_is_forbidden(vault: Vault, tmp_path: Path) -> None:
    vault_app = vault.served.app
    await vault_app.access.put_policy(Policy.build("fleet-only", ["read,list:fleet-*"]))
    reader = await vault_app.access.create_token("reader", policies=["fleet-only"])
    async with await _open(vault, tmp_path / "admin") as admin:
        await SecretsManager(admin).create_secret("billing-key", VALUE)
    async with await _open(
        vault, tmp_path / "reader", azure_static_token=secret_str(reader.token)
    ) as app:
        with pytest.raises(PermissionDeniedError) as caught:
            await SecretsManager(app).get_secret("billing-key")
        assert VALUE not in str(caught.value)


async def test_a_throttled_burst_is_a_rate_limit_with_retry_after(tmp_path: Path) -> None:
    async with (
        vault_server(tmp_path / "vault", rate_limit_per_second=0.2, rate_limit_burst=3) as vault,
        await _open(vault, tmp_path, azure_retries=0) as app,
    ):
        manager = SecretsManager(app)
        refused: list[RateLimitedError] = []
        for index in range(10):
            try:
                await manager.create_secret(f"burst-{index}", VALUE)
            except RateLimitedError as exc:
                refused.append(exc)
                break
        assert refused, "the vault never throttled the burst"
        assert refused[0].retry_after >= 1


async def test_the_sdk_waits_out_retry_after_and_succeeds(tmp_path: Path) -> None:
    async with (
        vault_server(tmp_path / "vault", rate_limit_per_second=2, rate_limit_burst=2) as vault,
        await _open(vault, tmp_path, azure_retries=3) as app,
    ):
        manager = SecretsManager(app)
        await manager.create_secret("steady", VALUE)  # two calls: the burst
        assert await manager.get_secret("steady") == VALUE  # answered 429 first, then served
    assert vault.served.app.metrics.value("rate_limited_total") >= 1


async def test_an_unreachable_vault_is_unavailable_not_a_hang(vault: Vault, tmp_path: Path) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here
    dead = Vault(vault.served, f"https://127.0.0.1:{port}", vault.ca_path, vault.token)
    async with await _open(dead, tmp_path, azure_retries=0, azure_timeout_seconds=2) as app:
        manager = SecretsManager(app)
        with pytest.raises(StoreUnavailableError):
            await manager.get_secret("anything")
        with pytest.raises(StoreUnavailableError):
            await manager.create_secret("anything", VALUE)


async def test_key_vault_limits_are_refused_clearly_and_change_nothing(
    vault: Vault, tmp_path: Path
) -> None:
    async with await _open(vault, tmp_path) as app:
        manager = SecretsManager(app)
        with pytest.raises(ValidationError, match="14"):
            await manager.create_secret("tags", VALUE, metadata={f"k{i}": "v" for i in range(15)})
        await manager.create_secret("tags", VALUE, metadata={f"k{i}": "v" for i in range(14)})
        assert len((await manager.get_secret_properties("tags"))["metadata"]) == 14
        await manager.create_secret("expiring", VALUE, expires_in_days=30)
        with pytest.raises(ValidationError, match="clear"):
            await manager.update_secret_properties("expiring", expires_at=None)
        assert (await manager.get_secret_properties("expiring"))["expires_at"] is not None
        with pytest.raises(ConfigurationError, match="Key Vault"):
            await manager.rotate_master_key()


async def test_type_travels_as_a_tag_and_json_as_content_type(vault: Vault, tmp_path: Path) -> None:
    async with await _open(vault, tmp_path) as app:
        manager = SecretsManager(app)
        await manager.create_secret("cfg", {"user": "fleet"}, secret_type="database_credential",
                                    metadata={"env": "prod"})  # fmt: skip
        assert await manager.get_secret("cfg") == {"user": "fleet"}
        props = await manager.get_secret_properties("cfg")
        assert props["secret_type"] == "database_credential"
        assert props["metadata"] == {"env": "prod"}
    # In the vault itself: a tag for the type, JSON content type, the metadata as tags.
    stored = await vault.served.app.store.get_properties("cfg")
    assert stored.tags == {"env": "prod", "strongroom-type": "database_credential"}
    assert stored.content_type == "application/json"


async def test_revocation_disables_every_version_in_the_vault(vault: Vault, tmp_path: Path) -> None:
    async with await _open(vault, tmp_path) as app:
        manager = SecretsManager(app)
        await manager.create_secret("leaked", VALUE)
        await manager.update_secret("leaked", VALUE + "-2")
        result = await EmergencyRevoke(app).request_revocation(
            RevocationRequest(
                "leaked", "key_compromise", "ops", severity="critical", immediate=True
            )
        )
        assert result["status"] == "COMPLETED"
        with pytest.raises(SecretRevokedError):
            await manager.get_secret("leaked")
        for props in await manager.get_secret_versions("leaked"):
            assert props["revoked"] is True
            assert props["enabled"] is False
    in_vault = await vault.served.app.store.list_versions("leaked")
    assert [v.enabled for v in in_vault] == [False, False]
    assert all("strongroom-revoked-at" in v.tags for v in in_vault)


async def test_listings_page_through_the_vault(vault: Vault, tmp_path: Path) -> None:
    async with await _open(vault, tmp_path, cache_ttl_seconds=0) as app:
        manager = SecretsManager(app)
        for index in range(30):  # more than Key Vault's 25 a page
            await manager.create_secret(f"paged-{index:02d}", VALUE)
        for _ in range(27):
            await manager.update_secret("paged-00", VALUE)
        names = [s["name"] for s in await manager.list_secrets()]
        assert names == [f"paged-{index:02d}" for index in range(30)]
        versions = await manager.get_secret_versions("paged-00")
        assert len(versions) == 28
        assert len({v["version"] for v in versions}) == 28
        assert [v["current"] for v in versions].count(True) == 1
    # The vault answered the listing in two pages (25 + 5): one LIST of all secrets each.
    trail = await SecretsAudit(vault.served.app).get_audit_trail(action="LIST", limit=1000)
    assert len([e for e in trail if e["resource_name"] is None]) == 2
