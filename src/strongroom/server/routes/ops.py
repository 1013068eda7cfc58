"""Health, readiness and metrics: for load balancers and Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from strongroom.core.deadline import within
from strongroom.core.errors import StrongroomError
from strongroom.core.policy import Action
from strongroom.server.context import authorize, services
from strongroom.server.guard import PRINCIPAL_KEY
from strongroom.server.jsonio import json_response
from strongroom.server.metrics_export import render

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=dict[str, str], summary="The process is alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=dict[str, Any],
    responses={503: {"description": "a store is unreachable or the audit log cannot write"}},
    summary="The stores answer and the audit log is writable",
)
async def readyz(request: Request) -> Response:
    if request.app.state.services is None:
        return json_response({"status": "sealed", "checks": {"seal": "sealed"}}, 503)
    app = services(request).app
    # Each check is bounded: a store that hangs makes the service unready, not the probe hang.
    limit = app.settings.audit_timeout_seconds
    checks: dict[str, str] = {}
    try:
        await within(limit, app.store.count())
        checks["secrets"] = "ok"
    except StrongroomError as exc:
        checks["secrets"] = exc.code
    except TimeoutError:
        checks["secrets"] = "timeout"
    try:
        if app.audit.store is not None:
            await within(limit, app.audit.store.chain_state())
        checks["audit"] = app.audit.health()
    except StrongroomError as exc:
        checks["audit"] = exc.code
    except TimeoutError:
        checks["audit"] = "timeout"
    body: dict[str, Any] = {"checks": checks}
    # An interface serving this app may add its own check and figures (an edge: its upstream).
    extra = getattr(request.app.state, "readiness", None)
    if extra is not None:
        name, result, details = extra()
        checks[name] = result
        body[name] = details
    ready = all(v == "ok" for v in checks.values())
    body["status"] = "ready" if ready else "unavailable"
    return json_response(body, 200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    summary="Prometheus metrics (needs audit-read on every secret unless made public)",
)
async def metrics(request: Request) -> Response:
    if PRINCIPAL_KEY in request.scope:
        await authorize(request, Action.AUDIT_READ, None)
    refresh = getattr(request.app.state, "refresh_metrics", None)
    if refresh is not None:
        refresh()  # figures that move with time (an edge's time offline) are read now
    shared = getattr(request.app.state, "shared_metrics", None)
    metrics = shared.combined() if shared is not None else services(request).app.metrics
    return Response(render(metrics), media_type=CONTENT_TYPE_LATEST)
