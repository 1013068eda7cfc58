"""Azure Key Vault's secrets data plane on strongroom, for unmodified Key Vault clients.

Paths, JSON shapes (camelCase, Unix-second times), ``api-version``, paging with an absolute
``nextLink`` (``maxresults`` 1-25) and error codes follow Key Vault's REST specification, so
``azure-keyvault-secrets`` pointed at strongroom works. Every call goes through the same
manager, policies and audit as the native API. Tags are the secret's metadata.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from strongroom.core.backup import open_backup
from strongroom.core.errors import (
    DeletedSecretConflictError,
    SecretAlreadyExistsError,
    SecretNotFoundError,
)
from strongroom.core.models import UNSET
from strongroom.core.policy import Action
from strongroom.server.context import authorize, authorize_listing, services
from strongroom.server.jsonio import json_response
from strongroom.server.routes.keyvault_shapes import (
    bundle_body,
    check_api_version,
    deleted_secret,
    page,
    secret_bundle,
    secret_item,
    time_of,
)
from strongroom.server.schemas import Text
from strongroom.services.wiring import Strongroom

router = APIRouter(include_in_schema=False)

ApiVersion = Annotated[str | None, Query(alias="api-version")]
MaxResults = Annotated[int | None, Query(alias="maxresults")]
SkipToken = Annotated[str | None, Query(alias="$skiptoken")]


class Attributes(BaseModel):
    model_config = ConfigDict(extra="ignore")
    enabled: bool | None = None
    nbf: int | None = Field(default=None, ge=0, le=253402300799)
    exp: int | None = Field(default=None, ge=0, le=253402300799)


class SetSecret(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    value: str
    content_type: Text | None = Field(default=None, alias="contentType", max_length=255)
    attributes: Attributes | None = None
    tags: dict[Text, Text] | None = None


class UpdateSecret(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    content_type: Text | None = Field(default=None, alias="contentType", max_length=255)
    attributes: Attributes | None = None
    tags: dict[Text, Text] | None = None


class RestoreSecret(BaseModel):
    model_config = ConfigDict(extra="ignore")
    value: str = Field(max_length=4 * 1024 * 1024)


# -- secrets ---------------------------------------------------------------------------------


@router.put("/secrets/{name}")
async def set_secret(
    request: Request, name: str, body: SetSecret, api_version: ApiVersion = None
) -> Response:
    """A new version (the secret is created when the name is free)."""
    check_api_version(api_version)
    await authorize(request, Action.WRITE, name)
    wiring = services(request)
    manager = wiring.manager
    attributes = body.attributes or Attributes()
    options: dict[str, Any] = {
        "content_type": body.content_type,
        "not_before": time_of(attributes.nbf),
        "expires_at": time_of(attributes.exp),
        "enabled": attributes.enabled if attributes.enabled is not None else True,
        "content_type_hint": True,  # Key Vault records any content type with any value
    }
    metadata = body.tags or {}

    async def create() -> dict[str, Any]:
        return await manager.create_secret(
            name, body.value, metadata=metadata, content_type=options["content_type"],
            not_before=options["not_before"], expires_at=options["expires_at"],
            enabled=options["enabled"], content_type_hint=True,
        )  # fmt: skip

    # Look before writing (unaudited), so that a set which creates leaves one CREATE in the
    # trail rather than a failed UPDATE first; a race with another writer falls back.
    if await _is_live(wiring.app, name):
        try:
            props = await manager.update_secret(name, body.value, metadata, **options)
        except SecretNotFoundError:  # deleted or purged since: create, or 409 if deleted
            props = await create()
    else:
        try:
            props = await create()
        except SecretAlreadyExistsError as exists:
            if isinstance(exists, DeletedSecretConflictError):
                raise
            props = await manager.update_secret(name, body.value, metadata, **options)
    return json_response(secret_bundle(request, props, body.value))


async def _is_live(app: Strongroom, name: str) -> bool:
    """Whether ``name`` is a live secret (asked of the store: no audit event)."""
    try:
        await app.store.get_properties(name)
    except SecretNotFoundError:  # also SecretIsDeletedError
        return False
    return True


@router.get("/secrets")
async def list_secrets(
    request: Request,
    api_version: ApiVersion = None,
    maxresults: MaxResults = None,
    skiptoken: SkipToken = None,
) -> Response:
    version = check_api_version(api_version)
    caller = await authorize_listing(request, Action.LIST)
    found = await services(request).manager.list_secrets()
    items = [
        secret_item(request, p, versioned=False)
        for p in found
        if caller.may(Action.LIST, p["name"])
    ]
    return page(request, "/secrets", items, version, maxresults, skiptoken, by_name=True)


@router.post("/secrets/restore")
async def restore(
    request: Request, body: RestoreSecret, api_version: ApiVersion = None
) -> Response:
    check_api_version(api_version)
    name = open_backup(services(request).app.backup_key, body.value).get("name")
    await authorize(request, Action.WRITE, name if isinstance(name, str) else None)
    props = await services(request).manager.restore_secret_backup(body.value)
    return json_response(secret_bundle(request, props))


@router.get("/secrets/{name}/versions")
async def list_versions(
    request: Request,
    name: str,
    api_version: ApiVersion = None,
    maxresults: MaxResults = None,
    skiptoken: SkipToken = None,
) -> Response:
    version = check_api_version(api_version)
    await authorize(request, Action.LIST, name)
    try:
        found = await services(request).manager.get_secret_versions(name)
    except SecretNotFoundError:  # also soft-deleted: Key Vault lists no versions (200)
        found = []
    items = [secret_item(request, p, versioned=True) for p in found]
    path = f"/secrets/{name}/versions"
    return page(request, path, items, version, maxresults, skiptoken, by_name=False)


@router.get("/secrets/{name}")  # the version "may be excluded" (Key Vault's REST reference)
@router.get("/secrets/{name}/")  # what the SDKs send for the latest version
@router.get("/secrets/{name}/{version}")
async def get_secret(
    request: Request, name: str, version: str = "", api_version: ApiVersion = None
) -> Response:
    return await read_keyvault_secret(request, name, version, api_version)


async def read_keyvault_secret(
    request: Request, name: str, version: str, api_version: str | None
) -> Response:
    """A secret bundle with its value (also served by :mod:`strongroom.server.fastpath`)."""
    check_api_version(api_version)
    await authorize(request, Action.READ, name)
    # Key Vault's get serves expired and not-yet-valid versions (dates are the application's
    # to act on); disabled and revoked ones are refused. /v1 and the library are stricter.
    bundle = await services(request).manager.get_secret_bundle(
        name, version or None, enforce_dates=False
    )
    return Response(bundle_body(request, bundle), media_type="application/json")


@router.patch("/secrets/{name}")
@router.patch("/secrets/{name}/")
@router.patch("/secrets/{name}/{version}")
async def update_properties(
    request: Request,
    name: str,
    body: UpdateSecret,
    version: str = "",
    api_version: ApiVersion = None,
) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.WRITE, name)
    given = body.model_fields_set
    attributes = body.attributes or Attributes()
    set_attrs = attributes.model_fields_set if body.attributes is not None else set()
    props = await services(request).manager.update_secret_properties(
        name,
        version or None,
        enabled=attributes.enabled
        if "enabled" in set_attrs and attributes.enabled is not None else UNSET,
        expires_at=time_of(attributes.exp) if "exp" in set_attrs else UNSET,
        not_before=time_of(attributes.nbf) if "nbf" in set_attrs else UNSET,
        metadata=body.tags if "tags" in given else UNSET,
        content_type=body.content_type if "content_type" in given else UNSET,
    )  # fmt: skip
    return json_response(secret_bundle(request, props))


@router.delete("/secrets/{name}")
async def delete_secret(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.DELETE, name)
    deleted = await services(request).manager.delete_secret(name)
    return json_response(deleted_secret(request, deleted))


@router.post("/secrets/{name}/backup")
async def backup(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.READ, name)
    return json_response({"value": await services(request).manager.backup_secret(name)})


# -- deleted secrets -------------------------------------------------------------------------


@router.get("/deletedsecrets")
async def list_deleted(
    request: Request,
    api_version: ApiVersion = None,
    maxresults: MaxResults = None,
    skiptoken: SkipToken = None,
) -> Response:
    version = check_api_version(api_version)
    caller = await authorize_listing(request, Action.LIST)
    found = await services(request).manager.list_deleted_secrets()
    items = [
        deleted_secret(request, d, item=True) for d in found if caller.may(Action.LIST, d["name"])
    ]
    path = "/deletedsecrets"
    return page(request, path, items, version, maxresults, skiptoken, by_name=True)


@router.get("/deletedsecrets/{name}")
async def get_deleted(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.LIST, name)
    return json_response(
        deleted_secret(request, await services(request).manager.get_deleted_secret(name))
    )


@router.delete("/deletedsecrets/{name}")
async def purge(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.DELETE, name)
    await services(request).manager.purge_deleted_secret(name)
    return Response(status_code=204)


@router.post("/deletedsecrets/{name}/recover")
async def recover(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.WRITE, name)
    props = await services(request).manager.recover_deleted_secret(name)
    return json_response(secret_bundle(request, props))
