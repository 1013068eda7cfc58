"""A Key Vault-compatible endpoint for the azure store's tests: strongroom's own server.

The vault is a strongroom server on the memory profile, served over HTTPS with a fresh test CA
(trustme) on 127.0.0.1; the azure store under test reaches it through the official SDK with a
static bearer token, the CA bundle and, since the vault's host is an address,
``verify_challenge_resource`` off (the SDK's documented option).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from helpers_serve import Served, serve
from helpers_settings import make_settings
from strongroom import Settings, Strongroom
from strongroom.core.clock import Clock, system_clock


@dataclass
class Vault:
    served: Served
    url: str
    ca_path: Path
    token: str


@asynccontextmanager
async def vault_server(
    folder: Path, *, clock: Clock = system_clock, **changes: object
) -> AsyncIterator[Vault]:
    """A vault; ``changes`` set fields of its own settings (e.g. a tight rate limit)."""
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (test set-up, once)
    settings = make_settings("memory", folder / "vault-home").model_copy(update=changes)
    app = await Strongroom.open(settings, clock=clock)
    try:
        async with serve(app, tls_dir=folder) as served:
            assert served.ca_path is not None
            yield Vault(served, served.base_url, served.ca_path, served.admin_token)
    finally:
        await app.close()


def azure_settings(vault: Vault, home: Path, **changes: object) -> Settings:
    """Settings of the azure profile on ``vault``; audit and other state in SQLite at ``home``."""
    base = make_settings("sqlite", home)
    return base.model_copy(
        update={
            "backend_name": None,
            "database_url": None,
            "azure_key_vault_url": vault.url,
            "azure_static_token": secret_str(vault.token),
            "azure_ca_bundle": vault.ca_path,
            "azure_verify_challenge_resource": False,
            "azure_retries": 1,
            **changes,
        }
    )


def secret_str(text: str) -> SecretStr:
    return SecretStr(text)
