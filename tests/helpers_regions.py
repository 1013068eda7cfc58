"""Several Key Vault-compatible endpoints (strongroom's own servers, HTTPS) standing for Azure
Key Vault in several regions, each of which can be stopped and started again where it was.

The vaults share one test CA and one bearer token (as one Entra ID credential works for every
real vault): the token is made on the first vault and its record added to the others, which
share a master key so its digest matches there too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from pydantic import SecretStr

from helpers_serve import serve
from helpers_settings import make_settings, new_master_key
from strongroom import Settings, Strongroom


@dataclass
class RegionVault:
    """One vault: its data outlives a stop (the app stays open; only its server goes away)."""

    app: Strongroom
    folder: Path
    ca: trustme.CA
    port: int = 0
    url: str = ""
    _stack: AsyncExitStack | None = field(default=None, repr=False)

    async def start(self) -> None:
        stack = AsyncExitStack()
        served = await stack.enter_async_context(
            serve(self.app, tls_dir=self.folder, port=self.port, ca=self.ca)
        )
        self.port, self.url, self._stack = served.port, served.base_url, stack

    async def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()


@dataclass
class Regions:
    vaults: list[RegionVault]
    token: str
    ca_path: Path
    #: The master key of the profile under test (its audit chain and state), not the vaults'.
    master_key: str = field(default_factory=new_master_key)

    def settings(self, home: Path, **changes: Any) -> Settings:
        """The azure profile over these vaults (the first is the primary), state in SQLite at
        ``home``; reads uncached and no SDK retries unless ``changes`` say otherwise."""
        base = make_settings("sqlite", home, master_key=self.master_key)
        return base.model_copy(
            update={
                "backend_name": None,
                "database_url": None,
                "azure_key_vault_url": self.vaults[0].url,
                "azure_secondary_urls": ",".join(v.url for v in self.vaults[1:]),
                "azure_static_token": SecretStr(self.token),
                "azure_ca_bundle": self.ca_path,
                "azure_verify_challenge_resource": False,
                "azure_retries": 0,
                "azure_failover_cooldown_seconds": 2.0,
                "cache_ttl_seconds": 0.0,
                **changes,
            }
        )

    def environment(self, home: Path) -> dict[str, str]:
        """The same profile as environment variables, for the CLI."""
        return {
            "STRONGROOM_HOME": str(home),
            "STRONGROOM_MASTER_KEY": self.master_key,
            "AZURE_KEY_VAULT_URL": self.vaults[0].url,
            "AZURE_KEY_VAULT_SECONDARY_URLS": ",".join(v.url for v in self.vaults[1:]),
            "STRONGROOM_AZURE_STATIC_TOKEN": self.token,
            "STRONGROOM_AZURE_CA_BUNDLE": str(self.ca_path),
            "STRONGROOM_AZURE_VERIFY_CHALLENGE_RESOURCE": "false",
            "STRONGROOM_AZURE_RETRIES": "0",
            "STRONGROOM_CACHE_TTL_SECONDS": "0",
        }


@asynccontextmanager
async def regions(
    folder: Path, count: int = 3, *, primary_changes: dict[str, Any] | None = None
) -> AsyncIterator[Regions]:
    """``count`` vaults, all started; ``primary_changes`` set fields of the first one's own
    settings (a tight rate limit, say)."""
    ca, master = trustme.CA(), new_master_key()
    vaults: list[RegionVault] = []
    try:
        for index in range(count):
            home = folder / f"vault-{index}"
            home.mkdir(parents=True, exist_ok=True)
            settings = make_settings("memory", home / "home", master_key=master)
            if index == 0 and primary_changes:
                settings = settings.model_copy(update=primary_changes)
            vault = RegionVault(await Strongroom.open(settings), home, ca)
            vaults.append(vault)
            await vault.start()
        issued = await vaults[0].app.access.create_token("regions", policies=["admin"])
        for vault in vaults[1:]:
            await vault.app.access.store.attach("regions", "admin")
            await vault.app.access.store.add_token(issued.record)
        yield Regions(vaults, issued.token, vaults[0].folder / "ca.pem")
    finally:
        for vault in vaults:
            await vault.stop()
            await vault.app.close()
