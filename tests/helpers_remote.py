"""The remote profile in tests: one real ``strongroom serve`` over HTTPS (a test CA) per module,
and settings that point a client at it with a token and nothing else (no key, no database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from helpers_serve import Served, serve, server_settings
from strongroom import Settings, Strongroom
from strongroom.core.clock import Clock, system_clock


def remote_settings(served: Served, token: str | None, home: Path, **changes: object) -> Settings:
    """A client's whole configuration: the address, the CA bundle and a token."""
    assert served.ca_path is not None, "the remote profile is tested over HTTPS"
    values: dict[str, object] = {
        "STRONGROOM_ADDR": served.base_url,
        "STRONGROOM_CACERT": served.ca_path,
        "STRONGROOM_HOME": home,
        "STRONGROOM_REMOTE_RETRIES": 1,
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
