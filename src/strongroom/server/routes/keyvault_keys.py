"""Azure Key Vault's keys data plane, the subset strongroom serves: RSA keys made here, their
public halves as JSON Web Keys, versions, the enabled flag, and wrapKey / unwrapKey with
RSA-OAEP-256 or RSA-OAEP. ``azure-keyvault-keys`` (KeyClient, CryptographyClient) works against
it unmodified; it is what lets one strongroom auto-unseal another (docs/custody.md).

Authorization uses the secrets' policies, by name: creating a key or changing its attributes
needs ``write``, reading its public half or listing needs ``list``, wrapping and unwrapping
need ``read``. Every call is audited (``KEY_*`` actions) without the wrapped or unwrapped bytes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from strongroom.core.errors import ValidationError
from strongroom.core.policy import Action
from strongroom.core.vault_keys import KeyProperties, b64url_decode, b64url_encode, jwk_of
from strongroom.server.context import authorize, authorize_listing, services
from strongroom.server.jsonio import json_response
from strongroom.server.routes.keyvault import ApiVersion, MaxResults, SkipToken
from strongroom.server.routes.keyvault_shapes import (
    check_api_version,
    page,
    seconds_of,
    vault_address,
)
from strongroom.server.schemas import Text
from strongroom.services.keys.vault_keys import VaultKeys

router = APIRouter(include_in_schema=False)


class KeyAttributes(BaseModel):
    model_config = ConfigDict(extra="ignore")
    enabled: bool | None = None
    nbf: int | None = None
    exp: int | None = None


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kty: str = Field(max_length=20)
    key_size: int | None = None
    public_exponent: int | None = None
    key_ops: list[Text] | None = Field(default=None, max_length=10)
    attributes: KeyAttributes | None = None
    tags: dict[Text, Text] | None = None


class UpdateKey(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key_ops: list[Text] | None = Field(default=None, max_length=10)
    attributes: KeyAttributes | None = None
    tags: dict[Text, Text] | None = None


class KeyOperation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    alg: str = Field(max_length=20)
    value: str = Field(max_length=4096)


def _keys(request: Request) -> VaultKeys:
    return services(request).keys


def _kid(request: Request, props: KeyProperties, *, versioned: bool = True) -> str:
    kid = f"{vault_address(request)}/keys/{props.name}"
    return f"{kid}/{props.version}" if versioned else kid


def _attributes(props: KeyProperties) -> dict[str, Any]:
    return {
        "enabled": props.enabled,
        "created": seconds_of(props.created_at),
        "updated": seconds_of(props.updated_at),
        "recoveryLevel": "Purgeable",
        "exportable": False,
    }


def _bundle(request: Request, props: KeyProperties) -> dict[str, Any]:
    return {
        "key": jwk_of(props, _kid(request, props)),
        "attributes": _attributes(props),
        "tags": props.tags,
    }


def _item(request: Request, props: KeyProperties, *, versioned: bool) -> dict[str, Any]:
    kid = _kid(request, props, versioned=versioned)
    return {"kid": kid, "attributes": _attributes(props), "tags": props.tags}


def _no_dates(attributes: KeyAttributes | None) -> KeyAttributes:
    attributes = attributes or KeyAttributes()
    if attributes.nbf is not None or attributes.exp is not None:
        raise ValidationError("strongroom keys have no activation or expiry dates (nbf, exp)")
    return attributes


@router.post("/keys/{name}/create")
async def create_key(
    request: Request, name: str, body: CreateKey, api_version: ApiVersion = None
) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.WRITE, name)
    attributes = _no_dates(body.attributes)
    if body.public_exponent not in (None, 65537):
        raise ValidationError("public_exponent must be 65537")
    props = await _keys(request).create_key(
        name,
        kty=body.kty,
        key_size=body.key_size,
        key_ops=body.key_ops,
        enabled=attributes.enabled if attributes.enabled is not None else True,
        tags=body.tags,
    )
    return json_response(_bundle(request, props))


@router.get("/keys")
async def list_keys(
    request: Request,
    api_version: ApiVersion = None,
    maxresults: MaxResults = None,
    skiptoken: SkipToken = None,
) -> Response:
    version = check_api_version(api_version)
    caller = await authorize_listing(request, Action.LIST)
    found = await _keys(request).list_keys()
    items = [_item(request, p, versioned=False) for p in found if caller.may(Action.LIST, p.name)]
    return page(request, "/keys", items, version, maxresults, skiptoken, by_name=True)


@router.get("/keys/{name}/versions")
async def list_versions(
    request: Request,
    name: str,
    api_version: ApiVersion = None,
    maxresults: MaxResults = None,
    skiptoken: SkipToken = None,
) -> Response:
    version = check_api_version(api_version)
    await authorize(request, Action.LIST, name)
    found = await _keys(request).list_versions(name)
    items = [_item(request, p, versioned=True) for p in reversed(found)]  # newest first
    path = f"/keys/{name}/versions"
    return page(request, path, items, version, maxresults, skiptoken, by_name=False)


@router.get("/keys/{name}")
@router.get("/keys/{name}/")  # what the SDKs send for the current version
@router.get("/keys/{name}/{version}")
async def get_key(
    request: Request, name: str, version: str = "", api_version: ApiVersion = None
) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.LIST, name)
    props = await _keys(request).get_key(name, version or None)
    return json_response(_bundle(request, props))


@router.patch("/keys/{name}")
@router.patch("/keys/{name}/")
@router.patch("/keys/{name}/{version}")
async def update_key(
    request: Request, name: str, body: UpdateKey, version: str = "", api_version: ApiVersion = None
) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.WRITE, name)
    attributes = _no_dates(body.attributes)
    if body.key_ops is not None:
        raise ValidationError("a key's operations are set when it is created and cannot change")
    props = await _keys(request).update_key(
        name, version or None, enabled=attributes.enabled, tags=body.tags
    )
    return json_response(_bundle(request, props))


@router.post("/keys/{name}/wrapkey")
@router.post("/keys/{name}//wrapkey")  # what the SDKs send for a key id without a version
@router.post("/keys/{name}/{version}/wrapkey")
async def wrap_key(
    request: Request,
    name: str,
    body: KeyOperation,
    version: str = "",
    api_version: ApiVersion = None,
) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.READ, name)
    plaintext = b64url_decode(body.value, "value")
    props, wrapped = await _keys(request).wrap_key(name, version or None, body.alg, plaintext)
    return json_response({"kid": _kid(request, props), "value": b64url_encode(wrapped)})


@router.post("/keys/{name}/unwrapkey")
@router.post("/keys/{name}//unwrapkey")
@router.post("/keys/{name}/{version}/unwrapkey")
async def unwrap_key(
    request: Request,
    name: str,
    body: KeyOperation,
    version: str = "",
    api_version: ApiVersion = None,
) -> Response:
    check_api_version(api_version)
    await authorize(request, Action.READ, name)
    wrapped = b64url_decode(body.value, "value")
    props, key = await _keys(request).unwrap_key(name, version or None, body.alg, wrapped)
    return json_response({"kid": _kid(request, props), "value": b64url_encode(key)})
