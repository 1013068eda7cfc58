"""The rotator protocol: apply a new value to a target, verify it, put the old one back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from strongroom.core.errors import PermissionDeniedError, ValidationError
from strongroom.core.policy import glob_match, validate_pattern

__all__ = ["BoundRotator", "Rotator"]


@runtime_checkable
class Rotator(Protocol):
    """A system whose credential a secret holds (a database role, an API's key, ...).

    ``apply`` makes ``new`` the live credential; ``verify`` proves it works (raising if not);
    ``rollback`` restores ``old`` when verification fails, so the current version stays true.
    """

    async def apply(self, name: str, new: Any, old: Any | None) -> None: ...

    async def verify(self, name: str, new: Any) -> None: ...

    async def rollback(self, name: str, old: Any | None) -> None: ...


@dataclass(frozen=True, slots=True)
class BoundRotator:
    """A rotator with the secret names (or ``*``/``?`` patterns) it was registered to serve.

    Rotators are one namespace per process, and a schedule names one by text: without a
    binding, anyone allowed to schedule any secret could point a production target (a
    database role) at a secret they can read. Nothing outside the binding is ever served.
    """

    name: str
    rotator: Rotator
    patterns: tuple[str, ...]

    @classmethod
    def build(cls, name: str, rotator: Rotator, secrets: Iterable[str] | None) -> BoundRotator:
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise ValidationError("a rotator's name is text of 1-128 characters")
        if not isinstance(rotator, Rotator):
            raise ValidationError("a rotator needs apply, verify and rollback methods")
        if isinstance(secrets, str):
            raise ValidationError("secrets is a list of secret names or patterns")
        patterns = tuple(validate_pattern(p) for p in (secrets if secrets is not None else [name]))
        if not patterns:
            raise ValidationError("a rotator serves at least one secret name or pattern")
        return cls(name, rotator, patterns)

    def serves(self, secret_name: str) -> bool:
        return any(glob_match(p, secret_name) for p in self.patterns)

    def require(self, secret_name: str) -> Rotator:
        """The rotator, or PermissionDeniedError if ``secret_name`` is outside its binding."""
        if not self.serves(secret_name):
            raise PermissionDeniedError(
                f"rotator {self.name!r} is not bound to secret {secret_name!r}"
            )
        return self.rotator
