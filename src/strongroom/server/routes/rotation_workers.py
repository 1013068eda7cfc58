"""``/v1/rotation`` for rotation workers: claim due rotations (long-poll), renew a lease while
a callback runs, complete one with the new value, report a failure, release leases. Every call
needs the ``rotate`` grant on the secrets concerned (403, audited, otherwise); the value of a
completion is never echoed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from strongroom.core.policy import Action
from strongroom.db.rotation_store import WorkerFilter
from strongroom.server.context import authorize, authorize_listing, services
from strongroom.server.jsonio import json_response
from strongroom.server.schemas import (
    NamePath,
    WorkerClaimIn,
    WorkerCompleteIn,
    WorkerFailIn,
    WorkerIn,
    WorkerRenewIn,
)
from strongroom.services.rotation import workers

router = APIRouter(prefix="/v1/rotation", tags=["rotation workers"])
Obj = dict[str, Any]
#: How often a waiting claim looks again (one indexed query each).
POLL_SECONDS = 0.25


@router.post("/workers/claim", response_model=Obj, summary="Claim due rotations (workers)")
async def claim(request: Request, body: WorkerClaimIn) -> Response:
    caller = await authorize_listing(request, Action.ROTATE)
    for name in body.names or ():
        await authorize(request, Action.ROTATE, name)  # a named secret must be granted
    app = services(request).app
    owner = workers.lease_owner(caller.identity, body.worker)
    wanted = WorkerFilter(
        names=None if body.names is None else tuple(n.lower() for n in body.names),
        like=workers.glob_to_like(body.name_glob),
        generated=body.generated,
        secret_type=None if body.secret_type is None else body.secret_type.value,
    )
    deadline = time.monotonic() + body.wait_seconds
    while True:
        found = await workers.claim(
            app, owner, wanted, lambda name: caller.may(Action.ROTATE, name),
            limit=body.limit, lease_seconds=body.lease_seconds,
        )  # fmt: skip
        left = deadline - time.monotonic()
        if found or left <= 0:
            return json_response({"claimed": found, "lease_seconds": body.lease_seconds})
        await asyncio.sleep(min(POLL_SECONDS, left))


@router.post("/{name}/complete", response_model=Obj, summary="Submit a worker's new value")
async def complete(request: Request, name: NamePath, body: WorkerCompleteIn) -> Response:
    caller = await authorize(request, Action.ROTATE, name)
    owner = workers.lease_owner(caller.identity, body.worker)
    return json_response(await workers.complete(services(request).app, name, owner, body.value))


@router.post("/{name}/renew", response_model=Obj, summary="Extend a worker's lease")
async def renew(request: Request, name: NamePath, body: WorkerRenewIn) -> Response:
    caller = await authorize(request, Action.ROTATE, name)
    owner = workers.lease_owner(caller.identity, body.worker)
    app = services(request).app
    return json_response(await workers.renew(app, name, owner, body.lease_seconds))


@router.post("/{name}/fail", response_model=Obj, summary="Report a worker's failed rotation")
async def fail(request: Request, name: NamePath, body: WorkerFailIn) -> Response:
    caller = await authorize(request, Action.ROTATE, name)
    owner = workers.lease_owner(caller.identity, body.worker)
    message = body.message or "the worker gave no reason"
    return json_response(await workers.fail(services(request).app, name, owner, message))


@router.post("/{name}/release", response_model=Obj, summary="Give back a worker's lease")
async def release(request: Request, name: NamePath, body: WorkerIn) -> Response:
    caller = await authorize(request, Action.ROTATE, name)
    owner = workers.lease_owner(caller.identity, body.worker)
    released = await workers.release(services(request).app, [name], owner)
    return json_response({"released": bool(released)})
