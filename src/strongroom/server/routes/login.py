"""``/v1/auth/jwt/login`` and ``/v1/auth/cert/login``: a JWT or the TLS client certificate
exchanged for a short-lived token; ``/v1/auth/self/renew``.

Login needs no bearer token (the guard lets it through); the JWT service verifies, limits and
audits every attempt itself.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from strongroom.server.context import principal, services
from strongroom.server.jsonio import json_response
from strongroom.server.protocol import PEER_CERT_KEY
from strongroom.server.schemas import JwtLoginIn, TokenIssued, TokenOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/auth", tags=["access"])


@router.post(
    "/jwt/login",
    status_code=201,
    response_model=TokenIssued,
    summary="Exchange a JWT (Kubernetes, Azure, GitHub Actions, any OIDC issuer) for a token",
)
async def jwt_login(request: Request, body: JwtLoginIn) -> Response:
    issued = await services(request).app.logins.login(body.jwt, role=body.role, method=body.method)
    return json_response({**issued.record.to_dict(), "token": issued.token}, 201)


@router.post(
    "/cert/login",
    status_code=201,
    response_model=TokenIssued,
    summary="Exchange the TLS client certificate (mTLS) for a short-lived token",
)
async def cert_login(request: Request) -> Response:
    peer = request.scope.get(PEER_CERT_KEY)
    issued = await services(request).app.certs.login(peer if isinstance(peer, bytes) else None)
    return json_response({**issued.record.to_dict(), "token": issued.token}, 201)


@router.post(
    "/self/renew", response_model=TokenOut, summary="Extend the caller's login token by its TTL"
)
async def renew_self(request: Request) -> Response:
    caller = principal(request)
    renewed = await services(request).app.access.renew_token(caller.token_id)
    return json_response(renewed.to_dict())
