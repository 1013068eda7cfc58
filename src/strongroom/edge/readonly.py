"""The edge's HTTP guard against writes: every change is made at the centre.

Pure ASGI in front of the whole app: a write is refused before anything runs, so nothing at the
edge changes (the replica store refuses writes too, as a second wall). The site's own logins
and tokens (``/v1/auth``) stay writable: they are the edge's, not the centre's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request

from strongroom.core.errors import EdgeReadOnlyError
from strongroom.server.errors import error_response

__all__ = ["ReadOnly"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_EDGE_OWN = ("/v1/auth/",)


class ReadOnly:
    """Refuses writes (405 ``edge_read_only``) except to the edge's own access objects."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _WRITES
            and not str(scope["path"]).startswith(_EDGE_OWN)
        ):
            error = EdgeReadOnlyError(
                "this is an edge replica, which is read-only: make changes at the upstream server"
            )
            response = error_response(Request(scope, receive), error)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
