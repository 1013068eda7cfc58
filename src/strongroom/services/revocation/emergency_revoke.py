"""EmergencyRevoke: the seed's revocation with approvals, break-glass, risk and notifications.

A request moves through the pure state machine of :mod:`strongroom.core.revocation`; each step
is one conditional update of its row, audited as ``REVOKE`` and announced through the
notification dispatcher (which never raises: a mail server that is down cannot stop or undo a
revocation, and each delivery's outcome is stored with the request).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from strongroom.backends.base import name_key
from strongroom.core.audit import AuditAction
from strongroom.core.errors import (
    RevocationNotFoundError,
    RevocationStateError,
    SecretIsDeletedError,
    SecretNotFoundError,
    SeparationOfDutiesError,
    StrongroomError,
    TamperedError,
    ValidationError,
)
from strongroom.core.logging import get_logger
from strongroom.core.models import SecretType
from strongroom.core.revocation import (
    RevocationEvent,
    RevocationRequest,
    RevocationStatus,
    Severity,
    assess_risk,
    required_approvals,
    transition,
)
from strongroom.core.validation import validate_name
from strongroom.services.facade import ManagerBoundFacade
from strongroom.services.notify import Notification, validate_email_address
from strongroom.services.revocation.records import approvals_from, check_actor, public_revocation

if TYPE_CHECKING:
    from strongroom.client.transport import RemoteClient
    from strongroom.core.config import Settings
    from strongroom.services.audit.secrets_audit import SecretsAudit
    from strongroom.services.secrets.secrets_manager import SecretsManager
    from strongroom.services.wiring import Strongroom

__all__ = ["EmergencyRevoke"]

log = get_logger("strongroom.revocation")
READERS_WINDOW = timedelta(days=7)
IN_USE_WINDOW = timedelta(hours=1)
_PRIORITY = {
    Severity.LOW: "normal",
    Severity.MEDIUM: "normal",
    Severity.HIGH: "high",
    Severity.CRITICAL: "critical",
}


class EmergencyRevoke(ManagerBoundFacade):
    """``EmergencyRevoke(secrets_manager, audit)`` as in the seed, or ``EmergencyRevoke(app)``.

    ``approvals_required`` maps a severity to how many distinct approvers it needs (default 1).
    """

    _remote_counterpart = "strongroom.services.remote.revoke:RemoteEmergencyRevoke"

    def __init__(
        self,
        secrets_manager: SecretsManager | Strongroom | RemoteClient | None = None,
        audit: SecretsAudit | None = None,
        *,
        settings: Settings | None = None,
        approvals_required: Mapping[Severity | str, int] | None = None,
    ) -> None:
        super().__init__(secrets_manager, audit, settings=settings)
        self._policy = {
            Severity(str(k).lower()): int(v) for k, v in (approvals_required or {}).items()
        }

    # -- the seed's API --------------------------------------------------------------------

    async def request_revocation(self, request: RevocationRequest) -> dict[str, Any]:
        """Record the request (with its risk); ``immediate=True`` revokes within this call."""
        app = await self._ready()
        async with app.audit.operation(
            AuditAction.REVOKE, getattr(request, "secret_name", None), operation="request"
        ) as op:
            req = request.validated()
            for address in req.notify_recipients:
                validate_email_address(address)  # the notifier's own rule, checked up front
            severity = Severity(req.severity)
            name, secret_type = await _target(app, req.secret_name)
            if req.rotate_after and await app.rotation_store.get(name.lower()) is None:
                raise ValidationError("rotate_after needs a rotation configuration for this secret")
            risk = await self._risk(app, name, severity, secret_type)
            now = app.clock()
            row: dict[str, Any] = {
                "secret_name": name,
                "reason": str(req.reason),
                "status": RevocationStatus.PENDING.value,
                "severity": severity.value,
                "requested_by": req.requested_by,
                "requested_at": now,
                "approved_by": None,
                "revoked_at": None,
                "notify_recipients": list(req.notify_recipients),
                "details": {
                    "description": req.description,
                    "immediate": req.immediate,
                    "rotate_after": req.rotate_after,
                    "soft_delete": req.soft_delete,
                    "risk": risk,
                    "deliveries": [],
                },
                "required_approvals": required_approvals(
                    severity, self._policy or approvals_from(app.settings.revocation_approvals)
                ),
                "approvals": [],
                "closed_by": None,
                "closed_at": None,
                "updated_at": now,
            }
            revocation_id = await app.revocation_store.insert(row)
            op.details.update(
                revocation_id=revocation_id,
                severity=severity.value,
                reason=str(req.reason),
                requested_by=req.requested_by,
                immediate=req.immediate,
                break_glass=req.immediate,
            )
        row["id"] = revocation_id
        if req.immediate:
            # Break-glass: no approval, executed now, announced at the highest priority.
            await self._move(app, row, RevocationEvent.APPROVE, {"details": {
                **row["details"], "break_glass": True, "approved_without_approval": True,
            }})  # fmt: skip
            row = await self._execute(app, row)  # announces the outcome at the top priority
            # A second identity must acknowledge this use (recorded as soon as the versions
            # are revoked; a use that failed before is recorded here): audited and announced.
            await app.break_glass_reviews.announce_opened(row)
        else:
            await self._announce(app, row, "revocation.requested", _PRIORITY[severity])
        return await self.get_revocation_status(revocation_id)

    async def approve_revocation(self, revocation_id: int, approved_by: str) -> dict[str, Any]:
        """Add an approval; the last one needed executes the revocation."""
        app = await self._ready()
        async with app.audit.operation(
            AuditAction.REVOKE, None, operation="approve", approved_by=approved_by
        ) as op:
            row = await self._row(app, revocation_id)
            op.resource_name = row["secret_name"].lower()
            op.details["revocation_id"] = revocation_id
            check_actor(approved_by, "approved_by")
            status = RevocationStatus(row["status"])
            if status is not RevocationStatus.PENDING:
                transition(status, RevocationEvent.APPROVE)  # raises: closed or not pending
            if approved_by.casefold() == row["requested_by"].casefold():
                raise SeparationOfDutiesError("nobody approves their own revocation request")
            if any(a["by"].casefold() == approved_by.casefold() for a in row["approvals"]):
                raise SeparationOfDutiesError(f"{approved_by!r} has already approved it")
            now = app.clock()
            approvals = [*row["approvals"], {"by": approved_by, "at": now.isoformat()}]
            changes: dict[str, Any] = {"approvals": approvals, "updated_at": now}
            if len(approvals) >= row["required_approvals"]:
                changes["approved_by"] = ", ".join(a["by"] for a in approvals)
                await self._move(app, row, RevocationEvent.APPROVE, changes)
                approved = True
            else:
                if not await app.revocation_store.update(revocation_id, status.value, changes):
                    raise RevocationStateError("the request changed meanwhile; try again")
                row.update(changes)
                approved = False
        if approved:
            # Revoke first: nobody waits on a mail server or a webhook while the secret is
            # still readable. Then say it was approved (its completion is announced too).
            await self._execute(app, row)
            await self._announce(app, row, "revocation.approved", "high")
        return await self.get_revocation_status(revocation_id)

    async def reject_revocation(
        self, revocation_id: int, rejected_by: str, reason: str = ""
    ) -> dict[str, Any]:
        return await self._close(revocation_id, RevocationEvent.REJECT, rejected_by, reason)

    async def cancel_revocation(self, revocation_id: int, by: str) -> dict[str, Any]:
        return await self._close(revocation_id, RevocationEvent.CANCEL, by, "")

    async def get_revocation_status(self, revocation_id: int) -> dict[str, Any]:
        """A request's state; a break-glass one also says where its review stands."""
        app = await self._ready()
        status = public_revocation(await self._row(app, revocation_id))
        if status["break_glass"]:
            review = await app.revocation_store.get_review(revocation_id)
            status["review_status"] = review["status"] if review else None
            status["review_due_at"] = review["due_at"] if review else None
            status["reviewed_by"] = review["acknowledged_by"] if review else None
        return status

    async def get_revocation_history(
        self, secret_name: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        app = await self._ready()
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValidationError("limit must be 1-1000")
        name, exists = None, True
        if secret_name is not None:
            validate_name(secret_name)
            try:
                name = (await app.store.get_properties(secret_name)).name
            except SecretIsDeletedError:
                name = secret_name
            except SecretNotFoundError:
                name, exists = secret_name, False
        found = [public_revocation(r) for r in await app.revocation_store.history(name, limit)]
        if not found and not exists:
            raise SecretNotFoundError(
                f"secret {secret_name!r} not found, and no revocation of it is on record"
            )
        return found

    async def list_pending_revocations(self) -> list[dict[str, Any]]:
        app = await self._ready()
        return [public_revocation(r) for r in await app.revocation_store.pending()]

    # -- break-glass reviews ------------------------------------------------------------------

    async def list_break_glass_reviews(self, *, open_only: bool = True) -> list[dict[str, Any]]:
        """Reviews of break-glass revocations: open ones (oldest due first), or all."""
        app = await self._ready()
        return await app.break_glass_reviews.listing(open_only=open_only, limit=1000)

    async def acknowledge_break_glass(
        self, revocation_id: int, acknowledged_by: str, note: str
    ) -> dict[str, Any]:
        """Answer for a break-glass use as someone other than who used it, with a note."""
        app = await self._ready()
        return await app.break_glass_reviews.acknowledge(revocation_id, acknowledged_by, note)

    # -- steps -----------------------------------------------------------------------------

    async def _close(
        self, revocation_id: int, event: RevocationEvent, by: str, reason: str
    ) -> dict[str, Any]:
        app = await self._ready()
        async with app.audit.operation(
            AuditAction.REVOKE, None, operation=event.value, reason=reason or None
        ) as op:
            row = await self._row(app, revocation_id)
            op.resource_name = row["secret_name"].lower()
            op.details["revocation_id"] = revocation_id
            op.details["closed_by"] = by
            check_actor(by, "by")
            if not isinstance(reason, str) or len(reason) > 1000:
                raise ValidationError("reason must be text of at most 1000 characters")
            now = app.clock()
            details = {**row["details"], "close_reason": reason} if reason else row["details"]
            await self._move(
                app, row, event,
                {"closed_by": by, "closed_at": now, "updated_at": now, "details": details},
            )  # fmt: skip
        await self._announce(
            app, row, f"revocation.{RevocationStatus(row['status']).value.lower()}", "normal"
        )
        return await self.get_revocation_status(revocation_id)

    async def _execute(self, app: Strongroom, row: dict[str, Any]) -> dict[str, Any]:
        """Disable every version at once; then the optional soft delete and fresh value."""
        name = row["secret_name"]
        await self._move(app, row, RevocationEvent.START, {"updated_at": app.clock()})
        details = dict(row["details"])
        try:
            async with app.audit.operation(
                AuditAction.REVOKE, name, operation="execute", revocation_id=row["id"],
                severity=row["severity"],
            ) as op:  # fmt: skip
                now = app.clock()
                revoked = await app.store.revoke_all(name, now)
                # Outlives the secret: a purge and a restore never bring these versions back.
                await app.revocation_store.add_tombstone(name_key(name), row["id"], now)
                if details.get("break_glass"):  # answered for even if a later step fails
                    await app.break_glass_reviews.open(row)
                op.details["count"] = revoked
                app.metrics.inc("revocations_total", severity=str(row["severity"]))
                details["versions_revoked"] = revoked
                if details.get("rotate_after"):
                    from strongroom.services.rotation.secrets_rotation import SecretsRotation  # noqa: PLC0415

                    outcome = await SecretsRotation(app).rotate_secret(name, force=True)
                    if not outcome.get("rotated"):
                        raise RevocationStateError(
                            "revoked, but the fresh value could not be issued: "
                            + str(outcome.get("error") or outcome.get("reason"))
                        )
                    details["new_version"] = outcome["version"]
                if details.get("soft_delete"):
                    await app.store.delete(
                        name,
                        deleted_at=now,
                        purge_at=now + timedelta(days=app.settings.recovery_days),
                    )
        except Exception as exc:  # recorded as FAILED, never left IN_PROGRESS
            details["error"] = str(exc) if isinstance(exc, StrongroomError) else type(exc).__name__
            await self._move(app, row, RevocationEvent.FAIL, {
                "details": details, "closed_at": app.clock(), "updated_at": app.clock(),
            })  # fmt: skip
            log.error(
                "revocation failed", name=name, revocation_id=row["id"], error=details["error"]
            )
            if details.get("versions_revoked"):
                # Revoked all the same: consumers must hear it, their reads now fail.
                await app.events.emit(
                    "secret.revoked", name, revocation_id=row["id"],
                    versions_revoked=details["versions_revoked"],
                )  # fmt: skip
            await self._announce(app, row, "revocation.failed", "critical")
            return row
        done = app.clock()
        await self._move(app, row, RevocationEvent.COMPLETE, {
            "details": details, "revoked_at": now, "closed_at": done, "updated_at": done,
        })  # fmt: skip
        log.warning("secret revoked", name=name, revocation_id=row["id"], count=revoked)
        await app.events.emit(
            "secret.revoked", name, revocation_id=row["id"], versions_revoked=revoked
        )
        priority = "critical" if details.get("immediate") else "high"
        await self._announce(app, row, "revocation.completed", priority)
        return row

    async def _move(
        self,
        app: Strongroom,
        row: dict[str, Any],
        event: RevocationEvent,
        changes: dict[str, Any],
    ) -> None:
        """One state change: checked by the pure machine, applied only if nobody moved first."""
        current = RevocationStatus(row["status"])
        target = transition(current, event)
        changes = {**changes, "status": target.value}
        if not await app.revocation_store.update(row["id"], current.value, changes):
            raise RevocationStateError("the request changed meanwhile; try again")
        row.update(changes)

    async def _announce(
        self, app: Strongroom, row: dict[str, Any], kind: str, priority: str
    ) -> None:
        """Tell people, and store what each delivery came to (it never raises)."""
        status = row["status"]
        notification = Notification(
            kind=kind,
            priority=priority,  # type: ignore[arg-type]
            subject=f"strongroom: revocation of {row['secret_name']} {status.lower()}",
            fields={
                "revocation_id": row["id"],
                "secret_name": row["secret_name"],
                "severity": row["severity"],
                "reason": row["reason"],
                "status": status,
                "requested_by": row["requested_by"],
                "approved_by": row.get("approved_by"),
                "break_glass": bool(row["details"].get("break_glass")),
                "risk_level": row["details"].get("risk", {}).get("level"),
            },
            recipients=row["notify_recipients"],
            occurred_at=app.clock(),
        )
        outcomes = await app.notifier.send(notification)
        details = dict(row["details"])
        details["deliveries"] = [
            *details.get("deliveries", []),
            *({"kind": kind, **o.to_dict()} for o in outcomes),
        ]
        if await app.revocation_store.update(
            row["id"], status, {"details": details, "updated_at": app.clock()}
        ):
            row["details"] = details

    async def _risk(
        self, app: Strongroom, name: str, severity: Severity, secret_type: Any
    ) -> dict[str, Any]:
        now = app.clock()
        readers = recent = 0
        if app.audit.store is not None:
            found = await app.audit.store.analyse(
                "readers",
                {"resource_name": name.lower(), "since": now - READERS_WINDOW,
                 "recent": now - IN_USE_WINDOW},
            )  # fmt: skip
            if found:
                readers = int(found[0]["readers"] or 0)
                recent = int(found[0]["recent_reads"] or 0)
        risk = assess_risk(severity, secret_type, readers, recent)
        return {
            "score": risk.score,
            "level": risk.level,
            "factors": risk.factors,
            "recent_readers": readers,
            "reads_last_hour": recent,
        }

    @staticmethod
    async def _row(app: Strongroom, revocation_id: int) -> dict[str, Any]:
        if isinstance(revocation_id, bool) or not isinstance(revocation_id, int):
            raise ValidationError("a revocation id is a whole number")
        row = await app.revocation_store.get(revocation_id)
        if row is None:
            raise RevocationNotFoundError(f"no revocation request {revocation_id}")
        return row


async def _target(app: Strongroom, name: str) -> tuple[str, SecretType]:
    """The secret's stored name and type. One whose rows fail their MACs (the store has raised
    the alarm) can still be revoked, under the name asked for: an emergency is never blocked by
    what it responds to, and revoking takes access away, never grants it."""
    try:
        props = await app.store.get_properties(name)
    except TamperedError:
        return name, SecretType.GENERIC
    return props.name, props.secret_type
