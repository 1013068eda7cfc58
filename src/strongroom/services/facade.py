"""The seed's classes as thin facades over one wiring (``Strongroom``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from strongroom.core.config import Settings
from strongroom.services.wiring import Strongroom, default_app

__all__ = ["ManagerBoundFacade", "StrongroomFacade"]

if TYPE_CHECKING:
    from strongroom.services.audit.secrets_audit import SecretsAudit
    from strongroom.services.secrets.secrets_manager import SecretsManager


class StrongroomFacade:
    """Built with no arguments, a facade uses the process default (opened on first use), so
    ``SecretsAudit()`` sees what ``SecretsManager()`` did; ``app`` or ``settings`` choose."""

    def __init__(self, app: Strongroom | None = None, *, settings: Settings | None = None) -> None:
        self._app = app
        self._settings = settings
        self._owns_app = False

    async def initialize(self) -> None:
        await self._ready()

    async def _ready(self) -> Strongroom:
        if self._app is not None and not self._app.closed:
            return self._app
        if self._settings is not None:
            self._app = await Strongroom.open(self._settings)
            self._owns_app = True
            return self._app
        return await default_app()

    async def close(self) -> None:
        """Close the stores this facade opened itself (never the shared default)."""
        if self._app is not None and self._owns_app:
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
        secrets_manager: SecretsManager | Strongroom | None = None,
        audit: SecretsAudit | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        if isinstance(secrets_manager, Strongroom):
            super().__init__(secrets_manager, settings=settings)
            self._manager: SecretsManager | None = None
        else:
            super().__init__(settings=settings)
            self._manager = secrets_manager
        self._audit = audit

    async def _ready(self) -> Strongroom:
        if self._manager is not None:
            return await self._manager._ready()
        return await super()._ready()
