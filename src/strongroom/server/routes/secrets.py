"""``/v1/secrets`` and ``/v1/deleted-secrets``: the seed's SecretsManager over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from strongroom.core.errors import SecretNotDeletedError, SecretNotFoundError, ValidationError
from strongroom.core.models import UNSET, SecretBundle
from strongroom.core.policy import Action
from strongroom.server.context import authorize, authorize_listing, services
from strongroom.server.jsonio import json_bytes, json_response
from strongroom.server.schemas import (
    VERSION_PATTERN,
    DeletedSecretOut,
    DeleteOut,
    NamePath,
    PropertiesOut,
    PropertiesPatch,
    SecretCreate,
    SecretOut,
    SecretUpdate,
    VersionChoice,
    VersionPath,
)

router = APIRouter(prefix="/v1", tags=["secrets"])

Version = Annotated[str | None, Query(pattern=VERSION_PATTERN)]
_NATIVE = "v1-json"  # the key of this API's body in SecretBundle.encoded


def _secret(bundle: Any) -> dict[str, Any]:
    data: dict[str, Any] = bundle.properties.to_dict()
    data["value"] = bundle.value.reveal()
    return data


def _secret_response(bundle: SecretBundle) -> Response:
    """The value and properties, encoded once per bundle (a store serves an unchanged version
    as the same bundle, so the hot read mostly skips the encoding)."""
    body = bundle.encoded.get(_NATIVE)
    if body is None:
        body = bundle.encoded[_NATIVE] = json_bytes(_secret(bundle))
    return Response(body, media_type="application/json")


@router.get("/secrets", response_model=list[PropertiesOut], summary="List secrets (no values)")
async def list_secrets(request: Request) -> Response:
    caller = await authorize_listing(request, Action.LIST)
    found = await services(request).manager.list_secrets()
    return json_response([s for s in found if caller.may(Action.LIST, s["name"])])


@router.post("/secrets", status_code=201, response_model=PropertiesOut, summary="Create a secret")
async def create_secret(request: Request, body: SecretCreate) -> Response:
    await authorize(request, Action.WRITE, body.name)
    props = await services(request).manager.create_secret(
        body.name, body.value, body.secret_type, body.metadata, body.expires_in_days,
        body.content_type, body.not_before, expires_at=body.expires_at, enabled=body.enabled,
    )  # fmt: skip
    return json_response(props, 201)


@router.get("/secrets/{name}", response_model=SecretOut, summary="Read a secret's value")
async def get_secret(request: Request, name: NamePath, version: Version = None) -> Response:
    return await read_secret(request, name, version)


async def read_secret(request: Request, name: str, version: str | None) -> Response:
    """The value and properties (also served by :mod:`strongroom.server.fastpath`)."""
    await authorize(request, Action.READ, name)
    return _secret_response(await services(request).manager.get_secret_bundle(name, version))


@router.put("/secrets/{name}", response_model=PropertiesOut, summary="Add a new version")
async def update_secret(request: Request, name: NamePath, body: SecretUpdate) -> Response:
    await authorize(request, Action.WRITE, name)
    props = await services(request).manager.update_secret(
        name, body.value, body.metadata, secret_type=body.secret_type,
        content_type=body.content_type, expires_in_days=body.expires_in_days,
        not_before=body.not_before, expires_at=body.expires_at, enabled=body.enabled,
    )  # fmt: skip
    return json_response(props)


@router.patch(
    "/secrets/{name}", response_model=PropertiesOut, summary="Change a version's properties"
)
async def update_properties(request: Request, name: NamePath, body: PropertiesPatch) -> Response:
    await authorize(request, Action.WRITE, name)
    given = body.model_fields_set
    props = await services(request).manager.update_secret_properties(
        name,
        body.version,
        enabled=body.enabled if "enabled" in given and body.enabled is not None else UNSET,
        expires_at=body.expires_at if "expires_at" in given else UNSET,
        not_before=body.not_before if "not_before" in given else UNSET,
        metadata=body.metadata if "metadata" in given else UNSET,
        content_type=body.content_type if "content_type" in given else UNSET,
    )
    return json_response(props)


@router.get(
    "/secrets/{name}/properties", response_model=PropertiesOut, summary="A version's properties"
)
async def get_properties(request: Request, name: NamePath, version: Version = None) -> Response:
    await authorize(request, Action.LIST, name)
    return json_response(await services(request).manager.get_secret_properties(name, version))


@router.get("/secrets/{name}/versions", response_model=list[PropertiesOut], summary="Every version")
async def list_versions(request: Request, name: NamePath) -> Response:
    await authorize(request, Action.LIST, name)
    return json_response(await services(request).manager.get_secret_versions(name))


@router.get(
    "/secrets/{name}/versions/{version}", response_model=SecretOut, summary="Read one version"
)
async def get_version(request: Request, name: NamePath, version: VersionPath) -> Response:
    await authorize(request, Action.READ, name)
    return _secret_response(await services(request).manager.get_secret_bundle(name, version))


async def _set_enabled(
    request: Request,
    name: NamePath,
    enabled: bool,
    version: str | None,
    body: VersionChoice | None,
) -> Response:
    """The version comes from the query or the body; naming two different ones is refused
    rather than acting on either."""
    chosen = body.version if body is not None else None
    if version is not None and chosen is not None and version != chosen:
        raise ValidationError("the query and the body name different versions; give one")
    await authorize(request, Action.WRITE, name)
    manager = services(request).manager
    props = await manager.update_secret_properties(name, version or chosen, enabled=enabled)
    return json_response(props)


@router.post("/secrets/{name}/enable", response_model=PropertiesOut, summary="Enable a version")
async def enable(
    request: Request, name: NamePath, version: Version = None, body: VersionChoice | None = None
) -> Response:
    return await _set_enabled(request, name, True, version, body)


@router.post("/secrets/{name}/disable", response_model=PropertiesOut, summary="Disable a version")
async def disable(
    request: Request, name: NamePath, version: Version = None, body: VersionChoice | None = None
) -> Response:
    return await _set_enabled(request, name, False, version, body)


@router.delete(
    "/secrets/{name}",
    response_model=DeleteOut,
    summary="Soft-delete a secret (immediate=true purges it)",
)
async def delete_secret(request: Request, name: NamePath, immediate: bool = False) -> Response:
    await authorize(request, Action.DELETE, name)
    result = await services(request).manager.delete_secret(name, immediate)
    return json_response(result)


@router.get(
    "/deleted-secrets", response_model=list[DeletedSecretOut], summary="List deleted secrets"
)
async def list_deleted(request: Request) -> Response:
    caller = await authorize_listing(request, Action.LIST)
    found = await services(request).manager.list_deleted_secrets()
    return json_response([s for s in found if caller.may(Action.LIST, s["name"])])


@router.get("/deleted-secrets/{name}", response_model=DeletedSecretOut, summary="A deleted secret")
async def get_deleted(request: Request, name: NamePath) -> Response:
    await authorize(request, Action.LIST, name)
    try:
        return json_response(await services(request).manager.get_deleted_secret(name))
    except SecretNotDeletedError as live:
        raise SecretNotFoundError(str(live)) from None  # no such deleted secret: 404


@router.post(
    "/deleted-secrets/{name}/recover",
    response_model=PropertiesOut,
    summary="Recover a soft-deleted secret",
)
async def recover(request: Request, name: NamePath) -> Response:
    await authorize(request, Action.WRITE, name)
    return json_response(await services(request).manager.recover_deleted_secret(name))


@router.delete(
    "/deleted-secrets/{name}", status_code=204, summary="Purge a deleted secret for good"
)
async def purge(request: Request, name: NamePath) -> Response:
    await authorize(request, Action.DELETE, name)
    await services(request).manager.purge_deleted_secret(name)
    return Response(status_code=204)
