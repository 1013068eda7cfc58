"""The seed's classes as thin facades over one wiring (``Strongroom``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar, Self

from strongroom.core.config import Settings
from strongroom.services.wiring import Strongroom, default_app

__all__ = ["ManagerBoundFacade", "StrongroomFacade"]

if TYPE_CHECKING:
    from strongroom.client.transport import RemoteClient
    from strongroom.services.audit.secrets_audit import SecretsAudit
    from strongroom.services.secrets.secrets_manager import SecretsManager


def _remote_class(cls: type[Any], app: Any, settings: Settings | None) -> type[Any]:
    """The remote profile's subclass of ``cls`` when these arguments ask for a server."""
    target: str | None = cls.__dict__.get("_remote_counterpart")
    if target is None or isinstance(app, Strongroom):
        return cls  # a local wiring (the remote client's HTTP stack stays unimported)
    from strongroom.services.remote.session import remote_requested  # noqa: PLC0415

    if not remote_requested(app, settings):
        return cls
    module, _, name = target.partition(":")
    remote: type[Any] = getattr(importlib.import_module(module), name)
    return remote


class StrongroomFacade:
    """Built with no arguments, a facade uses the process default (opened on first use), so
    ``SecretsAudit()`` sees what ``SecretsManager()`` did; ``app`` or ``settings`` choose.

    In the remote profile (STRONGROOM_ADDR set, or a remote client or facade passed in) the
    facade is built as its remote subclass ("module:Class" in ``_remote_counterpart``), which
    sends every call to the server."""

    _remote_counterpart: ClassVar[str | None] = None

    def __new__(
        cls, app: Any = None, *args: Any, settings: Settings | None = None, **kw: Any
    ) -> Self:
        instance: Self = object.__new__(_remote_class(cls, app, settings))
        return instance

    def __init__(
        self, app: Strongroom | RemoteClient | None = None, *, settings: Settings | None = None
    ) -> None:
        # A Strongroom (local), or in the remote subclasses a RemoteClient or remote facade.
        self._app: Any = app
        self._settings = settings
        self._owns_app = False

    async def initialize(self) -> None:
        await self._ready()

    async def _ready(self) -> Strongroom:
        if isinstance(self._app, Strongroom) and not self._app.closed:
            return self._app
        if self._settings is not None:
            opened = await Strongroom.open(self._settings)
            self._app, self._owns_app = opened, True
            return opened
        return await default_app()

    async def close(self) -> None:
        """Close the stores this facade opened itself (never the shared default)."""
        if isinstance(self._app, Strongroom) and self._owns_app:
            await self._app.close()

    async def __aenter__(self) -> Self:
        await self._ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ManagerBoundFacade(StrongroomFacade):
    """The seed builds rotation and revocation from the manager and the audit:
    ``SecretsRotation(secrets_manager, audit)``. They share the manager's wiring; a
    ``Strongroom`` may be passed in its place."""

    def __init__(
        self,
        secrets_manager: SecretsManager | Strongroom | RemoteClient | None = None,
        audit: SecretsAudit | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        if secrets_manager is not None and not isinstance(secrets_manager, StrongroomFacade):
            super().__init__(secrets_manager, settings=settings)  # a wiring or a client
            self._manager: SecretsManager | None = None
        else:
            super().__init__(settings=settings)
            self._manager = secrets_manager
        self._audit = audit

    async def _ready(self) -> Strongroom:
        if self._manager is not None:
            return await self._manager._ready()
        return await super()._ready()
