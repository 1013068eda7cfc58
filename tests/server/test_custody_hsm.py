"""Auto-unseal by a PKCS#11 HSM (SoftHSM2, initialised by the tests): the master key is stored
wrapped by the HSM's key; a service starts unsealed; an HSM that cannot unwrap leaves it
sealed with a clear reason, and no PIN or key byte in any answer or log."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from helpers_custody import SealedServer, serve_sealed
from helpers_hsm import USER_PIN, hsm_changes
from helpers_serve import server_settings
from strongroom import SecretsManager, Settings, Strongroom
from strongroom.core.errors import HsmError
from strongroom.core.logging import configure_logging
from strongroom.db.seal_store import read_seal
from strongroom.services.custody.init import init_custody


def hsm_settings(
    backend: str, home: Path, schema: str | None = None, **overrides: object
) -> Settings:
    return server_settings(backend, home, schema, master_key=None, **hsm_changes(**overrides))


@pytest.fixture(params=["sqlite", "postgres"])
def hsm_store(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return hsm_settings(request.param, tmp_path, schema)


@pytest.fixture
def logs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture]]:
    caplog.set_level(logging.DEBUG)
    yield capsys, caplog
    structlog.reset_defaults()


async def _status(server: SealedServer) -> dict[str, object]:
    async with server.client() as c:
        found: dict[str, object] = (await c.get("/v1/sys/seal-status")).json()
        return found


async def test_the_service_unseals_itself_with_the_hsm(hsm_store: Settings) -> None:
    init = await init_custody(hsm_store, shares=0, threshold=0)
    assert init.shares is None
    record = await read_seal(hsm_store)
    assert record is not None
    assert (record.kind, record.key_label) == ("pkcs11", hsm_store.pkcs11_key_label)
    async with serve_sealed(hsm_store) as server, server.client(init.admin_token) as c:
        assert await _status(server) == {"sealed": False, "type": "pkcs11"}
        created = await c.post("/v1/secrets", json={"name": "app-hsm", "value": "v1"})
        assert created.status_code == 201
        assert (await c.get("/readyz")).json()["status"] == "ready"
        trail = (await c.get("/v1/audit/events", params={"action": "UNSEAL"})).json()
        assert [e["details"]["seal"] for e in trail] == ["pkcs11"]
    # Any process with the HSM's settings opens the store (the CLI, a second replica).
    async with await Strongroom.open(hsm_store) as app:
        assert await SecretsManager(app).get_secret("app-hsm") == "v1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"pkcs11_library": Path("/nonexistent/libpkcs11.so")}, "cannot load the PKCS#11 module"),
        ({"pkcs11_pin": SecretStr("0000-wrong")}, "refused the PIN"),
        ({"pkcs11_token_label": "no-such-token"}, "no token labelled 'no-such-token'"),
    ],
)
async def test_an_hsm_that_cannot_unwrap_leaves_the_service_sealed_saying_why(
    tmp_path: Path,
    change: dict[str, object],
    reason: str,
    logs: tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture],
) -> None:
    capsys, caplog = logs
    settings = hsm_settings("sqlite", tmp_path)
    await init_custody(settings, shares=0, threshold=0)
    broken = settings.model_copy(update=change)
    configure_logging("DEBUG")
    async with serve_sealed(broken) as server, server.client() as c:
        status = await _status(server)
        assert status["sealed"] is True
        assert reason in str(status["reason"])
        refused = await c.get("/v1/secrets")
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "sealed")
        assert (await c.get("/readyz")).status_code == 503
    with pytest.raises(HsmError, match=reason.split("'", maxsplit=1)[0]):
        await Strongroom.open(broken)
    out, err = capsys.readouterr()
    assert USER_PIN not in out + err + caplog.text + json.dumps(status)
    assert "0000-wrong" not in out + err + caplog.text + json.dumps(status)


def _edit_record(settings: Settings, **fields: str) -> None:
    with sqlite3.connect(settings.sqlite_path) as conn:
        (text,) = conn.execute("SELECT record FROM custody_seal").fetchone()
        record = json.loads(text) | fields
        conn.execute("UPDATE custody_seal SET record = ?", (json.dumps(record),))


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("flip", "does not unwrap the stored master key"),
        ("label", "holds no key labelled"),
        ("check", "not this store's master key"),
    ],
)
async def test_a_wrapped_key_that_does_not_unwrap_is_refused(
    tmp_path: Path, tamper: str, reason: str
) -> None:
    settings = hsm_settings("sqlite", tmp_path)
    await init_custody(settings, shares=0, threshold=0)
    record = await read_seal(settings)
    assert record is not None
    if tamper == "flip":
        blob = bytearray(base64.b64decode(record.wrapped))
        blob[-1] ^= 1
        _edit_record(settings, wrapped=base64.b64encode(bytes(blob)).decode())
    elif tamper == "label":
        _edit_record(settings, key_label="someone-elses-key")
    else:
        _edit_record(settings, check="00" * 32)
    with pytest.raises(HsmError, match=reason):
        await Strongroom.open(settings)
    async with serve_sealed(settings) as server:
        status = await _status(server)
        assert status["sealed"] is True
        assert reason in str(status["reason"])


async def test_init_with_a_wrong_pin_changes_nothing(tmp_path: Path) -> None:
    settings = hsm_settings("sqlite", tmp_path, pkcs11_pin=SecretStr("1111-wrong"))
    with pytest.raises(HsmError, match="refused the PIN") as caught:
        await init_custody(settings, shares=0, threshold=0)
    assert "1111-wrong" not in str(caught.value)
    assert await read_seal(settings) is None
