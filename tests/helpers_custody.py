"""A service started sealed (STRONGROOM_SEAL=shamir) on a real socket, after a real init."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from helpers_serve import free_socket, server_settings
from strongroom import Settings
from strongroom.server.app import create_app
from strongroom.server.protocol import uvicorn_options
from strongroom.services.custody.init import InitResult, init_custody


def sealed_settings(
    backend: str, home: Path, schema: str | None = None, **changes: Any
) -> Settings:
    """A store's settings with no master key configured, under a quorum's custody."""
    return server_settings(backend, home, schema, master_key=None, seal="shamir", **changes)


async def initialise(settings: Settings, shares: int = 5, threshold: int = 3) -> InitResult:
    return await init_custody(settings, shares=shares, threshold=threshold)


@dataclass
class SealedServer:
    base_url: str
    settings: Settings
    api: Any

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)


@asynccontextmanager
async def serve_sealed(settings: Settings) -> AsyncIterator[SealedServer]:
    """``strongroom serve`` as one worker would run it: the app opens nothing until unsealed."""
    sock = free_socket()
    api = create_app(settings=settings, run_scheduler=False)
    config = uvicorn.Config(api, log_level="warning", lifespan="on", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    try:
        yield SealedServer(f"http://127.0.0.1:{sock.getsockname()[1]}", settings, api)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()
