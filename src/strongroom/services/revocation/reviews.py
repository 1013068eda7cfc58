"""Break-glass reviews: someone other than the responder answers for every use.

A break-glass revocation skips the approvals, so each one opens a review that a second identity
must acknowledge, with a note, within ``STRONGROOM_BREAK_GLASS_REVIEW_HOURS`` (default 24 h).
Nobody acknowledges their own use (the approvals' separation of duties). While a review is
overdue, a schedule notifies again every ``STRONGROOM_BREAK_GLASS_REMIND_MINUTES``, first at high
priority to the revocation's recipients, then at critical priority to the escalation addresses
as well. Opening, acknowledging and each overdue notice are ``REVOKE`` audit events.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strongroom.core.actor import acting_as
from strongroom.core.audit import AuditAction
from strongroom.core.errors import (
    ConfigurationError,
    RevocationNotFoundError,
    RevocationStateError,
    SeparationOfDutiesError,
    StrongroomError,
    ValidationError,
)
from strongroom.core.logging import get_logger
from strongroom.db.review_store import OPEN
from strongroom.services.notify import Notification, Priority, validate_email_address

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = ["SCHEDULER_ACTOR", "BreakGlassReviews", "escalation_addresses", "public_review"]

log = get_logger("strongroom.revocation")
#: Who the overdue notices are recorded as (no person asked for them).
SCHEDULER_ACTOR = "strongroom-review-schedule"
MAX_NOTE = 2000


def escalation_addresses(text: str | None) -> list[str]:
    """STRONGROOM_BREAK_GLASS_ESCALATE_TO as a list of plain addresses (bad ones fail here)."""
    found = [a.strip() for a in (text or "").split(",") if a.strip()]
    try:
        return [validate_email_address(a) for a in found]
    except ValidationError as exc:
        raise ConfigurationError(f"STRONGROOM_BREAK_GLASS_ESCALATE_TO: {exc}") from exc


def public_review(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A review as callers see it, with whether it is overdue now."""
    return {
        "revocation_id": row["revocation_id"],
        "secret_name": row["secret_name"],
        "used_by": row["used_by"],
        "opened_at": row["opened_at"],
        "due_at": row["due_at"],
        "status": row["status"],
        "overdue": row["status"] == OPEN and now >= row["due_at"],
        "acknowledged_by": row["acknowledged_by"],
        "acknowledged_at": row["acknowledged_at"],
        "note": row["note"],
        "escalations": row["escalations"],
        "escalated_at": row["escalated_at"],
    }


