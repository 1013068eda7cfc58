"""Key Vault's JSON shapes for the secrets and keys data planes: vault addresses, attributes,
bundles, deleted items, pages with an absolute ``nextLink``, and the ``api-version`` check.

Apart from the routes, so both planes share one spelling of each shape, and the hot read
(:func:`bundle_body`) can reuse an answer per opened version and vault address.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from strongroom.core.errors import ValidationError
from strongroom.core.models import UNSET, SecretBundle
from strongroom.server.context import services
from strongroom.server.jsonio import json_bytes, json_response

__all__ = [
    "MAX_RESULTS",
    "bundle_body",
    "check_api_version",
    "deleted_secret",
    "page",
    "seconds_of",
    "secret_attributes",
    "secret_bundle",
    "secret_item",
    "time_of",
    "vault_address",
]

MAX_RESULTS = 25
_API_VERSION = re.compile(r"(\d{1,2}\.\d{1,2}|\d{4}-\d{2}-\d{2})(-preview(\.\d+)?)?")
#: Key Vault bodies a bundle keeps, one per vault address it was read through.
_ENCODED_PER_BUNDLE = 4


def check_api_version(api_version: str | None) -> str:
    if api_version is None:
        raise ValidationError("the api-version query parameter is required")
    if not _API_VERSION.fullmatch(api_version):
        raise ValidationError("the api-version query parameter is not a valid version")
    return api_version


def seconds_of(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def time_of(seconds: int | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


#: The vault address per what it is built from (scheme, Host, server, root paths): building a
#: URL costs a tenth of a hot read, and a service answers under few addresses.
_BASES: dict[tuple[Any, ...], str] = {}
_MAX_BASES = 64


def vault_address(request: Request) -> str:
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


def secret_attributes(request: Request, props: dict[str, Any]) -> dict[str, Any]:
    days = services(request).app.settings.recovery_days
    attributes: dict[str, Any] = {
        "enabled": props["enabled"],
        "created": seconds_of(props["created_at"]),
        "updated": seconds_of(props["updated_at"]),
        "recoveryLevel": "Recoverable+Purgeable" if days == 90
        else "CustomizedRecoverable+Purgeable",
        "recoverableDays": days,
    }  # fmt: skip
    if props["expires_at"] is not None:
        attributes["exp"] = seconds_of(props["expires_at"])
    if props["not_before"] is not None:
        attributes["nbf"] = seconds_of(props["not_before"])
    return attributes


def secret_bundle(request: Request, props: dict[str, Any], value: Any = UNSET) -> dict[str, Any]:
    base = vault_address(request)
    body: dict[str, Any] = {
        "id": f"{base}/secrets/{props['name']}/{props['version']}",
        "attributes": secret_attributes(request, props),
        "tags": props["metadata"],
    }
    if props["content_type"] is not None:
        body["contentType"] = props["content_type"]
    if value is not UNSET:
        body["value"] = value
    return body


def secret_item(request: Request, props: dict[str, Any], *, versioned: bool) -> dict[str, Any]:
    body = secret_bundle(request, props)
    if not versioned:
        body["id"] = f"{vault_address(request)}/secrets/{props['name']}"
    return body


def deleted_secret(
    request: Request, deleted: dict[str, Any], *, item: bool = False
) -> dict[str, Any]:
    body = secret_bundle(request, deleted)
    if item:
        body["id"] = f"{vault_address(request)}/secrets/{deleted['name']}"
    body["recoveryId"] = f"{vault_address(request)}/deletedsecrets/{deleted['name']}"
    body["deletedDate"] = seconds_of(deleted["deleted_at"])
    body["scheduledPurgeDate"] = seconds_of(deleted["scheduled_purge_at"])
    return body


def page(
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
        next_link = f"{vault_address(request)}{path}?{query}"
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


def bundle_body(request: Request, bundle: SecretBundle) -> bytes:
    """The bundle as Key Vault's JSON, encoded once per bundle and vault address (a store
    serves an unchanged version as the same bundle; the address is in the ``id``). A bundle
    keeps the bodies of a few addresses at most: the Host header is the client's to choose."""
    base = vault_address(request)
    key = f"kv-json {base}"
    body = bundle.encoded.get(key)
    if body is None:
        props = bundle.properties.to_dict()
        body = json_bytes(secret_bundle(request, props, bundle.value.reveal_bytes().decode()))
        if len(bundle.encoded) < _ENCODED_PER_BUNDLE:
            bundle.encoded[key] = body
    return body
