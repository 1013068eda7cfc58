"""``/v1/audit``: the trail, summaries, threat detection and the chain check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime
from starlette.responses import Response

from strongroom.core.audit import AuditAction, AuditResult
from strongroom.core.policy import Action
from strongroom.server.context import authorize, services
from strongroom.server.jsonio import json_response
from strongroom.server.schemas import AuditVerifyOut

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Obj = dict[str, Any]
Name = Annotated[str | None, Query(pattern=r"^[0-9a-zA-Z-]{1,127}$")]


@router.get("/events", response_model=list[Obj], summary="The audit trail, newest first")
async def trail(
    request: Request,
    secret: Name = None,
    action: AuditAction | None = None,
    result: AuditResult | None = None,
    actor: Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00]*$")] = None,
    ip: Annotated[str | None, Query(max_length=64, pattern=r"^[^\x00]*$")] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    await authorize(request, Action.AUDIT_READ, secret)
    rows = await services(request).audit.get_audit_trail(
        secret, action, limit, actor_id=actor, result=result, since=since, until=until,
        offset=offset, actor_ip=ip,
    )  # fmt: skip
    return json_response(rows)


@router.get("/summary", response_model=Obj, summary="Totals by action, result, actor and day")
async def summary(
    request: Request, secret: Name = None, days: Annotated[int, Query(ge=1, le=3650)] = 30
) -> Response:
    await authorize(request, Action.AUDIT_READ, secret)
    return json_response(await services(request).audit.get_audit_summary(secret, days))


@router.get("/threats", response_model=Obj, summary="Suspicious activity in a recent window")
async def threats(
    request: Request,
    secret: Name = None,
    window_minutes: Annotated[int, Query(ge=1, le=43200)] = 30,
    failure_threshold: Annotated[int, Query(ge=1, le=10000)] = 5,
) -> Response:
    await authorize(request, Action.AUDIT_READ, secret)
    found = await services(request).audit.detect_suspicious_activity(
        secret, failure_threshold=failure_threshold, time_window_minutes=window_minutes
    )
    return json_response(found)


@router.post("/verify", response_model=AuditVerifyOut, summary="Check the hash chain")
async def verify(request: Request) -> Response:
    await authorize(request, Action.AUDIT_READ, None)
    return json_response(await services(request).audit.verify_integrity())
