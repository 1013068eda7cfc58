"""The rotator protocol: apply a new value to a target, verify it, put the old one back."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Rotator"]


@runtime_checkable
class Rotator(Protocol):
    """A system whose credential a secret holds (a database role, an API's key, ...).

    ``apply`` makes ``new`` the live credential; ``verify`` proves it works (raising if not);
    ``rollback`` restores ``old`` when verification fails, so the current version stays true.
    """

    async def apply(self, name: str, new: Any, old: Any | None) -> None: ...

    async def verify(self, name: str, new: Any) -> None: ...

    async def rollback(self, name: str, old: Any | None) -> None: ...
