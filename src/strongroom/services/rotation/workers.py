"""The server's side of rotation workers: processes elsewhere that make new values (their own
callbacks, or built-in generators run on their host) for schedules marked ``worker``.

The server keeps scheduling: a worker claims due rotations with a lease (the rotation store's
``worker_claim``, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single writer on SQLite),
makes the value, and submits it; the server verifies and promotes it exactly as it would its
own (version written, ``ROTATE`` audited, ``secret.rotated`` emitted) only while the lease is
still the worker's. A worker that dies leaves leases that expire and are claimed again. The
lease owner is a digest of the caller's identity and the worker's id, so no other identity can
complete, fail or release another's lease.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from strongroom.backends.base import name_key
from strongroom.core.audit import AuditAction
from strongroom.core.errors import RotationFailedError, ValidationError
from strongroom.core.logging import get_logger
from strongroom.core.validation import validate_name
from strongroom.db.rotation_store import WorkerFilter
from strongroom.services.rotation.procedure import Submitted, record_failure, rotate_claimed

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = [
    "MAX_CLAIM",
    "MAX_LEASE_SECONDS",
    "MIN_LEASE_SECONDS",
    "claim",
    "complete",
    "fail",
    "glob_to_like",
    "lease_owner",
    "release",
    "renew",
]

log = get_logger("strongroom.rotation.workers")

MIN_LEASE_SECONDS = 2
MAX_LEASE_SECONDS = 3600
MAX_CLAIM = 100
#: Due rows looked at per claim before the caller's grants filter them.
_CANDIDATES = 1000
_WORKER_ID = re.compile(r"[0-9a-f]{16,64}")
_GLOB = re.compile(r"[0-9A-Za-z*?-]{1,127}")


def lease_owner(identity: str, worker_id: str) -> str:
    """The lease owner of one worker process of one identity (bound to both)."""
    if not _WORKER_ID.fullmatch(worker_id):
        raise ValidationError("worker must be 16 to 64 lower-case hex digits")
    digest = hashlib.sha256(f"{identity}\0{worker_id}".encode()).hexdigest()[:40]
    return f"worker:{digest}"


def glob_to_like(glob: str | None) -> str | None:
    """A name glob (``*``, ``?``) as a LIKE pattern over name keys (names hold no ``%`` or
    ``_``, so nothing needs escaping)."""
    if glob is None:
        return None
    if not _GLOB.fullmatch(glob):
        raise ValidationError("a name glob holds letters, digits, '-', '*' and '?' only")
    return name_key(glob).replace("*", "%").replace("?", "_")


def _claimed(row: dict[str, Any]) -> dict[str, Any]:
    """What a worker needs of a claimed row (no value: the current value never leaves)."""
    return {
        "name": row["display_name"],
        "generator": row["generator"],
        "generator_options": json.loads(row["generator_options"] or "{}"),
        "secret_type": row["secret_type"],
        "attempt": row["attempts"] + 1,
        "lease_until": row["lease_until"],
    }


async def claim(
    app: Strongroom,
    owner: str,
    wanted: WorkerFilter,
    allowed: Callable[[str], bool],
    *,
    limit: int,
    lease_seconds: int,
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` due rotations this worker can run and its caller may rotate."""
    if not 1 <= limit <= MAX_CLAIM:
        raise ValidationError(f"limit must be from 1 to {MAX_CLAIM}")
    if not MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS:
        raise ValidationError(
            f"lease_seconds must be from {MIN_LEASE_SECONDS} to {MAX_LEASE_SECONDS}"
        )
    now = app.clock()
    candidates = await app.rotation_store.worker_due(now, _CANDIDATES, wanted)
    chosen = [name for name in candidates if allowed(name)][:limit]
    if not chosen:
        return []
    rows = await app.rotation_store.worker_claim(
        chosen, now, owner, now + timedelta(seconds=lease_seconds)
    )
    for row in rows:
        async with app.audit.operation(
            AuditAction.UPDATE, row["display_name"], operation="rotation.claim",
            attempt=row["attempts"] + 1,
        ):  # fmt: skip
            pass
    return [_claimed(row) for row in rows]


async def _leased(app: Strongroom, name: str, owner: str, lease_seconds: int) -> dict[str, Any]:
    """The row, once its lease is renewed for this owner; RotationFailedError if the lease is
    no longer this worker's (it expired and another took it, or the rotation is done)."""
    validate_name(name)
    now = app.clock()
    until = now + timedelta(seconds=lease_seconds)
    row = await app.rotation_store.renew(name_key(name), owner, until)
    if row is None:
        raise RotationFailedError(
            f"the lease on {name!r} is not this worker's (it expired and was claimed again, "
            "or the rotation is finished)"
        )
    return row


async def renew(app: Strongroom, name: str, owner: str, lease_seconds: int) -> dict[str, Any]:
    """Extend a lease its worker still holds (a long callback keeps its rotation)."""
    if not MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS:
        raise ValidationError(
            f"lease_seconds must be from {MIN_LEASE_SECONDS} to {MAX_LEASE_SECONDS}"
        )
    async with app.audit.operation(AuditAction.UPDATE, name, operation="rotation.renew"):
        row = await _leased(app, name, owner, lease_seconds)
    return {"name": row["display_name"], "lease_until": row["lease_until"]}


async def complete(app: Strongroom, name: str, owner: str, value: Any) -> dict[str, Any]:
    """Verify and promote a worker's new value, as the server's own rotation would."""
    row = await _leased(app, name, owner, MIN_LEASE_SECONDS * 30)
    return await rotate_claimed(app, row, submitted=Submitted(value))


async def fail(app: Strongroom, name: str, owner: str, message: str) -> dict[str, Any]:
    """Record a worker's failed attempt (audited, retried after the usual back-off)."""
    row = await _leased(app, name, owner, MIN_LEASE_SECONDS * 30)
    now = app.clock()
    error = RotationFailedError(f"rotation worker: {message}")
    try:
        async with app.audit.operation(
            AuditAction.ROTATE, row["display_name"], operation="rotation.worker",
            attempt=row["attempts"] + 1,
        ):  # fmt: skip
            raise error
    except RotationFailedError:
        pass
    return await record_failure(app, row, now, error)


async def release(app: Strongroom, names: Sequence[str], owner: str) -> list[str]:
    """Give back leases a worker will not use (it is stopping): due again for any worker."""
    released = []
    for name in names:
        validate_name(name)
        if await app.rotation_store.release(name_key(name), owner):
            released.append(name)
    if released:
        async with app.audit.operation(
            AuditAction.UPDATE, None, operation="rotation.release", count=len(released)
        ):
            pass
    log.info("rotation leases released", count=len(released))
    return released
