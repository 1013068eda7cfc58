"""The browser tests' site: one real `strongroom serve` (HTTPS, embedded profile) and one
headless Chromium for every browser test in this folder, with identities and secrets to look at.

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run); Playwright never downloads a
browser here. Screenshots go to test-artifacts/ui/ (kept by CI, ignored by git).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page

from helpers_serve import Served
from strongroom import Strongroom

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
