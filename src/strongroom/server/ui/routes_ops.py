"""Revocations (approve, reject), rotation (calendar, force), analytics and reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import RedirectResponse, Response

from strongroom.core.errors import SeparationOfDutiesError, ValidationError
from strongroom.core.policy import Action
from strongroom.server.ui import charts
from strongroom.server.ui.web import form, page, render, ui
from strongroom.services.analytics.exposure import recommendations
from strongroom.services.analytics.lifecycle import LifecycleOptions, lifecycle
from strongroom.services.reports.document import MEDIA_TYPES, signed_report
from strongroom.services.reports.frameworks import Framework
from strongroom.services.reports.signing import FORMATS, ReportSigner

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
RevocationId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _visible(console: Any, row: dict[str, Any]) -> bool:
    name = row["secret_name"]
    return bool(
        console.may(Action.REVOKE_REQUEST, name) or console.may(Action.REVOKE_APPROVE, name)
    )


@router.get("/revocations")
@page
async def revocations(request: Request, notice: str | None = None) -> Response:
    console = ui(request)
    caller = console.principal
    if not (caller.holds(Action.REVOKE_REQUEST) or caller.holds(Action.REVOKE_APPROVE)):
        await console.require(Action.REVOKE_APPROVE, None)
    svc = console.services.revoke
    pending = [r for r in await svc.list_pending_revocations() if _visible(console, r)]
    history = [r for r in await svc.get_revocation_history(None, 100) if _visible(console, r)]
    reviews = [r for r in await svc.list_break_glass_reviews() if _visible(console, r)]
    return render(
        request, "revocations.html", ui=console, active="revocations", pending=pending,
        history=history, break_glass=[r for r in history if r["break_glass"]], reviews=reviews,
        notice=notice[:200] if notice else None,
    )  # fmt: skip


async def _decide(request: Request, revocation_id: int, approve: bool) -> Response:
    console = ui(request)
    svc = console.services.revoke
    row = await svc.get_revocation_status(revocation_id)
    await console.require(Action.REVOKE_APPROVE, row["secret_name"])
    who = console.principal.identity
    try:
        if approve:
            done = await svc.approve_revocation(revocation_id, who)
        else:
            reason = (await form(request)).get("reason", "")[:500]
            done = await svc.reject_revocation(revocation_id, who, reason)
    except SeparationOfDutiesError as exc:
        message = ("You requested this revocation, so someone else must approve it "
                   "(separation of duties)." if row["requested_by"].casefold() == who.casefold()
                   else str(exc))  # fmt: skip
        return render(request, "error.html", status=403, ui=console, code=exc.code,
                      message=message)  # fmt: skip
    notice = f"Request {revocation_id} is now {done['status']}"
    return RedirectResponse(f"/ui/revocations?notice={notice.replace(' ', '+')}", status_code=303)


@router.post("/revocations/{revocation_id}/approve")
@page
async def approve(request: Request, revocation_id: RevocationId) -> Response:
    return await _decide(request, revocation_id, approve=True)


@router.post("/revocations/{revocation_id}/reject")
@page
async def reject(request: Request, revocation_id: RevocationId) -> Response:
    return await _decide(request, revocation_id, approve=False)


@router.post("/revocations/{revocation_id}/acknowledge")
@page
async def acknowledge(request: Request, revocation_id: RevocationId) -> Response:
    """Answer for a break-glass use as the signed-in identity, with a note."""
    console = ui(request)
    review = await console.services.app.break_glass_reviews.get(revocation_id)
    await console.require(Action.REVOKE_APPROVE, review["secret_name"])
    who = console.principal.identity
    note = (await form(request)).get("note", "")
    try:
        await console.services.revoke.acknowledge_break_glass(revocation_id, who, note)
    except SeparationOfDutiesError as exc:
        message = ("You used break-glass on this secret, so someone else must review it "
                   "(separation of duties).")  # fmt: skip
        return render(request, "error.html", status=403, ui=console, code=exc.code,
                      message=message)  # fmt: skip
    notice = f"Break-glass revocation {revocation_id} acknowledged"
    return RedirectResponse(f"/ui/revocations?notice={notice.replace(' ', '+')}", status_code=303)


@router.get("/rotation")
@page
async def rotation(request: Request, notice: str | None = None) -> Response:
    console = ui(request)
    caller = console.principal
    if not caller.holds(Action.ROTATE):
        await console.require(Action.ROTATE, None)
    svc = console.services
    now = svc.app.clock()
    configs = [c for c in await svc.rotation.list_rotation_configs()
               if caller.may(Action.ROTATE, c["name"])]  # fmt: skip
    overdue = [c for c in configs if c["overdue"]]
    failing = [c for c in configs if c["last_result"] == "FAILURE"]
    days = [(now + timedelta(days=i)).date() for i in range(28)]
    calendar: dict[Any, list[str]] = {d: [] for d in days}
    for config in configs:
        day = max(config["due_at"], now).date()
        if day in calendar:
            calendar[day].append(config["name"])
    weeks = [days[i : i + 7] for i in range(0, 28, 7)]
    return render(
        request, "rotation.html", ui=console, active="rotation", configs=configs,
        overdue=overdue, failing=failing, weeks=weeks, calendar=calendar, now=now,
        notice=notice[:200] if notice else None,
        chart=charts.bars("Rotations due per day, next 4 weeks",
                          [(f"{d:%m-%d}", len(calendar[d])) for d in days], css="c3"),
    )  # fmt: skip


@router.post("/rotation/{name}/force")
@page
async def force(request: Request, name: str) -> Response:
    console = ui(request)
    await console.require(Action.ROTATE, name)
    now_too = (await form(request)).get("now") == "1"
    svc = console.services.rotation
    if now_too:
        result = await svc.rotate_secret(name, force=True)
        notice = f"{name}: " + ("rotated" if result.get("rotated") else "not rotated")
    else:
        await svc.force_rotation(name)
        notice = f"{name} rotates at the next check"
    return RedirectResponse(f"/ui/rotation?notice={notice.replace(' ', '+')}", status_code=303)


@router.get("/analytics")
@page
async def analytics(request: Request) -> Response:
    console = ui(request)
    await console.require(Action.AUDIT_READ, None)
    app = console.services.app
    options = LifecycleOptions(price_per_10k=app.settings.kv_price_per_10k)

    async def both() -> tuple[Any, Any]:
        return await recommendations(app), await lifecycle(app, options)

    recs, life = (await console.snapshots("analytics").get("all", both, app.clock)).value
    levels = ["low", "medium", "high", "critical"]
    counts = {lvl: sum(1 for r in recs if r.level.value == lvl) for lvl in levels}
    return render(
        request, "analytics.html", ui=console, active="analytics", recs=recs[:100],
        total=len(recs), life=life,
        chart=charts.stacked_bars("Secrets by recommended risk level",
                                  [(lvl, {lvl: counts[lvl]}) for lvl in levels], levels,
                                  css=[f"sev-{lvl}" for lvl in levels]),
    )  # fmt: skip


def _date(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError("dates look like 2026-09-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/reports")
@page
async def reports(request: Request) -> Response:
    console = ui(request)
    await console.require(Action.AUDIT_READ, None)
    now = console.services.app.clock()
    signer = ReportSigner(console.services.app.report_signing_seed)
    return render(
        request, "reports.html", ui=console, active="reports",
        frameworks=[f.value for f in Framework], formats=FORMATS, key_id=signer.key_id,
        public_key=signer.public_key_pem(), start=(now - timedelta(days=90)).date().isoformat(),
        end=now.date().isoformat(),
    )  # fmt: skip


@router.get("/reports/compliance")
@page
async def compliance_report(
    request: Request,
    framework: Annotated[str, Query(max_length=16)] = "soc2",
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    fmt: Annotated[str, Query(alias="format", max_length=8)] = "pdf",
) -> Response:
    """A signed report, downloaded (never rendered inside the console)."""
    console = ui(request)
    await console.require(Action.AUDIT_READ, None)
    app = console.services.app
    now = app.clock()
    until = _date(end, now)
    if end and until.time() == datetime.min.time():
        until += timedelta(days=1)  # a date "to" includes that day
    since = _date(start, until - timedelta(days=90))
    body = await signed_report(app, framework, since, until, fmt)
    filename = f"strongroom-{framework}-{since:%Y%m%d}-{until:%Y%m%d}.{fmt}"
    disposition = f'attachment; filename="{filename}"'
    return Response(body, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": disposition})
