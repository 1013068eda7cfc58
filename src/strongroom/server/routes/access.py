"""``/v1/auth``: tokens, policies and which identities hold them (admin), and ``self``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from strongroom.core.policy import Action, Policy
from strongroom.server.context import authorize, principal, services
from strongroom.server.jsonio import json_response
from strongroom.server.schemas import (
    IdentityOut,
    PolicyIn,
    PolicyOut,
    TokenCreate,
    TokenIssued,
    TokenOut,
    WhoAmI,
)

router = APIRouter(prefix="/v1/auth", tags=["access"])
TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")]
PolicyName = Annotated[str, Path(pattern=r"^[0-9A-Za-z._-]{1,64}$")]
Identity = Annotated[str, Path(pattern=r"^[0-9A-Za-z._@:-]{1,128}$")]


@router.get("/self", response_model=WhoAmI, summary="Who the token belongs to")
async def whoami(request: Request) -> Response:
    caller = principal(request)
    return json_response({
        "identity": caller.identity, "token_id": caller.token_id,
        "policies": [p.name for p in caller.policies],
    })  # fmt: skip


@router.post("/tokens", status_code=201, response_model=TokenIssued, summary="Issue a token")
async def create_token(request: Request, body: TokenCreate) -> Response:
    await authorize(request, Action.ADMIN, None)
    issued = await services(request).app.access.create_token(
        body.identity,
        policies=body.policies,
        description=body.description,
        ttl=timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None,
    )
    return json_response({**issued.record.to_dict(), "token": issued.token}, 201)


@router.get("/tokens", response_model=list[TokenOut], summary="Tokens (never their secrets)")
async def list_tokens(
    request: Request,
    identity: Annotated[str | None, Query(pattern=r"^[0-9A-Za-z._@:-]{1,128}$")] = None,
) -> Response:
    await authorize(request, Action.ADMIN, None)
    found = await services(request).app.access.list_tokens(identity)
    return json_response([t.to_dict() for t in found])


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke a token")
async def revoke_token(request: Request, token_id: TokenId) -> Response:
    caller = principal(request)
    if token_id != caller.token_id:  # anyone may revoke their own token
        await authorize(request, Action.ADMIN, None)
    record = await services(request).app.access.revoke_token(token_id)
    return json_response(record.to_dict())


@router.get("/policies", response_model=list[PolicyOut], summary="Every policy")
async def list_policies(request: Request) -> Response:
    await authorize(request, Action.ADMIN, None)
    found = await services(request).app.access.list_policies()
    return json_response([p.to_dict() for p in found])


@router.get("/policies/{name}", response_model=PolicyOut, summary="One policy")
async def get_policy(request: Request, name: PolicyName) -> Response:
    await authorize(request, Action.ADMIN, None)
    return json_response((await services(request).app.access.get_policy(name)).to_dict())


@router.put("/policies/{name}", response_model=PolicyOut, summary="Create or replace a policy")
async def put_policy(request: Request, name: PolicyName, body: PolicyIn) -> Response:
    await authorize(request, Action.ADMIN, None)
    policy = Policy.build(name, [g.model_dump() for g in body.grants], body.description)
    return json_response((await services(request).app.access.put_policy(policy)).to_dict())


@router.delete("/policies/{name}", status_code=204, summary="Delete a policy")
async def delete_policy(request: Request, name: PolicyName) -> Response:
    await authorize(request, Action.ADMIN, None)
    await services(request).app.access.delete_policy(name)
    return Response(status_code=204)


@router.get("/identities", response_model=list[IdentityOut], summary="Identities and policies")
async def identities(request: Request) -> Response:
    await authorize(request, Action.ADMIN, None)
    return json_response(await services(request).app.access.identities())


@router.put(
    "/identities/{identity}/policies/{name}",
    response_model=list[str],
    summary="Attach a policy to an identity",
)
async def attach(request: Request, identity: Identity, name: PolicyName) -> Response:
    await authorize(request, Action.ADMIN, None)
    return json_response(await services(request).app.access.attach(identity, name))


@router.delete(
    "/identities/{identity}/policies/{name}",
    response_model=list[str],
    summary="Detach a policy from an identity",
)
async def detach(request: Request, identity: Identity, name: PolicyName) -> Response:
    await authorize(request, Action.ADMIN, None)
    return json_response(await services(request).app.access.detach(identity, name))


@router.post(
    "/identities/{identity}/revoke",
    response_model=dict[str, Any],
    summary="Revoke every token of an identity, in every worker at once",
)
async def revoke_identity(request: Request, identity: Identity) -> Response:
    await authorize(request, Action.ADMIN, None)
    revoked = await services(request).app.access.revoke_identity(identity)
    return json_response({"identity": identity, "revoked_tokens": revoked})


keys_router = APIRouter(prefix="/v1/keys", tags=["keys"])


@keys_router.post("/rotate", response_model=dict[str, Any],
             summary="Rotate the key-encryption key (re-wraps every data key)")  # fmt: skip
async def rotate_keys(request: Request) -> Response:
    await authorize(request, Action.ADMIN, None)
    return json_response(await services(request).manager.rotate_master_key())
