"""Azure Key Vault's secrets data plane on strongroom, for unmodified Key Vault clients.

Paths, JSON shapes (camelCase, Unix-second times), ``api-version``, paging with an absolute
``nextLink`` (``maxresults`` 1-25) and error codes follow Key Vault's REST specification, so
``azure-keyvault-secrets`` pointed at strongroom works. Every call goes through the same
manager, policies and audit as the native API. Tags are the secret's metadata.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from strongroom.core.backup import open_backup
from strongroom.core.errors import (
    DeletedSecretConflictError,
    SecretAlreadyExistsError,
    SecretNotFoundError,
    ValidationError,
)
from strongroom.core.models import UNSET, SecretBundle
from strongroom.core.policy import Action
from strongroom.server.context import authorize, authorize_listing, services
from strongroom.server.jsonio import json_bytes, json_response
from strongroom.server.schemas import Text
from strongroom.services.wiring import Strongroom

router = APIRouter(include_in_schema=False)

#: Key Vault bodies a bundle keeps, one per vault address it was read through.
_ENCODED_PER_BUNDLE = 4
_API_VERSION = re.compile(r"(\d{1,2}\.\d{1,2}|\d{4}-\d{2}-\d{2})(-preview(\.\d+)?)?")
MAX_RESULTS = 25
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


def _check_api_version(api_version: str | None) -> str:
    if api_version is None:
        raise ValidationError("the api-version query parameter is required")
    if not _API_VERSION.fullmatch(api_version):
        raise ValidationError("the api-version query parameter is not a valid version")
    return api_version


def _seconds(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def _time(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


#: The vault address per what it is built from (scheme, Host, server, root paths): building a
#: URL costs a tenth of a hot read, and a service answers under few addresses.
_BASES: dict[tuple[Any, ...], str] = {}
_MAX_BASES = 64


def _base(request: Request) -> str:
    """The vault address the request came to (what Key Vault's ids start with)."""
    scope = request.scope
    host = next((v for k, v in scope["headers"] if k == b"host"), None)
    key = (scope.get("scheme"), host, scope.get("server"), scope.get("root_path"),
           scope.get("app_root_path"))  # fmt: skip
    base = _BASES.get(key)
    if base is None:
        base = str(request.base_url).rstrip("/")
        if len(_BASES) >= _MAX_BASES:
            _BASES.clear()  # many Host headers (the client's to choose): start over
        _BASES[key] = base
    return base


def _attributes(request: Request, props: dict[str, Any]) -> dict[str, Any]:
    days = services(request).app.settings.recovery_days
    attributes: dict[str, Any] = {
        "enabled": props["enabled"],
        "created": _seconds(props["created_at"]),
        "updated": _seconds(props["updated_at"]),
        "recoveryLevel": "Recoverable+Purgeable" if days == 90
        else "CustomizedRecoverable+Purgeable",
        "recoverableDays": days,
    }  # fmt: skip
    if props["expires_at"] is not None:
        attributes["exp"] = _seconds(props["expires_at"])
    if props["not_before"] is not None:
        attributes["nbf"] = _seconds(props["not_before"])
    return attributes


def _bundle(
    request: Request, props: dict[str, Any], value: Any = UNSET, base: str | None = None
) -> dict[str, Any]:
    base = _base(request) if base is None else base
    body: dict[str, Any] = {
        "id": f"{base}/secrets/{props['name']}/{props['version']}",
        "attributes": _attributes(request, props),
        "tags": props["metadata"],
    }
    if props["content_type"] is not None:
        body["contentType"] = props["content_type"]
    if value is not UNSET:
        body["value"] = value
    return body


def _item(request: Request, props: dict[str, Any], *, versioned: bool) -> dict[str, Any]:
    body = _bundle(request, props)
    if not versioned:
        body["id"] = f"{_base(request)}/secrets/{props['name']}"
    return body


def _deleted(request: Request, deleted: dict[str, Any], *, item: bool = False) -> dict[str, Any]:
    body = _bundle(request, deleted)
    if item:
        body["id"] = f"{_base(request)}/secrets/{deleted['name']}"
    body["recoveryId"] = f"{_base(request)}/deletedsecrets/{deleted['name']}"
    body["deletedDate"] = _seconds(deleted["deleted_at"])
    body["scheduledPurgeDate"] = _seconds(deleted["scheduled_purge_at"])
    return body


def _page(
    request: Request,
    path: str,
    items: list[dict[str, Any]],
    api_version: str,
    maxresults: int | None,
    skiptoken: str | None,
    *,
    by_name: bool,
) -> Response:
    """One page of ``items`` and the absolute link to the next.

    The ``$skiptoken`` names the last item handed out, so a page boundary stays put when items
    are added or removed between pages: listings of names (``by_name``) are sorted here by
    their comparison key and resume after it; versions (newest first) resume after the last
    version id, or at the old offset if that version is gone.
    """
    size = MAX_RESULTS if maxresults is None else maxresults
    if not 1 <= size <= MAX_RESULTS:
        raise ValidationError(f"maxresults must be between 1 and {MAX_RESULTS}")
    key = _name_key if by_name else _version_key
    if by_name:
        items = sorted(items, key=key)
    start = _resume(items, skiptoken, key, by_name=by_name)
    chunk = items[start : start + size]
    next_link = None
    if start + size < len(items):
        state = {"o": start + size, "k": key(chunk[-1])}
        token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        query = urlencode({"api-version": api_version, "$skiptoken": token, "maxresults": size})
        next_link = f"{_base(request)}{path}?{query}"
    return json_response({"value": chunk, "nextLink": next_link})


def _name_key(item: dict[str, Any]) -> str:
    return str(item.get("id") or item["kid"]).rsplit("/", 1)[1].lower()


def _version_key(item: dict[str, Any]) -> str:
    return str(item.get("id") or item["kid"]).rsplit("/", 1)[1]


def _resume(
    items: list[dict[str, Any]],
    skiptoken: str | None,
    key: Callable[[dict[str, Any]], str],
    *,
    by_name: bool,
) -> int:
    """Where the page after ``skiptoken`` starts in ``items``."""
    if skiptoken is None:
        return 0
    try:
        state = json.loads(base64.urlsafe_b64decode(skiptoken.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationError("the $skiptoken is not valid") from None
    offset = state.get("o") if isinstance(state, dict) else None
    last = state.get("k") if isinstance(state, dict) else None
    if (
        not isinstance(offset, int)
        or isinstance(offset, bool)
        or offset < 0
        or not (last is None or isinstance(last, str))
    ):
        raise ValidationError("the $skiptoken is not valid")
    if last is None:
        return offset
    keys = [key(item) for item in items]
    if by_name:
        return bisect.bisect_right(keys, last)
    return keys.index(last) + 1 if last in keys else offset


# -- secrets ---------------------------------------------------------------------------------


@router.put("/secrets/{name}")
async def set_secret(
    request: Request, name: str, body: SetSecret, api_version: ApiVersion = None
) -> Response:
    """A new version (the secret is created when the name is free)."""
    _check_api_version(api_version)
    await authorize(request, Action.WRITE, name)
    wiring = services(request)
    manager = wiring.manager
    attributes = body.attributes or Attributes()
    options: dict[str, Any] = {
        "content_type": body.content_type,
        "not_before": _time(attributes.nbf),
        "expires_at": _time(attributes.exp),
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
    return json_response(_bundle(request, props, body.value))


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
    version = _check_api_version(api_version)
    caller = await authorize_listing(request, Action.LIST)
    found = await services(request).manager.list_secrets()
    items = [
        _item(request, p, versioned=False) for p in found if caller.may(Action.LIST, p["name"])
    ]
    return _page(request, "/secrets", items, version, maxresults, skiptoken, by_name=True)


@router.post("/secrets/restore")
async def restore(
    request: Request, body: RestoreSecret, api_version: ApiVersion = None
) -> Response:
    _check_api_version(api_version)
    name = open_backup(services(request).app.backup_key, body.value).get("name")
    await authorize(request, Action.WRITE, name if isinstance(name, str) else None)
    props = await services(request).manager.restore_secret_backup(body.value)
    return json_response(_bundle(request, props))


@router.get("/secrets/{name}/versions")
async def list_versions(
    request: Request,
    name: str,
    api_version: ApiVersion = None,
    maxresults: MaxResults = None,
    skiptoken: SkipToken = None,
) -> Response:
    version = _check_api_version(api_version)
    await authorize(request, Action.LIST, name)
    try:
        found = await services(request).manager.get_secret_versions(name)
    except SecretNotFoundError:  # also soft-deleted: Key Vault lists no versions (200)
        found = []
    items = [_item(request, p, versioned=True) for p in found]
    path = f"/secrets/{name}/versions"
    return _page(request, path, items, version, maxresults, skiptoken, by_name=False)


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
    _check_api_version(api_version)
    await authorize(request, Action.READ, name)
    # Key Vault's get serves expired and not-yet-valid versions (dates are the application's
    # to act on); disabled and revoked ones are refused. /v1 and the library are stricter.
    bundle = await services(request).manager.get_secret_bundle(
        name, version or None, enforce_dates=False
    )
    return Response(_bundle_body(request, bundle), media_type="application/json")


def _bundle_body(request: Request, bundle: SecretBundle) -> bytes:
    """The bundle as Key Vault's JSON, encoded once per bundle and vault address (a store
    serves an unchanged version as the same bundle; the address is in the ``id``). A bundle
    keeps the bodies of a few addresses at most: the Host header is the client's to choose."""
    base = _base(request)
    key = f"kv-json {base}"
    body = bundle.encoded.get(key)
    if body is None:
        props = bundle.properties.to_dict()
        body = json_bytes(_bundle(request, props, bundle.value.reveal_bytes().decode(), base))
        if len(bundle.encoded) < _ENCODED_PER_BUNDLE:
            bundle.encoded[key] = body
    return body


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
    _check_api_version(api_version)
    await authorize(request, Action.WRITE, name)
    given = body.model_fields_set
    attributes = body.attributes or Attributes()
    set_attrs = attributes.model_fields_set if body.attributes is not None else set()
    props = await services(request).manager.update_secret_properties(
        name,
        version or None,
        enabled=attributes.enabled
        if "enabled" in set_attrs and attributes.enabled is not None else UNSET,
        expires_at=_time(attributes.exp) if "exp" in set_attrs else UNSET,
        not_before=_time(attributes.nbf) if "nbf" in set_attrs else UNSET,
        metadata=body.tags if "tags" in given else UNSET,
        content_type=body.content_type if "content_type" in given else UNSET,
    )  # fmt: skip
    return json_response(_bundle(request, props))


@router.delete("/secrets/{name}")
async def delete_secret(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    _check_api_version(api_version)
    await authorize(request, Action.DELETE, name)
    deleted = await services(request).manager.delete_secret(name)
    return json_response(_deleted(request, deleted))


@router.post("/secrets/{name}/backup")
async def backup(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    _check_api_version(api_version)
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
    version = _check_api_version(api_version)
    caller = await authorize_listing(request, Action.LIST)
    found = await services(request).manager.list_deleted_secrets()
    items = [_deleted(request, d, item=True) for d in found if caller.may(Action.LIST, d["name"])]
    path = "/deletedsecrets"
    return _page(request, path, items, version, maxresults, skiptoken, by_name=True)


@router.get("/deletedsecrets/{name}")
async def get_deleted(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    _check_api_version(api_version)
    await authorize(request, Action.LIST, name)
    return json_response(
        _deleted(request, await services(request).manager.get_deleted_secret(name))
    )


@router.delete("/deletedsecrets/{name}")
async def purge(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    _check_api_version(api_version)
    await authorize(request, Action.DELETE, name)
    await services(request).manager.purge_deleted_secret(name)
    return Response(status_code=204)


@router.post("/deletedsecrets/{name}/recover")
async def recover(request: Request, name: str, api_version: ApiVersion = None) -> Response:
    _check_api_version(api_version)
    await authorize(request, Action.WRITE, name)
    props = await services(request).manager.recover_deleted_secret(name)
    return json_response(_bundle(request, props))
