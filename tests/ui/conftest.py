"""One real `strongroom serve` (HTTPS, embedded profile) and one headless Chromium for every
browser test in this folder, with a few identities and secrets to look at.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run); Playwright never downloads a
browser here. Screenshots go to test-artifacts/ui/ (kept by CI, ignored by git).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from helpers_serve import Served, serve, server_settings
from strongroom import SecretsManager, SecretType, Strongroom
from strongroom.core.actor import acting_as
from strongroom.core.policy import Policy

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


@dataclass
class Site:
    served: Served
    app: Strongroom
    tokens: dict[str, str]
    browser: Browser
    problems: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.served.base_url

    async def context(self) -> BrowserContext:
        context = await self.browser.new_context(
            ignore_https_errors=True, viewport={"width": 1360, "height": 900}
        )
        context.on("page", self._watch)
        return context

    def _watch(self, page: Page) -> None:
        """Every console error and CSP violation of every page is a problem."""

        def on_console(message: Any) -> None:
            if message.type in ("error", "warning"):
                self.problems.append(f"{page.url}: console {message.type}: {message.text}")
            if "Content Security Policy" in message.text:
                self.csp.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"{page.url}: {error}"))

    async def signed_in(self, who: str) -> Page:
        context = await self.context()
        page = await context.new_page()
        await page.goto(f"{self.url}/ui/")
        await page.fill("#token", self.tokens[who])
        await page.press("#token", "Enter")
        await page.wait_for_url(f"{self.url}/ui/")
        return page


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
