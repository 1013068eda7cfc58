"""The seed's facades need no arguments and no initialize(): they share the process default."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from strongroom import SecretsManager, SecretType, Settings
from strongroom.core.errors import ConfigurationError
from strongroom.services.wiring import reset_default_app


@pytest.fixture
async def embedded_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Path]:
    for var in ["AZURE_KEY_VAULT_URL", "DATABASE_URL", "STRONGROOM_BACKEND",
                "STRONGROOM_MASTER_KEY", "STRONGROOM_MASTER_KEY_FILE"]:  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STRONGROOM_HOME", str(tmp_path))
    await reset_default_app()
    yield tmp_path
    await reset_default_app()


async def test_seed_example_runs_unchanged_on_the_embedded_default(embedded_env: Path) -> None:
    secrets_manager = SecretsManager()
    await secrets_manager.create_secret(
        name="production-api-key",
        value="sk-prod-abc123xyz789",
        secret_type=SecretType.API_KEY,
        metadata={"environment": "production", "service": "external-api"},
        expires_in_days=90,
    )
    assert await secrets_manager.get_secret("production-api-key") == "sk-prod-abc123xyz789"
    # A second facade sees what the first did: one process default.
    other = SecretsManager()
    assert [s["name"] for s in await other.list_secrets()] == ["production-api-key"]
    assert (embedded_env / "strongroom.db").exists()
    assert (embedded_env / "master.key").stat().st_mode & 0o777 == 0o600


async def test_explicit_initialize_close_and_async_with(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(
        STRONGROOM_BACKEND="sqlite", STRONGROOM_HOME=tmp_path, STRONGROOM_MASTER_KEY=key
    )
    manager = SecretsManager(settings=settings)
    await manager.initialize()
    await manager.create_secret("a", "one")
    await manager.close()
    async with SecretsManager(settings=settings) as again:
        assert await again.get_secret("a") == "one"


def test_azure_key_vault_url_chooses_the_azure_store_with_state_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("DATABASE_URL", "STRONGROOM_AUDIT_DATABASE_URL", "STRONGROOM_BACKEND"):
        monkeypatch.delenv(var, raising=False)  # CI exports DATABASE_URL
    from strongroom.backends.azure import AzureKeyVaultStore
    from strongroom.core.crypto import MasterKey
    from strongroom.core.integrity import RowMac
    from strongroom.core.keys import Purpose
    from strongroom.services.wiring import build_store

    settings = Settings(
        AZURE_KEY_VAULT_URL="https://v.vault.azure.net/",
        STRONGROOM_HOME=tmp_path,
        STRONGROOM_AZURE_STATIC_TOKEN="t",
    )
    assert settings.backend.value == "azure"
    assert not settings.state_in_postgres  # audit and the rest in SQLite at STRONGROOM_HOME
    master = MasterKey.generate()[0]
    store = build_store(settings, master, RowMac(master.derive(Purpose.METADATA_MAC)))
    assert isinstance(store, AzureKeyVaultStore)
    assert store.vault_url == "https://v.vault.azure.net/"
    with_pg = Settings(
        AZURE_KEY_VAULT_URL="https://v.vault.azure.net/",
        DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test",
    )
    assert with_pg.state_in_postgres
    with pytest.raises(ConfigurationError, match="https"):
        build_store(
            Settings(AZURE_KEY_VAULT_URL="http://plain.example", STRONGROOM_AZURE_STATIC_TOKEN="t"),
            master,
            RowMac(master.derive(Purpose.METADATA_MAC)),
        )
