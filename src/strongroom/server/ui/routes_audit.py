"""The audit trail (filters, chain status, CSV export) and threat detections."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from strongroom.core.audit import AuditAction, AuditResult
from strongroom.core.errors import ValidationError
from strongroom.core.policy import Action
from strongroom.server.ui import charts
from strongroom.server.ui.web import page, render, ui
from strongroom.services.audit.secrets_audit import SecretsAudit

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE_SIZE = 50
EXPORT_LIMIT = 100_000
Name = Annotated[str | None, Query(pattern=r"^[0-9a-zA-Z-]{0,127}$")]
Text = Annotated[str | None, Query(max_length=256)]
#: The last chain check per process, shown until the next one (a full check reads every row).
_LAST_CHECK: dict[str, Any] = {}


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _moment(value: str | None, label: str) -> datetime | None:
    """An ISO 8601 time from a filter field (blank: none); a date alone means 00:00 UTC."""
    if not value or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(
            f"{label} takes an ISO 8601 time, e.g. 2026-12-01T08:00:00+00:00"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _filters(request: Request, **given: Any) -> dict[str, Any]:
    console = ui(request)
    await console.require(Action.AUDIT_READ, _blank(given["secret"]))
    return {
        "resource_name": _blank(given["secret"]),
        "action": _blank(given["action"]),
        "actor_id": _blank(given["actor"]),
        "result": _blank(given["result"]),
        "actor_ip": _blank(given["ip"]),
        "since": _moment(given["since"], "since"),
        "until": _moment(given["until"], "until"),
    }


@router.get("/audit")
@page
async def audit(
    request: Request,
    secret: Name = None,
    action: Text = None,
    result: Text = None,
    actor: Text = None,
    ip: Annotated[str | None, Query(max_length=64)] = None,
    since: Text = None,
    until: Text = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    console = ui(request)
    where = await _filters(request, secret=secret, action=action, result=result, actor=actor,
                           ip=ip, since=since, until=until)  # fmt: skip
    trail = SecretsAudit(console.services.app)
    events = await trail.get_audit_trail(
        where.pop("resource_name"), where.pop("action"), PAGE_SIZE, offset=offset, **where
    )
    store = console.services.app.audit.store
    head = await store.chain_state() if store is not None else None
    query = {
        "secret": secret or "",
        "action": action or "",
        "result": result or "",
        "actor": actor or "",
        "ip": ip or "",
        "since": since or "",
        "until": until or "",
    }
    return render(
        request, "audit.html", ui=console, active="audit", events=events, offset=offset,
        page_size=PAGE_SIZE, query=query, head=head, check=_LAST_CHECK.get("result"),
        checked_at=_LAST_CHECK.get("at"), actions=[a.value for a in AuditAction],
        results=[r.value for r in AuditResult],
    )  # fmt: skip


@router.post("/audit/verify")
@page
async def verify(request: Request) -> Response:
    console = ui(request)
    await console.require(Action.AUDIT_READ, None)
    app = console.services.app
    result = await SecretsAudit(app).verify_integrity()
    _LAST_CHECK.update(result=result, at=app.clock())
    store = app.audit.store
    head = await store.chain_state() if store is not None else None
    return render(request, "partials/chain.html", ui=console, check=result,
                  checked_at=_LAST_CHECK["at"], head=head)  # fmt: skip


_CSV_COLUMNS = ("id", "timestamp", "action", "resource_name", "result", "actor_id", "actor_ip",
                "actor_user_agent", "error_code", "error_message", "duration_ms")  # fmt: skip


def _csv_cell(value: Any) -> str:
    """Text as written, but never a formula a spreadsheet would run (CSV injection)."""
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/audit/export.csv")
@page
async def export(
    request: Request,
    secret: Name = None,
    action: Text = None,
    result: Text = None,
    actor: Text = None,
    ip: Annotated[str | None, Query(max_length=64)] = None,
    since: Text = None,
    until: Text = None,
) -> Response:
    """The filtered trail as CSV (newest first, at most 100,000 events)."""
    console = ui(request)
    where = await _filters(request, secret=secret, action=action, result=result, actor=actor,
                           ip=ip, since=since, until=until)  # fmt: skip
    trail = SecretsAudit(console.services.app)
    name, act = where.pop("resource_name"), where.pop("action")

    async def lines() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        offset = 0
        while offset < EXPORT_LIMIT:
            page_rows = await trail.get_audit_trail(name, act, 5000, offset=offset, **where)
            for event in page_rows:
                writer.writerow([_csv_cell(event.get(c)) for c in _CSV_COLUMNS])
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            if len(page_rows) < 5000:
                return
            offset += 5000

    return StreamingResponse(
        lines(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="strongroom-audit.csv"'},
    )  # fmt: skip


@router.get("/threats")
@page
async def threats(
    request: Request,
    hours: Annotated[int, Query(ge=1, le=720)] = 24,
    threshold: Annotated[int, Query(ge=1, le=10_000)] = 5,
) -> Response:
    console = ui(request)
    await console.require(Action.AUDIT_READ, None)
    app = console.services.app
    # Every rule reads a window of the audit log (some a baseline of days before it): the rules
    # run at most once a minute per window and threshold, and the page says when.
    snapshot = await console.snapshots("threats").get(
        (hours, threshold),
        lambda: SecretsAudit(app).detect_suspicious_activity(
            None, failure_threshold=threshold, time_window_minutes=hours * 60
        ),
        app.clock,
    )
    found, now = snapshot.value, snapshot.taken_at
    start = now - timedelta(hours=hours)
    rows = []
    by_rule: dict[str, dict[str, float]] = {}
    for t in found["threats"]:
        first = t.get("first_seen") or start
        last = t.get("last_seen") or now
        who = t.get("actor_id") or t.get("actor_ip") or "-"
        rows.append((t["type"], first, last, t["severity"],
                     f"{t['type']} ({t['severity']}): {who}, {t.get('count')} events"))  # fmt: skip
        slot = by_rule.setdefault(t["type"], {})
        slot[t["severity"]] = slot.get(t["severity"], 0) + 1
    severities = ["low", "medium", "high", "critical"]
    return render(
        request, "threats.html", ui=console, active="threats", found=found, hours=hours,
        threshold=threshold, taken_at=now,
        timeline=charts.timeline(f"Detections over the last {hours} hours", rows, start, now)
        if rows else None,
        by_rule=charts.stacked_bars("Detections by rule and severity", sorted(by_rule.items()),
                                    severities, css=[f"sev-{s}" for s in severities])
        if rows else None,
    )  # fmt: skip
