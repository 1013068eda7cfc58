"""One rotation, step by step: generate, apply to the target, verify, promote, and record the
outcome; and the end of previous versions' grace periods. ``SecretsRotation`` claims the rows
(leases) and calls these."""

from __future__ import annotations

import inspect
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strongroom.backends.base import WriteMode
from strongroom.core.audit import AuditAction
from strongroom.core.errors import RotationFailedError, SecretNotFoundError, StrongroomError
from strongroom.core.logging import get_logger
from strongroom.core.models import (
    JSON_CONTENT_TYPE,
    NewVersion,
    PropertyChanges,
    SecretType,
    VersionProperties,
)
from strongroom.core.rotation import RotationOutcome, due_at, next_rotation, retry_delay
from strongroom.core.validation import encode_value
from strongroom.services.notify import Notification
from strongroom.services.rotation.generators import generate

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = [
    "Submitted",
    "current_properties",
    "end_grace_periods",
    "record_failure",
    "rotate_claimed",
]

log = get_logger("strongroom.rotation")


def _safe_reason(exc: BaseException) -> str:
    """Why a step failed, without a callback's message (it might quote the value)."""
    if isinstance(exc, StrongroomError):
        return str(exc)
    return f"{type(exc).__name__} raised"


def _unjson(text: str | None) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(text) if text else {}
    return loaded


@dataclass(frozen=True, slots=True)
class Submitted:
    """A new value made elsewhere (by a rotation worker's callback or generator); its ``repr``
    shows no value."""

    value: Any = field(repr=False)


async def rotate_claimed(
    app: Strongroom, row: dict[str, Any], *, submitted: Submitted | None = None
) -> dict[str, Any]:
    """Rotate a claimed row: a new value (``submitted`` by a worker, else made here), applied,
    verified, promoted; a failure is recorded and retried, never raised."""
    name = row["display_name"]
    now = app.clock()
    started = time.perf_counter()
    details: dict[str, Any] = {"attempt": row["attempts"] + 1}
    if submitted is not None:
        details["operation"] = "rotation.worker"
    try:
        async with app.audit.operation(AuditAction.ROTATE, name, **details) as op:
            props = await _promote_new_version(app, row, now, submitted)
            op.details.update(version=props.version)
    except Exception as exc:  # every failure is recorded and retried, never raised
        app.metrics.inc("rotations_total", result="failure")
        app.metrics.observe("rotation_seconds", time.perf_counter() - started)
        return await record_failure(app, row, now, exc)
    app.metrics.inc("rotations_total", result="success")
    app.metrics.observe("rotation_seconds", time.perf_counter() - started)
    current_prev = row.get("_previous")
    grace = timedelta(hours=row["grace_period_hours"])
    pending = row["previous_version"] if row["previous_disable_at"] else None
    if pending and pending != current_prev:
        # Rotated again within a grace period: the older version's grace ends now.
        await _disable_version(app, name, pending, now)
    await app.rotation_store.finish(
        {
            "secret_name": row["secret_name"],
            "last_rotation": props.created_at,
            "next_rotation": next_rotation(props.created_at, row["rotation_days"]),
            "expires_at": props.expires_at,
            "due_at": due_at(
                props.created_at, row["rotation_days"], props.expires_at,
                row["rotation_hours_before_expiry"], now=now,
            ),
            "attempts": 0,
            "last_attempt": now,
            "last_result": RotationOutcome.SUCCESS.value,
            "last_error": None,
            "force_on_next": False,
            "previous_version": current_prev,
            "previous_disable_at": (now + grace) if current_prev else None,
            "updated_at": now,
        }
    )  # fmt: skip
    log.info("secret rotated", name=name, version=props.version)
    await app.events.emit("secret.rotated", name, version=props.version)
    return {"name": name, "rotated": True, "version": props.version}


async def _promote_new_version(
    app: Strongroom, row: dict[str, Any], now: datetime, submitted: Submitted | None
) -> VersionProperties:
    """Generate, apply to the target, verify, then make the new value current."""
    name = row["display_name"]
    current = await current_properties(app, name)
    row["_previous"] = current.version if current else None
    value = submitted.value if submitted is not None else await _new_value(app, row)
    data, content_type = encode_value(
        value, current.content_type if current and isinstance(value, str) else None
    )
    if content_type == JSON_CONTENT_TYPE and isinstance(value, str):
        content_type = None
    rotator = None
    if row["rotator"]:
        bound = app.rotators.get(row["rotator"])
        if bound is None:
            raise RotationFailedError(f"rotator {row['rotator']!r} is not registered here")
        # Checked again here: a stored schedule may predate the binding or be forged.
        rotator = bound.require(name)
    old = None
    if rotator is not None:
        old = (await app.store.get_version(name)).value.reveal() if current else None
        await rotator.apply(name, value, old)
    try:
        if rotator is not None:
            await rotator.verify(name, value)
        await _verify_new_value(app, row["secret_name"], name, value)
        return await _write_new_version(app, row, current, data, content_type, now)
    except BaseException:
        # Whatever failed after the target took the new credential, put the old one back:
        # the current version must stay the credential that works.
        if rotator is not None:
            await rotator.rollback(name, old)
        raise


