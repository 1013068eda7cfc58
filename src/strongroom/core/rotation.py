"""Rotation policy as pure functions of their inputs: when a secret is due, how long to wait
before retrying, what the default policy of each secret type is."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from strongroom.core.errors import ValidationError
from strongroom.core.models import SecretType
from strongroom.core.validation import validate_name, validate_text

__all__ = [
    "DEFAULT_POLICY_DAYS",
    "RotationCallback",
    "RotationConfig",
    "RotationOutcome",
    "due_at",
    "retry_delay",
]

#: Callbacks receive the secret's name and return the new value (sync or async).
RotationCallback = Callable[[str], "str | dict[str, Any] | Awaitable[str | dict[str, Any]]"]

#: The seed's best practices: API keys 90 days, database passwords 60, JWT secrets 30.
DEFAULT_POLICY_DAYS: Mapping[SecretType, int] = {
    SecretType.API_KEY: 90,
    SecretType.DATABASE_CREDENTIAL: 60,
    SecretType.JWT_SECRET: 30,
}
DEFAULT_ROTATION_DAYS = 90
MAX_ATTEMPT_DELAY = timedelta(hours=1)
FIRST_RETRY = timedelta(minutes=1)


class RotationOutcome(enum.StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


@dataclass(slots=True)
class RotationConfig:
    """The seed's rotation configuration; ``name`` is the secret's name.

    ``rotation_callback`` (code, re-attached by name after a restart) or ``generator`` (a
    built-in by name, stored, so it works after a restart on its own) makes the new value;
    ``rotator`` names a registered target system (e.g. a PostgreSQL role) to apply it to.
    ``worker`` leaves the rotation to rotation workers (processes elsewhere that claim it and
    submit the new value, see ``strongroom rotation worker``): the server's scheduler then
    never rotates it itself.
    """

    name: str
    rotation_days: int = DEFAULT_ROTATION_DAYS
    rotation_hours_before_expiry: int = 24
    enabled: bool = True
    rotation_callback: RotationCallback | None = None
    description: str = ""
    generator: str | None = None
    generator_options: dict[str, Any] = field(default_factory=dict)
    rotator: str | None = None
    verify_callback: Callable[[str, Any], bool | Awaitable[bool]] | None = None
    grace_period_hours: int = 24
    secret_type: SecretType | None = None
    worker: bool = False

    def validate(self) -> None:
        validate_name(self.name)
        for label, value, low, high in (
            ("rotation_days", self.rotation_days, 1, 3650),
            ("rotation_hours_before_expiry", self.rotation_hours_before_expiry, 0, 8760),
            ("grace_period_hours", self.grace_period_hours, 0, 8760),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValidationError(f"{label} must be a whole number from {low} to {high}")
        if not isinstance(self.enabled, bool) or not isinstance(self.worker, bool):
            raise ValidationError("enabled and worker must be True or False")
        if self.rotation_callback is not None and not callable(self.rotation_callback):
            raise ValidationError("rotation_callback must be callable")
        validate_text(self.description, "description", 1024)


def due_at(
    last_rotation: datetime | None,
    rotation_days: int,
    expires_at: datetime | None,
    hours_before_expiry: int,
    *,
    now: datetime,
) -> datetime:
    """When a secret next needs rotating: its period after the last rotation, or the buffer
    before its expiry, whichever comes first; at once if it was never rotated (no secret yet)."""
    if last_rotation is None:
        return now
    due = last_rotation + timedelta(days=rotation_days)
    if expires_at is not None:
        due = min(due, expires_at - timedelta(hours=hours_before_expiry))
    return due


def next_rotation(last_rotation: datetime | None, rotation_days: int) -> datetime | None:
    return None if last_rotation is None else last_rotation + timedelta(days=rotation_days)


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff for failed rotations: 1 min, 2, 4, ... capped at one hour."""
    if attempt < 1:
        return timedelta(0)
    delay: timedelta = FIRST_RETRY * (2 ** min(attempt - 1, 16))
    return min(delay, MAX_ATTEMPT_DELAY)


def policy_days(secret_type: SecretType, overrides: Mapping[SecretType, int] | None = None) -> int:
    """The default rotation period of a type with no configuration of its own."""
    if overrides and secret_type in overrides:
        return overrides[secret_type]
    return DEFAULT_POLICY_DAYS.get(secret_type, DEFAULT_ROTATION_DAYS)
