"""The server's error bodies back into the typed errors the library raises locally.

The server answers ``{"error": {"code", "message"}}`` with one code per error class (see
``strongroom.server.errors``); the same class comes back here with the same message, so code
written against the local profile catches the same exceptions. A token never appears: the
server's messages never hold one, and this module never reads a request's headers.
"""

from __future__ import annotations

import math
from typing import Any

from strongroom.core import errors as e

__all__ = ["error_from_response"]


def _by_code() -> dict[str, type[e.StrongroomError]]:
    table: dict[str, type[e.StrongroomError]] = {}
    for name in e.__all__:
        cls = getattr(e, name)
        if isinstance(cls, type) and issubclass(cls, e.StrongroomError):
            table.setdefault(cls.code, cls)
    # Codes that several classes share: the path decides (see _not_found); these are defaults.
    table["not_found"] = e.SecretNotFoundError
    table["denied"] = e.SeparationOfDutiesError
    return table


_CODES = _by_code()

#: Classes the server reports under the same code, told apart by the path of the request.
_NOT_FOUND_BY_PREFIX = (
    ("/v1/revocations", e.RevocationNotFoundError),
    ("/v1/auth", e.AccessObjectNotFoundError),
    ("/v1/events", e.AccessObjectNotFoundError),
)

#: When a body is not the server's (a proxy's page, say), the status alone decides.
_BY_STATUS: dict[int, type[e.StrongroomError]] = {
    400: e.ValidationError,
    401: e.AuthenticationError,
    403: e.PermissionDeniedError,
    404: e.SecretNotFoundError,
    409: e.SecretAlreadyExistsError,
    413: e.ValidationError,
    429: e.RateLimitedError,
    502: e.StoreUnavailableError,
    503: e.StoreUnavailableError,
}


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float(headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def error_from_response(
    addr: str, path: str, status: int, body: Any, headers: Any
) -> e.StrongroomError:
    """The typed error for an HTTP error answer from the server at ``addr``."""
    code = message = None
    policies: tuple[str, ...] = ()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = body["error"].get("message")
        named = body["error"].get("policies")
        if isinstance(named, list):
            policies = tuple(str(p)[:64] for p in named[:100])
    message = str(message) if message else f"the server answered HTTP {status}"
    cls = _CODES.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = _BY_STATUS.get(status, e.StrongroomError if status < 500 else e.StoreUnavailableError)
    if cls is e.SecretNotFoundError and code == "not_found":
        for prefix, specific in _NOT_FOUND_BY_PREFIX:
            if path.startswith(prefix):
                cls = specific
    if cls is e.PermissionDeniedError:
        return e.PermissionDeniedError(message, policies=policies)
    if cls is e.RateLimitedError:
        return e.RateLimitedError(message, math.ceil(_retry_after(headers)))
    if issubclass(cls, e.AuthenticationError):
        return cls(f"{addr}: {message} (token expired or revoked; run `strongroom login`)")
    if cls is e.StoreUnavailableError and status in (502, 503) and code is None:
        return cls(f"{addr} is unavailable (HTTP {status})")
    return cls(message)
