"""Operators' view of the Azure profile's several vaults: health, backlog and reconcile."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from strongroom.backends.azure_regions import RegionalVaults
from strongroom.core.errors import ConfigurationError
from strongroom.core.logging import get_logger
from strongroom.services.wiring import Strongroom

__all__ = ["reconcile_vaults", "regional_vaults", "vault_health"]

log = get_logger("strongroom.azure")


def regional_vaults(app: Strongroom) -> RegionalVaults:
    """The store's vaults, under its read-through cache if it has one."""
    store: Any = app.store
    while not isinstance(store, RegionalVaults):
        store = getattr(store, "inner", None)
        if store is None:
            raise ConfigurationError(
                "no secondary vaults are configured (set AZURE_KEY_VAULT_URL and "
                "AZURE_KEY_VAULT_SECONDARY_URLS)"
            )
    return store


async def vault_health(app: Strongroom) -> list[dict[str, Any]]:
    """Each vault: its role, whether reads may go to it, and what it still has to catch up."""
    return [asdict(h) for h in await regional_vaults(app).health()]


async def reconcile_vaults(app: Strongroom, *, repair: bool = True) -> list[dict[str, Any]]:
    """Every name on every secondary compared with the primary; what differed (repaired unless
    ``repair`` is False). Values are compared by copying, never printed."""
    drift = await regional_vaults(app).reconcile(repair=repair)
    log.info("vaults reconciled" if repair else "vaults checked", count=len(drift))
    return [{"vault": d.vault, "name": d.name, "problems": list(d.problems)} for d in drift]
