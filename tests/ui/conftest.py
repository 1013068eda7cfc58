"""Fixtures of the browser tests (the site itself is in uisite.py, importable by name)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import async_playwright
from uisite import CHROMIUM, CHROMIUM_ARGS, Site

from helpers_serve import serve, server_settings
from strongroom import SecretsManager, SecretType, Strongroom
from strongroom.core.actor import acting_as
from strongroom.core.policy import Policy


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    home = tmp_path_factory.mktemp("console")
    app = await Strongroom.open(server_settings("sqlite", home))
    try:
        await _populate(app)
        async with serve(app, tls_dir=home) as served:
            tokens = {"admin": served.admin_token}
            security = Policy.build(
                "security", ["read,list,audit-read,rotate,revoke-request,revoke-approve:*"]
            )
            await app.access.put_policy(security)
            for who in ("alice", "bob"):
                tokens[who] = (await app.access.create_token(who, policies=["security"])).token
            tokens["intruder"] = (await app.access.create_token("intruder")).token
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    yield Site(served, app, tokens, browser)
                finally:
                    await browser.close()
    finally:
        await app.close()


async def _populate(app: Strongroom) -> None:
    manager = SecretsManager(app)
    with acting_as("deploy-bot", ip="10.0.0.7", user_agent="ci/1.0"):
        await manager.create_secret(
            "fleet-db", "pw-" + secrets.token_hex(8), SecretType.DATABASE_CREDENTIAL,
            {"env": "production"},
        )  # fmt: skip
        await manager.create_secret("dispatch-api", "sk-" + secrets.token_hex(8),
                                    SecretType.API_KEY, {"env": "production"})  # fmt: skip
        await manager.create_secret("jwt-signing", secrets.token_hex(16), SecretType.JWT_SECRET)
        for i in range(30):
            await manager.create_secret(f"radio-gw-{i:02d}", secrets.token_hex(8),
                                        SecretType.API_KEY, {"site": f"s{i % 4}"})  # fmt: skip
    for reader in ("radio-gw", "console", "dispatch"):
        with acting_as(f"svc-{reader}", ip=f"10.0.1.{len(reader)}"):
            for _ in range(3):
                await manager.get_secret("fleet-db")
                await manager.get_secret("dispatch-api")
