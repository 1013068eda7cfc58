"""An edge whose site key is wrapped by a key at the centre (STRONGROOM_SEAL=azurekeyvault,
the centre's Key Vault-compatible keys API): it opens unattended while the centre unwraps for
it, keeps no key file, and stays shut, saying why, once the key is disabled there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from helpers_edge import MAX_OFFLINE, VALUE, Central, put
from helpers_serve import server_settings
from strongroom import SecretsManager, Settings
from strongroom.core.errors import KeyVaultSealError
from strongroom.db.seal_store import read_seal
from strongroom.edge import EdgeNode
from strongroom.services.custody.init import init_custody

API = "api-version=7.4"


def _edge_settings(central: Central, home: Path, token: str) -> Settings:
    assert central.served is not None
    return server_settings(
        "sqlite", home, edge_max_offline_seconds=MAX_OFFLINE, master_key=None,
        seal="azurekeyvault", azure_seal_key_id=f"{central.served.base_url}/keys/unseal-du",
        azure_static_token=SecretStr(token), azure_ca_bundle=central.served.ca_path,
        azure_verify_challenge_resource=False, azure_retries=0,
    )  # fmt: skip


async def _open(central: Central, settings: Settings, token: str) -> EdgeNode:
    assert central.served is not None
    return await EdgeNode.open(
        settings, upstream=central.served.base_url, scopes=["du-*"], token=token,
        cacert=central.served.ca_path,
    )  # fmt: skip


async def test_an_edge_unsealed_by_a_key_at_the_centre(central: Central, tmp_path: Path) -> None:
    assert central.served is not None
    await put(central, "du-radio", VALUE, create=True)
    async with central.served.admin() as admin:
        made = await admin.post(f"/keys/unseal-du/create?{API}", json={"kty": "RSA"})
        assert made.status_code == 200, made.text
    # The site's one credential reads its secrets and uses its own unseal key, nothing more.
    token = await central.served.token_for("site-du", "read,list:du-*", "read,list:unseal-du")
    home = tmp_path / "edge"
    settings = _edge_settings(central, home, token)
    await init_custody(settings, shares=0, threshold=0)
    record = await read_seal(settings)
    assert record is not None
    assert record.kind == "azurekeyvault"

    node = await _open(central, settings, token)
    try:
        node.start()
        await asyncio.wait_for(node.sync.online.wait(), 30)
        for _ in range(300):
            try:
                if await SecretsManager(node.wiring).get_secret("du-radio") == VALUE:
                    break
            except LookupError:
                await asyncio.sleep(0.02)
        assert await SecretsManager(node.wiring).get_secret("du-radio") == VALUE
    finally:
        await node.close()
    assert not (home / "master.key").exists()  # the site key is only ever wrapped
    assert VALUE.encode() not in (home / "strongroom.db").read_bytes()

    version = record.key_label.rsplit("/", 1)[1]
    async with central.served.admin() as admin:
        body = {"attributes": {"enabled": False}}
        disabled = await admin.patch(f"/keys/unseal-du/{version}?{API}", json=body)
        assert disabled.status_code == 200
    with pytest.raises(KeyVaultSealError, match="is disabled"):
        await _open(central, settings, token)
