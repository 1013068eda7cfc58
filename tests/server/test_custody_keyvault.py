"""Auto-unseal by a Key Vault key: one ``strongroom serve`` over HTTPS is the Key Vault (its
keys API), a second one, with STRONGROOM_SEAL=azurekeyvault, has its master key wrapped by a key
there and unseals itself through ``azure-keyvault-keys``. A vault that cannot unwrap (disabled
key, unreachable, a wrapped key that does not unwrap) leaves it sealed, saying why, with no
token or key byte in any answer or log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr
from served import Served, free_socket
from test_keyvault_compat import kv_server, raw

from helpers_custody import SealedServer, serve_sealed
from helpers_serve import server_settings
from strongroom import SecretsAudit, SecretsManager, Settings, Strongroom
from strongroom.core.errors import KeyVaultSealError, WrongMasterKeyError
from strongroom.core.logging import configure_logging
from strongroom.db.seal_store import read_seal
from strongroom.services.custody import azure_seal
from strongroom.services.custody.init import init_custody
from strongroom.services.custody.replace import replace_master

API = "api-version=7.4"
KEY = "unseal-site-a"


@dataclass
class Vault:
    served: Served
    admin: str
    token: str  # the sealed service's: it may use the unseal keys and nothing else

    @property
    def key_id(self) -> str:
        return f"https://127.0.0.1:{self.served.port}/keys/{KEY}"


@asynccontextmanager
async def key_vault(home: Path) -> AsyncIterator[Vault]:
    """A strongroom as the Key Vault, holding one RSA key for unsealing."""
    home.mkdir()  # noqa: ASYNC240 (test set-up, once)
    async with kv_server("sqlite", home, None) as served:
        admin = await served.token_for("kv-admin", "admin:*")
        token = await served.token_for("site-a", "read,list:unseal-*")
        async with raw(served, admin) as http:
            made = await http.post(
                f"/keys/{KEY}/create?{API}", json={"kty": "RSA", "key_size": 3072}
            )
            assert made.status_code == 200
        yield Vault(served, admin, token)


def sealed_by(
    vault: Vault, backend: str, home: Path, schema: str | None = None, **changes: object
) -> Settings:
    assert vault.served.ca_path is not None
    options: dict[str, object] = {
        "master_key": None,
        "seal": "azurekeyvault",
        "azure_seal_key_id": vault.key_id,
        "azure_static_token": SecretStr(vault.token),
        "azure_ca_bundle": vault.served.ca_path,
        "azure_verify_challenge_resource": False,  # the vault's host is an address
        "azure_retries": 0,
    }
    return server_settings(backend, home, schema, **(options | changes))


async def _status(server: SealedServer) -> dict[str, object]:
    async with server.client() as c:
        found: dict[str, object] = (await c.get("/v1/sys/seal-status")).json()
        return found


async def _set_enabled(vault: Vault, version: str, enabled: bool) -> None:
    async with raw(vault.served, vault.admin) as http:
        body = {"attributes": {"enabled": enabled}}
        changed = await http.patch(f"/keys/{KEY}/{version}?{API}", json=body)
        assert changed.status_code == 200


@pytest.fixture
def logs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture]]:
    caplog.set_level(logging.DEBUG)
    yield capsys, caplog
    structlog.reset_defaults()


@pytest.fixture(params=["sqlite", "postgres"])
def site_store(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    backend: str = request.param
    schema = request.getfixturevalue("pg_schema") if backend == "postgres" else None
    return backend, schema


async def test_a_service_unseals_itself_through_another_strongroom(
    site_store: tuple[str, str | None], tmp_path: Path
) -> None:
    backend, schema = site_store
    async with key_vault(tmp_path / "vault") as vault:
        settings = sealed_by(vault, backend, tmp_path / "site", schema)
        init = await init_custody(settings, shares=0, threshold=0)
        assert init.shares is None
        record = await read_seal(settings)
        assert record is not None
        assert record.kind == "azurekeyvault"
        assert record.key_label.startswith(f"{vault.key_id}/")  # the version it was wrapped by
        async with serve_sealed(settings) as server, server.client(init.admin_token) as c:
            assert await _status(server) == {"sealed": False, "type": "azurekeyvault"}
            created = await c.post("/v1/secrets", json={"name": "app-kv", "value": "v1"})
            assert created.status_code == 201
            trail = (await c.get("/v1/audit/events", params={"action": "UNSEAL"})).json()
            assert [e["details"]["seal"] for e in trail] == ["azurekeyvault"]
        # The command line (any process with the settings) unseals the same way.
        async with await Strongroom.open(settings) as app:
            assert await SecretsManager(app).get_secret("app-kv") == "v1"
        # The vault has each unwrap on record, by the site's identity.
        unwraps = await SecretsAudit(vault.served.app).get_audit_trail(action="KEY_UNWRAP")
        assert len(unwraps) >= 3  # init's check, the service, the command line
        assert {e["actor_id"] for e in unwraps} == {"site-a"}


@pytest.mark.slow
async def test_a_disabled_key_keeps_the_service_sealed_until_it_is_enabled(
    tmp_path: Path, logs: tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture]
) -> None:
    capsys, caplog = logs
    async with key_vault(tmp_path / "vault") as vault:
        settings = sealed_by(vault, "sqlite", tmp_path / "site")
        await init_custody(settings, shares=0, threshold=0)
        record = await read_seal(settings)
        assert record is not None
        version = record.key_label.rsplit("/", 1)[1]
        await _set_enabled(vault, version, enabled=False)
        with pytest.raises(KeyVaultSealError, match="is disabled"):
            await Strongroom.open(settings)
        configure_logging("DEBUG")
        async with serve_sealed(settings) as server, server.client() as c:
            status = await _status(server)
            assert status["sealed"] is True
            assert f"the Key Vault key {record.key_label} is disabled" == status["reason"]
            refused = await c.get("/v1/secrets")
            assert (refused.status_code, refused.json()["error"]["code"]) == (503, "sealed")
            await _set_enabled(vault, version, enabled=True)
            for _ in range(300):  # the service tries again every few seconds
                if (await _status(server))["sealed"] is False:
                    break
                await asyncio.sleep(0.05)
            assert await _status(server) == {"sealed": False, "type": "azurekeyvault"}
        out, err = capsys.readouterr()
        assert vault.token not in out + err + caplog.text + json.dumps(status)


async def test_an_unreachable_vault_leaves_the_service_sealed(tmp_path: Path) -> None:
    async with key_vault(tmp_path / "vault") as vault:
        settings = sealed_by(vault, "sqlite", tmp_path / "site")
        await init_custody(settings, shares=0, threshold=0)
    # The vault has stopped: nothing answers on its port any more.
    with pytest.raises(KeyVaultSealError, match="cannot reach Key Vault"):
        await Strongroom.open(settings)
    async with serve_sealed(settings) as server:
        status = await _status(server)
        assert status["sealed"] is True
        assert "cannot reach Key Vault" in str(status["reason"])


def _edit_record(settings: Settings, **fields: str) -> None:
    with sqlite3.connect(settings.sqlite_path) as conn:
        (text,) = conn.execute("SELECT record FROM custody_seal").fetchone()
        record = json.loads(text) | fields
        conn.execute("UPDATE custody_seal SET record = ?", (json.dumps(record),))


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("flip", "does not unwrap the stored master key"),
        ("garbage", "is not well formed"),
        ("check", "not this store's master key"),
        ("key", "has no key"),
    ],
)
async def test_a_wrapped_key_that_does_not_unwrap_is_refused(
    tmp_path: Path, tamper: str, reason: str
) -> None:
    async with key_vault(tmp_path / "vault") as vault:
        settings = sealed_by(vault, "sqlite", tmp_path / "site")
        await init_custody(settings, shares=0, threshold=0)
        record = await read_seal(settings)
        assert record is not None
        if tamper == "flip":
            blob = bytearray(base64.b64decode(record.wrapped))
            blob[-1] ^= 1
            _edit_record(settings, wrapped=base64.b64encode(bytes(blob)).decode())
        elif tamper == "garbage":
            _edit_record(settings, wrapped="not base64!")
        elif tamper == "check":
            _edit_record(settings, check="00" * 32)
        else:
            _edit_record(
                settings, key_label=f"{vault.key_id.replace(KEY, 'unseal-gone')}/{'0' * 32}"
            )
        with pytest.raises(KeyVaultSealError, match=reason) as caught:
            await Strongroom.open(settings)
        assert record.wrapped not in str(caught.value)
        async with serve_sealed(settings) as server:
            status = await _status(server)
            assert status["sealed"] is True
            assert reason in str(status["reason"])


async def test_init_with_a_disabled_key_changes_nothing(tmp_path: Path) -> None:
    async with key_vault(tmp_path / "vault") as vault:
        async with raw(vault.served, vault.admin) as http:
            current = (await http.get(f"/keys/{KEY}?{API}")).json()["key"]["kid"]
        await _set_enabled(vault, current.rsplit("/", 1)[1], enabled=False)
        settings = sealed_by(vault, "sqlite", tmp_path / "site")
        with pytest.raises(KeyVaultSealError, match="is disabled"):
            await init_custody(settings, shares=0, threshold=0)
        assert await read_seal(settings) is None
        unreachable = sealed_by(
            vault, "sqlite", tmp_path / "other",
            azure_seal_key_id=f"https://127.0.0.1:{_closed_port()}/keys/{KEY}",
        )  # fmt: skip
        with pytest.raises(KeyVaultSealError, match="cannot reach Key Vault"):
            await init_custody(unreachable, shares=0, threshold=0)
        assert await read_seal(unreachable) is None


def _closed_port() -> int:
    sock = free_socket()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def test_a_master_key_wrapped_by_key_vault_is_replaced(tmp_path: Path) -> None:
    async with key_vault(tmp_path / "vault") as vault:
        settings = sealed_by(vault, "sqlite", tmp_path)
        await init_custody(settings, shares=0, threshold=0)
        async with await Strongroom.open(settings) as app:
            await SecretsManager(app).create_secret("site-db", "kept-across")
        old_seal = await read_seal(settings)
        assert old_seal is not None
        async with await Strongroom.open(settings) as app:
            result = await replace_master(app)
        assert (result.custody, result.epoch) == ("azurekeyvault", 1)
        new_seal = await read_seal(settings)
        assert new_seal is not None
        assert new_seal.key_label == old_seal.key_label
        assert new_seal.check != old_seal.check
        async with await Strongroom.open(settings) as app:  # unwrapped by the vault again
            assert await SecretsManager(app).get_secret("site-db") == "kept-across"
            assert (await SecretsAudit(app).verify_integrity())["valid"]
        old = await azure_seal.unwrap_master(settings, old_seal)
        with pytest.raises(WrongMasterKeyError):
            await Strongroom.open(settings, master=old)