class BreakGlassReviews:
    """Opens, lists, acknowledges and escalates the reviews of one wiring."""

    def __init__(self, app: Strongroom) -> None:
        self.app = app
        settings = app.settings
        self.window = timedelta(hours=settings.break_glass_review_hours)
        self.remind = timedelta(minutes=settings.break_glass_remind_minutes)
        self.escalate_to = escalation_addresses(settings.break_glass_escalate_to)
        self._task: asyncio.Task[None] | None = None

    async def open(self, revocation: dict[str, Any]) -> None:
        """Record the review of a break-glass revocation (one insert; a second changes
        nothing), as soon as its versions are revoked, so a use cut short by a later step or a
        crash is answered for all the same."""
        now = self.app.clock()
        await self.app.revocation_store.open_review(
            revocation["id"], revocation["secret_name"], revocation["requested_by"], now,
            now + self.window,
        )  # fmt: skip

    async def announce_opened(self, revocation: dict[str, Any]) -> None:
        """Once the secret is revoked: audit the opened review and tell the revocation's
        recipients (at its priority) that it waits for a second identity."""
        if await self.app.revocation_store.get_review(revocation["id"]) is None:
            await self.open(revocation)  # it failed before revoking anything: still a use
        review = await self.get(revocation["id"])
        async with self.app.audit.operation(
            AuditAction.REVOKE, review["secret_name"], operation="review.open",
            revocation_id=review["revocation_id"], used_by=review["used_by"],
            due_at=review["due_at"].isoformat(),
        ):  # fmt: skip
            pass
        await self._notify(
            review, revocation, "revocation.review_opened", "critical",
            revocation["notify_recipients"],
            f"strongroom: review break-glass revocation of {review['secret_name']}",
        )  # fmt: skip

    async def get(self, revocation_id: int) -> dict[str, Any]:
        if isinstance(revocation_id, bool) or not isinstance(revocation_id, int):
            raise ValidationError("a revocation id is a whole number")
        row = await self.app.revocation_store.get_review(revocation_id)
        if row is None:
            raise RevocationNotFoundError(
                f"revocation {revocation_id} has no break-glass review (it was not break-glass)"
            )
        return public_review(row, self.app.clock())

    async def listing(self, *, open_only: bool = True, limit: int = 100) -> list[dict[str, Any]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValidationError("limit must be 1-1000")
        now = self.app.clock()
        rows = await self.app.revocation_store.list_reviews(open_only=open_only, limit=limit)
        return [public_review(r, now) for r in rows]

    async def acknowledge(self, revocation_id: int, by: str, note: str) -> dict[str, Any]:
        """Close a review as ``by`` with ``note``; never by the identity that broke the glass."""
        app = self.app
        async with app.audit.operation(
            AuditAction.REVOKE, None, operation="review.acknowledge", revocation_id=revocation_id,
            acknowledged_by=by,
        ) as op:  # fmt: skip
            if not isinstance(by, str) or not 1 <= len(by) <= 256 or not by.strip():
                raise ValidationError("acknowledged_by must name someone (1-256 characters)")
            review = await self.get(revocation_id)
            op.resource_name = review["secret_name"].lower()
            op.details["used_by"] = review["used_by"]
            if not isinstance(note, str) or not note.strip() or len(note) > MAX_NOTE:
                raise ValidationError(
                    f"a review is acknowledged with a note (1-{MAX_NOTE} characters) saying "
                    "what was checked"
                )
            if review["status"] != OPEN:
                raise RevocationStateError(
                    f"the review of revocation {revocation_id} was already acknowledged by "
                    f"{review['acknowledged_by']}"
                )
            if by.casefold() == review["used_by"].casefold():
                raise SeparationOfDutiesError(
                    "nobody acknowledges their own break-glass use: a second identity must "
                    "review it"
                )
            now = app.clock()
            op.details["overdue"] = now >= review["due_at"]
            if not await app.revocation_store.acknowledge_review(revocation_id, by, now, note):
                raise RevocationStateError("the review changed meanwhile; look at it again")
        review = await self.get(revocation_id)
        revocation = await app.revocation_store.get(revocation_id) or {}
        await self._notify(
            review, revocation, "revocation.review_acknowledged", "normal",
            revocation.get("notify_recipients", []),
            f"strongroom: break-glass revocation of {review['secret_name']} reviewed",
        )  # fmt: skip
        return review

    async def escalate_overdue(self) -> list[dict[str, Any]]:
        """Notify each overdue review whose last notice is older than the remind interval
        (each step claimed in the database first, so processes sharing it send it once)."""
        app = self.app
        now = app.clock()
        sent = []
        for row in await app.revocation_store.overdue_reviews(now):
            last = row["escalated_at"]
            if last is not None and now - last < self.remind:
                continue
            rid, level = row["revocation_id"], row["escalations"] + 1
            if not await app.revocation_store.claim_escalation(rid, row["escalations"], now):
                continue  # another process sent this one
            with acting_as(SCHEDULER_ACTOR):
                async with app.audit.operation(
                    AuditAction.REVOKE, row["secret_name"], operation="review.overdue",
                    revocation_id=rid, used_by=row["used_by"], escalation=level,
                    due_at=row["due_at"].isoformat(),
                ):  # fmt: skip
                    pass
            revocation = await app.revocation_store.get(rid) or {}
            recipients = list(revocation.get("notify_recipients", []))
            if level > 1:
                recipients += self.escalate_to
            review = await self.get(rid)
            priority: Priority = "high" if level == 1 else "critical"
            await self._notify(
                review, revocation, "revocation.review_overdue", priority, recipients,
                f"strongroom: review of {row['secret_name']} overdue (notice {level})",
            )  # fmt: skip
            app.metrics.inc("break_glass_reviews_overdue_total")
            sent.append(review)
        return sent

    async def _notify(
        self, review: dict[str, Any], revocation: dict[str, Any], kind: str,
        priority: Priority, recipients: list[str], subject: str,
    ) -> None:  # fmt: skip
        await self.app.notifier.send(
            Notification(
                kind=kind,
                priority=priority,
                subject=subject,
                fields={
                    "revocation_id": review["revocation_id"],
                    "secret_name": review["secret_name"],
                    "severity": revocation.get("severity"),
                    "reason": revocation.get("reason"),
                    "requested_by": review["used_by"],
                    "break_glass": True,
                    "review_status": review["status"],
                    "due_at": review["due_at"].isoformat(),
                    "overdue": review["overdue"],
                    "escalation": review["escalations"],
                    "acknowledged_by": review["acknowledged_by"],
                },
                recipients=recipients,
                occurred_at=self.app.clock(),
            )
        )

    def start(self, interval: float) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(interval))

    async def _run(self, interval: float) -> None:
        while True:
            try:
                await self.escalate_overdue()
            except StrongroomError as exc:  # a store that is down now may be back next time
                log.error("break-glass review check failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
