"""An edge and its centre in one process: the central server over HTTPS (its HTTP side can be
stopped and started while its stores stay open), edges opened against it, and small waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import trustme

from helpers_serve import Served, serve, server_settings
from strongroom import Strongroom
from strongroom.edge import EdgeNode

VALUE = "radio-gateway-canary-7f3a"
MAX_OFFLINE = 3600.0


class FakeMonotonic:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Central:
    """A central server whose HTTP side can be stopped and started again on the same port
    with the same CA, while its stores stay open."""

    def __init__(self, app: Strongroom, tls: Path) -> None:
        self.app = app
        self.tls = tls
        self.ca = trustme.CA()
        self.port = 0
        self.served: Served | None = None
        self._stack: AsyncExitStack | None = None

    async def start(self) -> Served:
        self._stack = AsyncExitStack()
        self.served = await self._stack.enter_async_context(
            serve(self.app, tls_dir=self.tls, port=self.port, ca=self.ca)
        )
        self.port = self.served.port
        return self.served

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None


async def until(condition: Callable[[], Any], what: str) -> None:
    """Wait on a condition (an awaitable-returning callable is awaited)."""
    for _ in range(1000):
        found = condition()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def site_token(central: Central, prefix: str) -> str:
    assert central.served is not None
    return await central.served.token_for(f"site-{prefix}", f"read,list:{prefix}-*")


async def open_edge(
    central: Central, home: Path, token: str, scopes: list[str], **kwargs: Any
) -> EdgeNode:
    assert central.served is not None
    settings = server_settings("sqlite", home, edge_max_offline_seconds=MAX_OFFLINE)
    return await EdgeNode.open(
        settings,
        upstream=central.served.base_url,
        scopes=scopes,
        token=token,
        cacert=central.served.ca_path,
        **kwargs,
    )


async def put(central: Central, name: str, value: str, *, create: bool = False) -> None:
    assert central.served is not None
    async with central.served.admin() as admin:
        if create:
            answer = await admin.post("/v1/secrets", json={"name": name, "value": value})
        else:
            answer = await admin.put(f"/v1/secrets/{name}", json={"value": value})
        assert answer.status_code in (200, 201), answer.text


async def edge_read(edge: Served, token: str, name: str) -> httpx.Response:
    async with edge.client(token) as client:
        return await client.get(f"/v1/secrets/{name}")
