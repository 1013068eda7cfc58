"""``/v1/reports`` and ``/v1/analytics``: signed compliance reports, the key that verifies
them, and rotation recommendations, for the remote profile's command line (the console has its
own pages for the same)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import StringConstraints
from starlette.responses import Response

from strongroom.core.errors import ValidationError
from strongroom.core.policy import Action
from strongroom.server.context import authorize, services
from strongroom.server.jsonio import json_response
from strongroom.services.analytics.exposure import recommendations
from strongroom.services.reports.document import MEDIA_TYPES, signed_report
from strongroom.services.reports.signing import ReportSigner

router = APIRouter(tags=["reports"])

SecretName = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z-]{1,127}$")]


def _moment(text: str | None, label: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{label} takes a date (2026-09-01) or an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_DOCUMENT: dict[int | str, dict[str, Any]] = {
    200: {"description": "The signed document", "content": {m: {} for m in MEDIA_TYPES.values()}}
}
_PEM: dict[int | str, dict[str, Any]] = {
    200: {"description": "The key (PEM)", "content": {"application/x-pem-file": {}}}
}


@router.get(
    "/v1/reports/compliance",
    summary="A signed compliance report for a period",
    response_class=Response,
    responses=_DOCUMENT,
)
async def compliance(
    request: Request,
    framework: Annotated[str, Query(max_length=16)] = "soc2",
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    fmt: Annotated[str, Query(alias="format", max_length=8)] = "pdf",
) -> Response:
    """The document `strongroom report compliance` writes: `from` defaults to 90 days before
    `to`, `to` to now; signed with the server's report key."""
    await authorize(request, Action.AUDIT_READ, None)
    app = services(request).app
    until = _moment(end, "to") or app.clock()
    since = _moment(start, "from") or until - timedelta(days=90)
    body = await signed_report(app, framework, since, until, fmt)
    return Response(body, media_type=MEDIA_TYPES[fmt])


@router.get(
    "/v1/reports/public-key",
    summary="The public key that verifies reports (PEM)",
    response_class=Response,
    responses=_PEM,
)
async def public_key(request: Request) -> Response:
    seed = services(request).app.report_signing_seed
    return Response(ReportSigner(seed).public_key_pem(), media_type="application/x-pem-file")


@router.get(
    "/v1/analytics/recommendations",
    response_model=list[dict[str, Any]],
    summary="Rotation intervals recommended from each secret's exposure",
)
async def recommended(
    request: Request,
    window_days: Annotated[int, Query(ge=1, le=3650)] = 90,
    name: Annotated[list[SecretName] | None, Query(max_length=50)] = None,
) -> Response:
    await authorize(request, Action.AUDIT_READ, None)
    names = {n.lower() for n in name} if name else None
    found = await recommendations(services(request).app, window_days=window_days, names=names)
    return json_response([r.to_dict() for r in found])
