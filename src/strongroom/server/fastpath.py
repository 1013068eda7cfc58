"""The hot reads, dispatched without the framework's routing and parameter machinery.

Reading one secret is most of a secrets service's traffic. ``GET /v1/secrets/{name}`` and Key
Vault's ``GET /secrets/{name}/[{version}]`` are matched here with one regular expression and
handed to the same handler functions their documented FastAPI routes call; anything these
patterns do not match exactly (other methods, odd parameters) goes on to FastAPI, which
validates and answers it as usual. Measured: FastAPI's router alone cost about a third of a
request's CPU on this path.

:class:`StrongroomAPI` goes one step further: it matches the two reads before the framework's
middleware stack (error, telemetry and body-limit layers that a bodiless GET does not need)
and runs them behind a guard of their own, built with the same configuration and the same rate
limiters as the guard of every other route, so authentication, rate limits, audit, headers and
the access log are the very same code. When CORS is configured the reads stay inside the stack
(its middleware must see every answer); :class:`FastPath` then matches them behind the guard.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from strongroom.core.errors import StrongroomError
from strongroom.server.errors import error_response
from strongroom.server.routes.keyvault import read_keyvault_secret
from strongroom.server.routes.secrets import read_secret

__all__ = ["FastPath", "StrongroomAPI", "match"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_NAME = r"(?P<name>[0-9a-zA-Z-]{1,127})"
_NATIVE = re.compile(rf"/v1/secrets/{_NAME}")
_KEYVAULT = re.compile(rf"/secrets/{_NAME}/(?P<version>[0-9a-fA-F]{{32}})?")
_VERSION = re.compile(r"[0-9a-f]{32}")
#: Where the outer match leaves its handler for the guarded app behind it.
_HANDLER = "strongroom.hot_read"

Handler = Callable[[Request], Awaitable[Response]]


async def _answer(handler: Handler, scope: Scope, receive: Any, send: Any) -> None:
    request = Request(scope, receive)
    try:
        response = await handler(request)
    except StrongroomError as exc:
        response = error_response(request, exc)
    await response(scope, receive, send)


class FastPath:
    """Middleware behind the guard: the hot reads skip FastAPI's routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        handler = match(scope) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        await _answer(handler, scope, receive, send)


async def guarded_read(scope: Scope, receive: Any, send: Any) -> None:
    """The app behind :attr:`StrongroomAPI.hot_reads`' guard: the handler matched outside."""
    await _answer(scope.pop(_HANDLER), scope, receive, send)


class StrongroomAPI(FastAPI):
    """FastAPI, with the two hot reads matched before its middleware stack."""

    #: A guard over :func:`guarded_read` (set by ``create_app``); None sends every request
    #: through the stack.
    hot_reads: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        hot = self.hot_reads
        if hot is not None and scope["type"] == "http" and (handler := match(scope)) is not None:
            scope["app"] = self
            scope[_HANDLER] = handler
            await hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _query(raw: bytes) -> list[tuple[str, str]]:
    """The query's pairs, as ``parse_qsl`` keeping blank values gives them; a single pair
    with nothing to unescape (``api-version=7.5``, on every Key Vault read) is split here."""
    if not raw:
        return []
    if not any(c in raw for c in (b"&", b"%", b"+")):
        name, _, value = raw.decode("latin-1").partition("=")
        return [(name, value)]
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True)


def match(scope: Scope) -> Handler | None:
    """The handler of a well-formed hot read, else None (the framework answers it)."""
    if scope["method"] != "GET":
        return None
    path: str = scope["path"]
    if not path.startswith(("/v1/secrets/", "/secrets/")):
        return None
    query = _query(scope["query_string"])
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
