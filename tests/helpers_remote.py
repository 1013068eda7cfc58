"""The remote profile in tests: one real ``strongroom serve`` over HTTPS (a test CA) per module,
and settings that point a client at it with a token and nothing else (no key, no database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers_serve import Served, serve, server_settings
from strongroom import SecretsManager, Settings, Strongroom
from strongroom.core.clock import Clock, system_clock
from strongroom.server.context import Services


def remote_settings(served: Served, token: str | None, home: Path, **changes: object) -> Settings:
    """A client's whole configuration: the address, the CA bundle and a token."""
    assert served.ca_path is not None, "the remote profile is tested over HTTPS"
    values: dict[str, object] = {
        "STRONGROOM_ADDR": served.base_url,
        "STRONGROOM_CACERT": served.ca_path,
        "STRONGROOM_HOME": home,
        "STRONGROOM_REMOTE_RETRIES": 1,
        # Every read reaches the server (the suites check what it audits and refuses); the
        # cache has tests of its own.
        "STRONGROOM_CACHE_TTL_SECONDS": 0,
    }
    if token is not None:
        values["STRONGROOM_TOKEN"] = token
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def remote_server(
    home: Path, backend: str = "memory", *, clock: Clock = system_clock, **changes: object
) -> AsyncIterator[Served]:
    """A strongroom server over HTTPS on ``backend``, with the given settings changed."""
    server_home = home / "server"
    server_home.mkdir(parents=True, exist_ok=True)
    tls = home / "tls"
    tls.mkdir(exist_ok=True)
    app = await Strongroom.open(server_settings(backend, server_home, **changes), clock=clock)
    try:
        async with serve(app, tls_dir=tls) as running:
            yield running
    finally:
        await app.close()


#: Behavioural suites that also run on the remote profile: their ``manager`` is remote.
REMOTE_SUITES = frozenset(
    {
        "test_manager_lifecycle.py",
        "test_manager_properties.py",
        "test_manager_validation.py",
        "test_manager_concurrency.py",
        "test_audit_queries.py",
        "test_revocation.py",
        "test_rotation.py",
        "test_threats.py",
        "test_events.py",
    }
)


@dataclass
class RemoteSwitch:
    """An HTTPS server, started on first use, whose API serves whichever wiring a test
    points it at."""

    home: Path
    served: Served | None = None
    api: Any = None
    _stack: AsyncExitStack | None = None

    async def start(self) -> Served:
        if self.served is None:
            self._stack = AsyncExitStack()
            self.served = await self._stack.enter_async_context(remote_server(self.home))
            assert self.served.server is not None
            self.api = self.served.server.config.app
        return self.served

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()


@asynccontextmanager
async def switch_server(home: Path) -> AsyncIterator[RemoteSwitch]:
    switch = RemoteSwitch(home)
    try:
        yield switch
    finally:
        await switch.stop()


@asynccontextmanager
async def remote_manager_for(
    switch: RemoteSwitch, app: Strongroom, home: Path
) -> AsyncIterator[SecretsManager]:
    """Point the server at ``app`` and build a remote manager with an admin token of it."""
    served = await switch.start()
    switch.api.state.services = Services.over(app)
    issued = await app.access.create_token("remote-tester", policies=["admin"])
    client_home = home / "remote-client"
    client_home.mkdir(exist_ok=True)
    settings = remote_settings(served, issued.token, client_home)
    async with SecretsManager(settings=settings) as remote:
        yield remote
