"""``/v1/rotation``: schedules, status, forced and immediate rotation, history, compliance."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from strongroom.backends.base import name_key
from strongroom.core.errors import ValidationError
from strongroom.core.policy import Action
from strongroom.core.rotation import RotationConfig
from strongroom.server.context import authorize, authorize_listing, services
from strongroom.server.jsonio import json_response
from strongroom.server.schemas import NamePath, RotationConfigIn

router = APIRouter(prefix="/v1/rotation", tags=["rotation"])
Obj = dict[str, Any]


@router.get("", response_model=list[Obj], summary="Rotation configurations")
async def list_configs(request: Request) -> Response:
    caller = await authorize_listing(request, Action.ROTATE)
    found = await services(request).rotation.list_rotation_configs()
    return json_response([c for c in found if caller.may(Action.ROTATE, c["name"])])


@router.get("/compliance", response_model=Obj, summary="Rotation compliance of every secret")
async def compliance(request: Request) -> Response:
    await authorize(request, Action.AUDIT_READ, None)
    return json_response(await services(request).rotation.compliance_report())


@router.post("/check", response_model=Obj, summary="Rotate everything due now")
async def run_check(request: Request) -> Response:
    await authorize(request, Action.ADMIN, None)
    return json_response(await services(request).rotation.run_check())


@router.put("/{name}", response_model=Obj, summary="Register or replace a rotation schedule")
async def register(request: Request, name: NamePath, body: RotationConfigIn) -> Response:
    await authorize(request, Action.ROTATE, name)
    svc = services(request)
    if body.use_registered_callback and (body.generator is not None or body.worker):
        raise ValidationError("use the registered callback, or a generator or workers, not both")
    callback = None
    if body.use_registered_callback:
        # Only this secret's own callback: a schedule never runs another secret's code.
        callback = svc.app.callbacks.get(name_key(name))
        if callback is None:
            raise ValidationError(f"no callback is registered for {name!r} in this process")
    config = RotationConfig(
        name=name,
        rotation_days=body.rotation_days,
        rotation_hours_before_expiry=body.rotation_hours_before_expiry,
        enabled=body.enabled,
        rotation_callback=callback,
        description=body.description,
        generator=body.generator,
        generator_options=dict(body.generator_options),
        rotator=body.rotator,
        grace_period_hours=body.grace_period_hours,
        secret_type=body.secret_type,
        worker=body.worker,
    )
    return json_response(await svc.rotation.register_secret(config))


@router.delete("/{name}", status_code=204, summary="Stop rotating a secret")
async def unregister(request: Request, name: NamePath) -> Response:
    await authorize(request, Action.ROTATE, name)
    if not await services(request).rotation.unregister_secret(name):
        from strongroom.core.errors import RotationNotConfiguredError  # noqa: PLC0415

        raise RotationNotConfiguredError(f"secret {name!r} has no rotation configuration")
    return Response(status_code=204)


@router.get("/{name}", response_model=Obj, summary="Rotation status")
async def status(request: Request, name: NamePath) -> Response:
    await authorize(request, Action.LIST, name)
    return json_response(await services(request).rotation.get_rotation_status(name))


@router.post("/{name}/force", response_model=Obj, summary="Rotate at the next check")
async def force(request: Request, name: NamePath) -> Response:
    await authorize(request, Action.ROTATE, name)
    return json_response(await services(request).rotation.force_rotation(name))


@router.post("/{name}/rotate", response_model=Obj, summary="Rotate now")
async def rotate(request: Request, name: NamePath) -> Response:
    await authorize(request, Action.ROTATE, name)
    return json_response(await services(request).rotation.rotate_secret(name, force=True))


@router.get("/{name}/history", response_model=list[Obj], summary="Past rotations")
async def history(
    request: Request, name: NamePath, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> Response:
    await authorize(request, Action.AUDIT_READ, name)
    return json_response(await services(request).rotation.get_rotation_history(name, limit))
