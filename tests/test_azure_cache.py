"""The read-through cache on the azure profile, end to end: two wirings standing in for two
processes share a vault and PostgreSQL state; a change through one is never hidden by the
other's cache once it has returned, and a vault that goes away leaves cached reads within the
stale bound and refuses writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers_settings import PG_URL
from helpers_vault import Vault, azure_settings, secret_str, vault_server
from strongroom import (
    EmergencyRevoke,
    RevocationRequest,
    RotationConfig,
    SecretsManager,
    SecretsRotation,
    Strongroom,
)
from strongroom.core.errors import SecretRevokedError, StoreUnavailableError


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[Vault]:
    async with vault_server(tmp_path / "vault") as running:
        yield running


async def _pair(vault: Vault, tmp_path: Path, schema: str) -> tuple[Strongroom, Strongroom]:
    master = "A" * 43 + "="
    apps = []
    for name in ("a", "b"):
        settings = azure_settings(
            vault, tmp_path / name, database_url=secret_str(PG_URL), pg_schema=schema,
            master_key=secret_str(master), cache_ttl_seconds=300.0,
        )  # fmt: skip
        apps.append(await Strongroom.open(settings))
    return apps[0], apps[1]


async def test_changes_in_another_process_are_never_hidden_by_the_cache(
    vault: Vault, tmp_path: Path, pg_schema: str
) -> None:
    a, b = await _pair(vault, tmp_path, pg_schema)
    try:
        reader, writer = SecretsManager(a), SecretsManager(b)
        await writer.create_secret("fleet-db", "v1")
        assert await reader.get_secret("fleet-db") == "v1"
        hits = a.metrics.value("cache_hits_total")
        assert await reader.get_secret("fleet-db") == "v1"
        assert a.metrics.value("cache_hits_total") == hits + 1  # served from the cache

        await writer.update_secret("fleet-db", "v2")  # a write in the other process
        assert await reader.get_secret("fleet-db") == "v2"

        rotation = SecretsRotation(b)
        await rotation.register_secret(RotationConfig(name="fleet-db", generator="password"))
        rotated = await rotation.rotate_secret("fleet-db", force=True)  # a rotation
        assert rotated["rotated"] is True
        assert await reader.get_secret("fleet-db") not in ("v1", "v2")

        await EmergencyRevoke(b).request_revocation(  # a revocation
            RevocationRequest(
                "fleet-db", "key_compromise", "ops", severity="critical", immediate=True
            )
        )
        with pytest.raises(SecretRevokedError):
            await reader.get_secret("fleet-db")
    finally:
        await a.close()
        await b.close()


async def test_with_the_vault_down_cached_reads_within_the_bound_succeed_and_writes_fail(
    tmp_path: Path,
) -> None:
    async with vault_server(tmp_path / "vault") as vault:
        settings = azure_settings(
            vault, tmp_path / "app", cache_ttl_seconds=0.5, cache_stale_seconds=300.0,
            azure_retries=0, azure_timeout_seconds=2,
        )  # fmt: skip
        app = await Strongroom.open(settings)
        manager = SecretsManager(app)
        await manager.create_secret("dispatch-key", "v1")
        assert await manager.get_secret("dispatch-key") == "v1"
    try:  # the vault is gone from here on
        await asyncio.sleep(0.6)  # past the TTL: only the stale bound can serve it now
        assert await manager.get_secret("dispatch-key") == "v1"
        assert app.metrics.value("cache_stale_served_total") == 1
        with pytest.raises(StoreUnavailableError):
            await manager.update_secret("dispatch-key", "v2")
        with pytest.raises(StoreUnavailableError):
            await manager.get_secret("never-cached")
    finally:
        await app.close()
