"""Seal status, unseal and seal (``/v1/sys/...``, as Vault names them).

Status and unseal need no token: the shares are the credential, and a sealed service has no
token store to check one against. Sealing needs an admin token and is audited.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from strongroom.core.audit import AuditAction
from strongroom.core.errors import ValidationError
from strongroom.core.policy import Action
from strongroom.server.context import authorize, services
from strongroom.server.guard import CLIENT_KEY
from strongroom.server.jsonio import json_response
from strongroom.server.seal_gate import SealGate

__all__ = ["SYS_PUBLIC", "router"]

router = APIRouter(tags=["custody"])
#: Answered while sealed, without a token.
SYS_PUBLIC = frozenset({"/v1/sys/seal-status", "/v1/sys/unseal"})
_MAX_SHARE_CHARS = 1024


def _gate(request: Request) -> SealGate:
    gate: SealGate = request.app.state.gate
    return gate


@router.get("/v1/sys/seal-status", response_model=dict[str, Any], summary="Sealed or not")
async def seal_status(request: Request) -> Response:
    return json_response(_gate(request).status())


@router.post(
    "/v1/sys/unseal",
    response_model=dict[str, Any],
    summary='Give one key share (or reset a partial unseal with {"reset": true})',
)
async def unseal(request: Request) -> Response:
    # Parsed by hand: a framework validation error could quote the body, and the body is a
    # share.
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ValidationError('the body must be {"share": "..."} or {"reset": true}')
    if body.get("reset") is True:
        return json_response(_gate(request).reset())
    share = body.get("share")
    if not isinstance(share, str) or not share.strip() or len(share) > _MAX_SHARE_CHARS:
        raise ValidationError('the body must be {"share": "..."} with one key share')
    ip, user_agent = request.scope.get(CLIENT_KEY) or (None, None)
    return json_response(await _gate(request).unseal(share, ip=ip, user_agent=user_agent))


@router.post("/v1/sys/seal", response_model=dict[str, Any], summary="Drop the master key")
async def seal(request: Request) -> Response:
    gate = _gate(request)
    gate.require_custody()  # refused (409) before anything when there is nothing to seal
    await authorize(request, Action.ADMIN, None)
    async with services(request).app.audit.operation(AuditAction.SEAL, None):
        pass
    await gate.seal()
    return json_response(gate.status())