async def _verify_new_value(app: Strongroom, key: str, name: str, value: Any) -> None:
    verifier = app.verifiers.get(key)
    if verifier is None:
        return
    try:
        verdict = verifier(name, value)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Exception as exc:
        raise RotationFailedError(f"verify callback raised {type(exc).__name__}") from None
    if not verdict:
        raise RotationFailedError("the new value did not pass verification")


async def _write_new_version(
    app: Strongroom,
    row: dict[str, Any],
    current: VersionProperties | None,
    data: bytes,
    content_type: str | None,
    now: datetime,
) -> VersionProperties:
    lifetime = None
    if current is not None and current.expires_at is not None:
        lifetime = current.expires_at - current.created_at  # new versions live as long
    new = NewVersion(
        name=row["display_name"],
        version=secrets.token_hex(16),
        secret_type=(
            current.secret_type if current
            else SecretType(row["secret_type"] or SecretType.GENERIC.value)
        ),
        content_type=content_type,
        tags=dict(current.tags) if current else {"rotation": "managed"},
        created_at=now,
        expires_at=(now + lifetime) if lifetime else None,
    )  # fmt: skip
    mode = WriteMode.UPDATE if current else WriteMode.CREATE
    return await app.store.write_version(new, data, mode)


async def _new_value(app: Strongroom, row: dict[str, Any]) -> Any:
    callback = app.callbacks.get(row["secret_name"])
    if callback is not None:
        # User code: its exception (even a strongroom one) may quote a value, so only its
        # type travels on.
        try:
            value = callback(row["display_name"])
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            raise RotationFailedError(f"rotation callback raised {type(exc).__name__}") from None
        return value
    if row["generator"]:
        return generate(row["generator"], _unjson(row["generator_options"]))
    raise RotationFailedError(
        "no rotation callback is attached in this process (register_callback after a "
        "restart) and no generator is configured"
    )


async def record_failure(
    app: Strongroom, row: dict[str, Any], now: datetime, exc: BaseException
) -> dict[str, Any]:
    """Record a failed attempt: retry after a back-off, emit ``rotation.failed``, notify."""
    attempts = row["attempts"] + 1
    reason = _safe_reason(exc)
    await app.rotation_store.finish(
        {
            "secret_name": row["secret_name"],
            "last_rotation": row["last_rotation"],
            "next_rotation": row["next_rotation"],
            "expires_at": row["expires_at"],
            "due_at": now + retry_delay(attempts),
            "attempts": attempts,
            "last_attempt": now,
            "last_result": RotationOutcome.FAILURE.value,
            "last_error": reason,
            "force_on_next": row["force_on_next"],
            "previous_version": row["previous_version"],
            "previous_disable_at": row["previous_disable_at"],
            "updated_at": now,
        }
    )
    log.warning("rotation failed", name=row["display_name"], error=reason, attempt=attempts)
    fields = {
        "error": reason,
        "attempt": attempts,
        "next_attempt": (now + retry_delay(attempts)).isoformat(),
    }
    await app.events.emit("rotation.failed", row["display_name"], **fields)
    app.notifier.send_later(
        Notification(
            kind="rotation.failed",
            priority="high",
            subject=f"strongroom: rotation of {row['display_name']} failed",
            fields={"secret_name": row["display_name"], **fields},
            occurred_at=now,
        )
    )
    return {"name": row["display_name"], "rotated": False, "error": reason}


async def end_grace_periods(app: Strongroom, batch: int) -> list[str]:
    """Disable previous versions whose grace period is over."""
    ended = []
    now = app.clock()
    for row in await app.rotation_store.grace_expired(now, batch):
        version = row["previous_version"]
        if await _disable_version(app, row["display_name"], version, now):
            ended.append(row["display_name"])
        await app.rotation_store.clear_grace(row["secret_name"], version)
    return ended


async def _disable_version(app: Strongroom, name: str, version: str, now: datetime) -> bool:
    try:
        await app.store.update_properties(
            name, version, PropertyChanges(updated_at=now, enabled=False)
        )
    except SecretNotFoundError:
        return False  # the version or the secret is gone: nothing left to disable
    return True


async def current_properties(app: Strongroom, name: str) -> VersionProperties | None:
    try:
        return await app.store.get_properties(name)
    except SecretNotFoundError:
        return None
