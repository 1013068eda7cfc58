"""``/v1/revocations``: emergency revocation with approvals, over HTTP.

The requester and approver are always the caller's identity (never a field of the body), so
separation of duties holds as in the library: nobody approves their own request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from strongroom.core.policy import Action
from strongroom.core.revocation import RevocationRequest
from strongroom.server.context import authorize, authorize_listing, principal, services
from strongroom.server.jsonio import json_response
from strongroom.server.schemas import AcknowledgeIn, RejectIn, RevocationIn
from strongroom.services.access.control import Principal

router = APIRouter(prefix="/v1/revocations", tags=["revocation"])
Obj = dict[str, Any]
RevocationId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _visible(caller: Principal, row: Obj) -> bool:
    name = row.get("secret_name")
    return caller.may(Action.REVOKE_REQUEST, name) or caller.may(Action.REVOKE_APPROVE, name)


def _reviewable(caller: Principal, row: Obj) -> bool:
    name = row.get("secret_name")
    return caller.may(Action.REVOKE_APPROVE, name) or caller.may(Action.REVOKE_BREAK_GLASS, name)


@router.post("", status_code=201, response_model=Obj, summary="Request a revocation")
async def request_revocation(request: Request, body: RevocationIn) -> Response:
    """Needs ``revoke-request``; break-glass (``immediate``) needs ``revoke-break-glass``."""
    caller = principal(request)
    await services(request).app.access.require_revocation(
        caller, body.secret_name, immediate=body.immediate
    )
    result = await services(request).revoke.request_revocation(
        RevocationRequest(requested_by=caller.identity, **body.model_dump())
    )
    return json_response(result, 201)


@router.get("", response_model=list[Obj], summary="Revocation history (newest first)")
async def history(
    request: Request,
    secret: Annotated[str | None, Query(pattern=r"^[0-9a-zA-Z-]{1,127}$")] = None,
    pending: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Response:
    caller = principal(request)
    if secret is not None:
        if not caller.may(Action.REVOKE_REQUEST, secret):
            await authorize(request, Action.REVOKE_APPROVE, secret)
    elif not caller.holds(Action.REVOKE_REQUEST):
        await authorize_listing(request, Action.REVOKE_APPROVE)
    svc = services(request).revoke
    rows = await (svc.list_pending_revocations() if pending else svc.get_revocation_history(
        secret, limit))  # fmt: skip
    if pending and secret is not None:
        rows = [r for r in rows if str(r.get("secret_name", "")).lower() == secret.lower()]
    return json_response([r for r in rows if _visible(caller, r)])


async def _row_authorized(request: Request, revocation_id: int, action: Action) -> Obj:
    row = await services(request).revoke.get_revocation_status(revocation_id)
    await authorize(request, action, row["secret_name"])
    return row


@router.get(
    "/reviews", response_model=list[Obj], summary="Break-glass reviews (open ones by default)"
)
async def reviews(request: Request, all: bool = False) -> Response:
    """Open reviews, oldest due first (``all=true``: every review, newest first), for the
    secrets the caller may approve revocations of or break the glass on."""
    caller = principal(request)
    if not caller.holds(Action.REVOKE_BREAK_GLASS):
        await authorize_listing(request, Action.REVOKE_APPROVE)
    rows = await services(request).revoke.list_break_glass_reviews(open_only=not all)
    return json_response([r for r in rows if _reviewable(caller, r)])


@router.get("/{revocation_id}", response_model=Obj, summary="A revocation's status")
async def status(request: Request, revocation_id: RevocationId) -> Response:
    row = await services(request).revoke.get_revocation_status(revocation_id)
    caller = principal(request)
    if not _visible(caller, row):
        await authorize(request, Action.REVOKE_REQUEST, row["secret_name"])
    return json_response(row)


@router.post("/{revocation_id}/approve", response_model=Obj, summary="Approve a revocation")
async def approve(request: Request, revocation_id: RevocationId) -> Response:
    await _row_authorized(request, revocation_id, Action.REVOKE_APPROVE)
    caller = principal(request)
    return json_response(
        await services(request).revoke.approve_revocation(revocation_id, caller.identity)
    )


@router.post("/{revocation_id}/reject", response_model=Obj, summary="Reject a revocation")
async def reject(
    request: Request, revocation_id: RevocationId, body: RejectIn | None = None
) -> Response:
    await _row_authorized(request, revocation_id, Action.REVOKE_APPROVE)
    caller = principal(request)
    reason = body.reason if body is not None else ""
    return json_response(
        await services(request).revoke.reject_revocation(revocation_id, caller.identity, reason)
    )


@router.post("/{revocation_id}/cancel", response_model=Obj, summary="Cancel a revocation")
async def cancel(request: Request, revocation_id: RevocationId) -> Response:
    """The requester cancels their own request; others need revoke-approve on the secret."""
    row = await _row_authorized(request, revocation_id, Action.REVOKE_REQUEST)
    caller = principal(request)
    if row["requested_by"] != caller.identity:
        await authorize(request, Action.REVOKE_APPROVE, row["secret_name"])
    return json_response(
        await services(request).revoke.cancel_revocation(revocation_id, caller.identity)
    )


@router.post(
    "/{revocation_id}/acknowledge", response_model=Obj, summary="Acknowledge a break-glass use"
)
async def acknowledge(
    request: Request, revocation_id: RevocationId, body: AcknowledgeIn
) -> Response:
    """Needs ``revoke-approve`` on the secret; the reviewer is the caller, never the identity
    that broke the glass (403 ``denied``)."""
    review = await services(request).app.break_glass_reviews.get(revocation_id)
    await authorize(request, Action.REVOKE_APPROVE, review["secret_name"])
    caller = principal(request)
    return json_response(
        await services(request).revoke.acknowledge_break_glass(
            revocation_id, caller.identity, body.note
        )
    )
