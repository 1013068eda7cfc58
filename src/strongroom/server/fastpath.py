"""The hot reads, dispatched without the framework's routing and parameter machinery.

Reading one secret is most of a secrets service's traffic. ``GET /v1/secrets/{name}`` and Key
Vault's ``GET /secrets/{name}/[{version}]`` are matched here with one regular expression and
handed to the same handler functions their documented FastAPI routes call; anything these
patterns do not match exactly (other methods, odd parameters) goes on to FastAPI, which
validates and answers it as usual. Measured: FastAPI's router alone cost about a third of a
request's CPU on this path.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from strongroom.core.errors import StrongroomError
from strongroom.server.errors import error_response
from strongroom.server.routes.keyvault import read_keyvault_secret
from strongroom.server.routes.secrets import read_secret

__all__ = ["FastPath"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_NAME = r"(?P<name>[0-9a-zA-Z-]{1,127})"
_NATIVE = re.compile(rf"/v1/secrets/{_NAME}")
_KEYVAULT = re.compile(rf"/secrets/{_NAME}/(?P<version>[0-9a-fA-F]{{32}})?")
_VERSION = re.compile(r"[0-9a-f]{32}")


class FastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        handler = self._match(scope)
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except StrongroomError as exc:
            response = error_response(request, exc)
        await response(scope, receive, send)

    def _match(self, scope: Scope) -> Callable[[Request], Awaitable[Response]] | None:
        path: str = scope["path"]
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        params = dict(query)
        if len(params) != len(query):
            return None  # a repeated parameter: let the framework say what it thinks
        if (native := _NATIVE.fullmatch(path)) is not None:
            version = params.pop("version", None)
            if params or (version is not None and not _VERSION.fullmatch(version)):
                return None
            name = native["name"]
            return lambda request: read_secret(request, name, version)
        if (kv := _KEYVAULT.fullmatch(path)) is not None:
            api_version = params.pop("api-version", None)
            if params or api_version is None:
                return None
            name, version = kv["name"], kv["version"] or ""
            return lambda request: read_keyvault_secret(request, name, version, api_version)
        return None
