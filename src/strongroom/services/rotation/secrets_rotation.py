"""SecretsRotation: the seed's scheduled rotation, with generators, target systems, retries,
a grace period for the previous version, and leases so replicas never rotate twice."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strongroom.backends.base import name_key
from strongroom.core.audit import AuditAction
from strongroom.core.errors import RotationFailedError, RotationNotConfiguredError, ValidationError
from strongroom.core.logging import get_logger
from strongroom.core.models import SecretType
from strongroom.core.rotation import (
    RotationCallback,
    RotationConfig,
    due_at,
    next_rotation,
    policy_days,
)
from strongroom.core.validation import validate_name
from strongroom.services.facade import ManagerBoundFacade
from strongroom.services.rotation.generators import check_generator
from strongroom.services.rotation.procedure import (
    current_properties,
    end_grace_periods,
    rotate_claimed,
)
from strongroom.services.rotation.rotators.base import BoundRotator, Rotator

if TYPE_CHECKING:
    from strongroom.client.transport import RemoteClient
    from strongroom.core.config import Settings
    from strongroom.services.audit.secrets_audit import SecretsAudit
    from strongroom.services.secrets.secrets_manager import SecretsManager
    from strongroom.services.wiring import Strongroom

__all__ = ["RotationFailedError", "RotationNotConfiguredError", "SecretsRotation"]

log = get_logger("strongroom.rotation")
LEASE = timedelta(minutes=10)
CLAIM_BATCH = 1000
CONCURRENCY = 32


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class SecretsRotation(ManagerBoundFacade):
    """``SecretsRotation(secrets_manager, audit)`` as in the seed, or ``SecretsRotation(app)``."""

    _remote_counterpart = "strongroom.services.remote.rotation:RemoteSecretsRotation"

    def __init__(
        self,
        secrets_manager: SecretsManager | Strongroom | RemoteClient | None = None,
        audit: SecretsAudit | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(secrets_manager, audit, settings=settings)
        self.owner = _owner()
        self._scheduler: asyncio.Task[None] | None = None

    # -- configuration ---------------------------------------------------------------------

    async def register_secret(self, config: RotationConfig) -> dict[str, Any]:
        """Store ``config`` (and attach its callback in this process). The secret may not
        exist yet: the first rotation creates it."""
        app = await self._ready()
        async with app.audit.operation(
            AuditAction.UPDATE, getattr(config, "name", None), operation="rotation.configure"
        ):
            return await self._register(app, config)

    async def _register(self, app: Strongroom, config: RotationConfig) -> dict[str, Any]:
        config.validate()
        if config.worker and config.rotation_callback is not None:
            raise ValidationError(
                "a rotation left to workers runs their callbacks, not one given here"
            )
        if config.generator is not None:
            check_generator(config.generator, config.generator_options)
        elif (
            not config.worker
            and config.rotation_callback is None
            and name_key(config.name) not in app.callbacks
        ):
            raise ValidationError("a rotation needs a rotation_callback, a generator or workers")
        if config.rotator is not None:
            bound = app.rotators.get(config.rotator)
            if bound is None:
                raise ValidationError(f"unknown rotator {config.rotator!r}; register_rotator first")
            bound.require(config.name)  # PermissionDeniedError (403), audited by the caller
        key = name_key(config.name)
        if config.rotation_callback is not None:
            app.callbacks[key] = config.rotation_callback
        if config.verify_callback is not None:
            app.verifiers[key] = config.verify_callback
        now = app.clock()
        current = await current_properties(app, config.name)
        existing = await app.rotation_store.get(key)
        force = bool(existing and existing["force_on_next"])
        last = current.created_at if current else None
        expires = current.expires_at if current else None
        row = {
            "secret_name": key,
            "display_name": config.name,
            "rotation_days": config.rotation_days,
            "rotation_hours_before_expiry": config.rotation_hours_before_expiry,
            "enabled": config.enabled,
            "description": config.description,
            "force_on_next": force,
            "last_rotation": last,
            "next_rotation": next_rotation(last, config.rotation_days),
            "generator": config.generator,
            "generator_options": _json(config.generator_options),
            "has_callback": config.rotation_callback is not None,
            "rotator": config.rotator,
            # The type a worker's --type matches: as configured, else the secret's own.
            "secret_type": (
                config.secret_type.value
                if config.secret_type
                else current.secret_type.value
                if current
                else None
            ),
            "external": config.worker,
            "grace_period_hours": config.grace_period_hours,
            "expires_at": expires,
            "due_at": now
            if force
            else due_at(
                last, config.rotation_days, expires, config.rotation_hours_before_expiry, now=now
            ),
            "attempts": existing["attempts"] if existing else 0,
            "last_attempt": existing["last_attempt"] if existing else None,
            "last_result": existing["last_result"] if existing else None,
            "last_error": existing["last_error"] if existing else None,
            "previous_version": existing["previous_version"] if existing else None,
            "previous_disable_at": existing["previous_disable_at"] if existing else None,
            "created_at": existing["created_at"] if existing else now,
            "updated_at": now,
        }
        await app.rotation_store.upsert(row)
        log.info("rotation registered", name=config.name, count=config.rotation_days)
        return await self.get_rotation_status(config.name)

    async def unregister_secret(self, name: str) -> bool:
        app = await self._ready()
        async with app.audit.operation(
            AuditAction.UPDATE, name, operation="rotation.unregister"
        ) as op:
            removed = await self._unregister(app, name)
            op.details["count"] = int(removed)
        return removed

    async def _unregister(self, app: Strongroom, name: str) -> bool:
        validate_name(name)
        key = name_key(name)
        app.callbacks.pop(key, None)
        app.verifiers.pop(key, None)
        return await app.rotation_store.delete(key)

    async def register_callback(self, name: str, callback: RotationCallback) -> None:
        """Re-attach a callback by secret name (callbacks are code: they do not survive a
        restart; configurations do)."""
        app = await self._ready()
        validate_name(name)
        if not callable(callback):
            raise ValidationError("callback must be callable")
        app.callbacks[name_key(name)] = callback

    async def register_rotator(
        self, name: str, rotator: Rotator, *, secrets: Sequence[str] | None = None
    ) -> None:
        """Make a target system (e.g. a PostgresRoleRotator) available to the configurations
        of the secrets it is bound to: ``secrets`` lists names or ``*``/``?`` patterns (default:
        the secret named like the rotator). A configuration of any other secret that names it
        is refused with PermissionDeniedError, and so is a rotation that would run it."""
        app = await self._ready()
        app.rotators[name] = BoundRotator.build(name, rotator, secrets)

    async def force_rotation(self, name: str) -> dict[str, Any]:
        """Rotate at the next check whatever the schedule says (sets ``force_on_next``)."""
        app = await self._ready()
        async with app.audit.operation(AuditAction.UPDATE, name, operation="rotation.force"):
            await self._force(app, name)
        return await self.get_rotation_status(name)

    async def _force(self, app: Strongroom, name: str) -> None:
        row = await self._row(app, name)
        now = app.clock()
        await app.rotation_store.schedule(
            {
                "secret_name": row["secret_name"],
                "due_at": now,
                "force_on_next": True,
                "last_rotation": row["last_rotation"],
                "next_rotation": row["next_rotation"],
                "expires_at": row["expires_at"],
                "updated_at": now,
            }
        )

    # -- status ----------------------------------------------------------------------------

    async def get_rotation_status(self, name: str) -> dict[str, Any]:
        app = await self._ready()
        return _status(await self._row(app, name), app.clock())

    async def list_rotation_configs(self) -> list[dict[str, Any]]:
        app = await self._ready()
        now = app.clock()
        return [_status(row, now) for row in await app.rotation_store.list_all()]

    async def get_rotation_history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """ROTATE events of this secret, newest first (from the audit log)."""
        from strongroom.services.audit.secrets_audit import SecretsAudit  # noqa: PLC0415

        app = await self._ready()
        validate_name(name)
        events = await SecretsAudit(app).get_audit_trail(name, AuditAction.ROTATE, limit)
        if not events and await app.rotation_store.get(name_key(name)) is None:
            raise RotationNotConfiguredError(
                f"no rotation is configured for {name!r} and none is on record"
            )
        return events

    async def compliance_report(
        self, policies: dict[SecretType, int] | None = None
    ) -> dict[str, Any]:
        """Every live secret: its policy (configured, or the default of its type) and whether
        it is overdue. The defaults are the seed's: API keys 90 days, database credentials 60,
        JWT secrets 30, anything else 90."""
        app = await self._ready()
        now = app.clock()
        configs = {row["secret_name"]: row for row in await app.rotation_store.list_all()}
        entries = []
        for props in await app.store.list_secrets():
            row = configs.get(name_key(props.name))
            if row is not None:
                entry = {
                    "name": props.name,
                    "secret_type": props.secret_type.value,
                    "policy": "configured",
                    "rotation_days": row["rotation_days"],
                    "enabled": row["enabled"],
                    "last_rotation": row["last_rotation"],
                    "due_at": policy_due(row, now),
                }
            else:
                days = policy_days(props.secret_type, policies)
                entry = {
                    "name": props.name,
                    "secret_type": props.secret_type.value,
                    "policy": "default",
                    "rotation_days": days,
                    "enabled": False,
                    "last_rotation": props.created_at,
                    "due_at": props.created_at + timedelta(days=days),
                }
            entry["overdue"] = entry["due_at"] <= now
            entry["days_overdue"] = max(0, (now - entry["due_at"]).days) if entry["overdue"] else 0
            entries.append(entry)
        return {
            "checked_at": now,
            "secrets": len(entries),
            "without_policy": [e["name"] for e in entries if e["policy"] == "default"],
            "overdue": [e["name"] for e in entries if e["overdue"]],
            "compliant": sum(
                1 for e in entries if e["policy"] == "configured" and not e["overdue"]
            ),
            "entries": entries,
        }

    # -- rotating --------------------------------------------------------------------------

    async def rotate_secret(self, name: str, force: bool = False) -> dict[str, Any]:
        """Rotate now if due (or if ``force``); returns what happened, raising nothing for a
        failed rotation (it is recorded, audited and retried)."""
        app = await self._ready()
        row = await self._row(app, name)
        now = app.clock()
        if not force and (not row["enabled"] or row["due_at"] > now):
            return {"name": row["display_name"], "rotated": False, "reason": "not due"}
        if row["external"]:
            # Its new value comes from a rotation worker: due now, for the next worker's claim.
            await self._force(app, name)
            return {"name": row["display_name"], "rotated": False, "reason": "queued for a worker"}
        claimed = await app.rotation_store.claim(row["secret_name"], now, self.owner, now + LEASE)
        if claimed is None:
            return {"name": row["display_name"], "rotated": False, "reason": "rotating elsewhere"}
        return await rotate_claimed(app, claimed)

    async def run_check(self) -> dict[str, Any]:
        """One scheduler cycle: claim every due secret (leased to this scheduler), rotate them,
        then disable previous versions whose grace period has ended."""
        app = await self._ready()
        results: list[dict[str, Any]] = []
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(row: dict[str, Any]) -> None:
            async with gate:
                results.append(await rotate_claimed(app, row))

        while True:
            now = app.clock()
            rows = await app.rotation_store.claim_due(now, self.owner, now + LEASE, CLAIM_BATCH)
            if not rows:
                break
            await asyncio.gather(*(one(row) for row in rows))
            if len(rows) < CLAIM_BATCH:
                break
        disabled = await end_grace_periods(app, CLAIM_BATCH)
        await app.events.check_expiry(
            await app.store.list_secrets(), timedelta(days=app.settings.expiry_warning_days)
        )
        rotated = [r["name"] for r in results if r["rotated"]]
        failed = [r["name"] for r in results if not r["rotated"]]
        return {"rotated": rotated, "failed": failed, "grace_ended": disabled}

    async def start_rotation_scheduler(self, check_interval_seconds: int = 3600) -> None:
        """Check now (catching up on anything missed while down), then every interval."""
        if isinstance(check_interval_seconds, bool) or not check_interval_seconds > 0:
            raise ValidationError("check_interval_seconds must be positive")
        await self._ready()
        if self._scheduler is not None and not self._scheduler.done():
            return
        self._scheduler = asyncio.get_running_loop().create_task(
            self._schedule(float(check_interval_seconds))
        )

    async def stop_rotation_scheduler(self) -> None:
        task, self._scheduler = self._scheduler, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _schedule(self, interval: float) -> None:
        while True:
            try:
                outcome = await self.run_check()
                if outcome["rotated"] or outcome["failed"]:
                    log.info(
                        "rotation check",
                        count=len(outcome["rotated"]),
                        error=",".join(outcome["failed"]) or None,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the scheduler outlives any one failure; logged, retried
                log.error("rotation check failed", error=type(exc).__name__)
            await asyncio.sleep(interval)

    @staticmethod
    async def _row(app: Strongroom, name: str) -> dict[str, Any]:
        validate_name(name)
        row = await app.rotation_store.get(name_key(name))
        if row is None:
            raise RotationNotConfiguredError(f"no rotation is configured for {name!r}")
        return row


def policy_due(row: dict[str, Any], now: datetime) -> datetime:
    """When the policy says the secret is due (retries of a failing rotation do not move it)."""
    due = due_at(
        row["last_rotation"], row["rotation_days"], row["expires_at"],
        row["rotation_hours_before_expiry"], now=now,
    )  # fmt: skip
    return min(due, row["due_at"]) if row["force_on_next"] else due


def _status(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    due = policy_due(row, now)
    return {
        "name": row["display_name"],
        "enabled": row["enabled"],
        "rotation_days": row["rotation_days"],
        "rotation_hours_before_expiry": row["rotation_hours_before_expiry"],
        "description": row["description"],
        "generator": row["generator"],
        "rotator": row["rotator"],
        "last_rotation": row["last_rotation"],
        "next_rotation": row["next_rotation"],
        "expires_at": row["expires_at"],
        "due_at": due,
        "next_attempt": row["due_at"] if row["enabled"] else None,
        "days_until_rotation": (due - now).days if due > now else -((now - due).days),
        "overdue": bool(row["enabled"] and due <= now),
        "force_on_next": row["force_on_next"],
        "attempts": row["attempts"],
        "last_attempt": row["last_attempt"],
        "last_result": row["last_result"],
        "last_error": row["last_error"],
        "grace_period_hours": row["grace_period_hours"],
        "worker": row["external"],
    }


def _json(options: dict[str, Any]) -> str:
    try:
        return json.dumps(options or {}, sort_keys=True)
    except (TypeError, ValueError):
        raise ValidationError("generator_options must be JSON-serialisable") from None
