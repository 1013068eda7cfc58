"""The process's remote client, like the local profile's default wiring: opened on first use in
each event loop and shared by every facade built without arguments."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import strongroom
from strongroom.client.transport import RemoteClient, RemoteConfig
from strongroom.core.config import Settings
from strongroom.core.errors import ConfigurationError
from strongroom.services.remote.cache import stop_following

__all__ = ["RemoteFacadeMixin", "default_client", "remote_requested", "reset_default_client"]

_default: tuple[asyncio.AbstractEventLoop, RemoteClient] | None = None


def user_agent() -> str:
    return f"strongroom-library/{strongroom.__version__}"


async def default_client() -> RemoteClient:
    """The client for STRONGROOM_ADDR in this event loop (one pool per process and loop)."""
    global _default  # noqa: PLW0603
    loop = asyncio.get_running_loop()
    if _default is not None and _default[0] is loop and not _default[1].closed:
        return _default[1]
    client = RemoteClient(RemoteConfig.from_settings(Settings()), user_agent=user_agent())
    _default = (loop, client)
    return client


async def reset_default_client() -> None:
    """Close the process's client (the next call opens one again from the environment)."""
    global _default
    if _default is not None:
        client, _default = _default[1], None
        await stop_following(client)
        await client.close()


def remote_requested(app: Any, settings: Settings | None) -> bool:
    """Does a facade built with these arguments talk to a server? A client or a remote
    facade says yes, a local wiring no; otherwise the settings (else the environment) decide."""
    if isinstance(app, RemoteClient | RemoteFacadeMixin):
        return True
    if app is not None:
        return False
    if settings is not None:
        return settings.remote
    return bool(os.environ.get("STRONGROOM_ADDR"))


class RemoteFacadeMixin:
    """What every remote facade shares: which client it uses, and that it never opens a
    local store (a method the remote profile does not offer says so)."""

    _app: Any
    _settings: Settings | None
    _owns_app: bool

    async def _client(self) -> RemoteClient:
        # The seed builds rotation and revocation from the manager: theirs is the client.
        app = self._app if self._app is not None else getattr(self, "_manager", None)
        if isinstance(app, RemoteClient) and not app.closed:
            return app
        if isinstance(app, RemoteFacadeMixin):
            return await app._client()
        if self._settings is not None:
            client = RemoteClient(
                RemoteConfig.from_settings(self._settings), user_agent=user_agent()
            )
            self._app, self._owns_app = client, True
            return client
        return await default_client()

    async def _ready(self) -> Any:
        raise ConfigurationError(
            f"{type(self).__name__.removeprefix('Remote')} cannot do this in the remote "
            "profile: it needs the master key, which only the server holds"
        )

    async def initialize(self) -> None:
        await self._client()

    async def close(self) -> None:
        """Close the client this facade opened itself (never the shared one)."""
        if isinstance(self._app, RemoteClient) and self._owns_app:
            await stop_following(self._app)
            await self._app.close()

    async def __aenter__(self) -> Any:
        await self._client()
        return self
