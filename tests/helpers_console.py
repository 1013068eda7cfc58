"""A console session over HTTPS for tests: sign in with a token, keep the cookie, send the
CSRF token and Origin as the console's own pages do."""

from __future__ import annotations

import re
from typing import Any

import httpx

from helpers_serve import Served

_NONCE = re.compile(r'name="nonce" value="([^"]+)"')
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class ConsoleClient:
    def __init__(self, served: Served) -> None:
        self.served = served
        self.http = served.client(follow_redirects=False)
        self.csrf = ""

    async def __aenter__(self) -> ConsoleClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    @property
    def origin(self) -> dict[str, str]:
        return {"Origin": self.served.base_url}

    async def sign_in(self, token: str) -> httpx.Response:
        page = await self.http.get("/ui/signin")
        nonce = _NONCE.search(page.text)
        assert nonce is not None
        answer = await self.http.post(
            "/ui/signin", data={"nonce": nonce.group(1), "token": token, "method": "token",
                                "next": "/ui/"}, headers=self.origin,
        )  # fmt: skip
        if answer.status_code == 303:
            home = await self.http.get("/ui/secrets")
            found = _CSRF.search(home.text)
            self.csrf = found.group(1) if found else ""
        return answer

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True,
                   origin: bool = True, **kwargs: Any) -> httpx.Response:  # fmt: skip
        body = dict(data or {})
        if csrf:
            body["csrf"] = self.csrf
        headers = self.origin if origin else {}
        return await self.http.post(path, data=body, headers=headers, **kwargs)
