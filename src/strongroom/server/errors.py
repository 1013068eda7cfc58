"""Errors as HTTP answers: one status per error class, and the two body shapes.

Native ``/v1`` answers ``{"error": {"code", "message"}}`` with strongroom's own codes; the Key
Vault-compatible paths answer Key Vault's codes (``SecretNotFound``, ``Conflict`` with inner
``ObjectIsDeletedButRecoverable``, ``Forbidden``/``ForbiddenByRbac``, ``BadParameter``...).
Messages are those of strongroom's errors, which never carry a value; anything unexpected
becomes a bare 500 with no detail.
"""

from __future__ import annotations

import math
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from strongroom.core import errors as e
from strongroom.core.logging import get_logger

__all__ = ["error_body", "install_error_handlers", "is_keyvault_path", "status_for"]

log = get_logger("strongroom.http")

_KV_PREFIXES = ("/secrets", "/deletedsecrets")

# Most specific first: the first class an error is an instance of decides.
_STATUS: list[tuple[type[e.StrongroomError], int]] = [
    (e.ValidationError, 400),
    (e.AuthenticationError, 401),
    (e.PermissionDeniedError, 403),
    (e.SeparationOfDutiesError, 403),
    (e.SecretNotReadableError, 403),
    (e.RateLimitedError, 429),
    (e.DeletedSecretConflictError, 409),
    (e.SecretAlreadyExistsError, 409),
    (e.RevocationStateError, 409),
    (e.RotationTargetError, 502),
    (e.RotationFailedError, 409),
    (e.SecretNotFoundError, 404),
    (e.RevocationNotFoundError, 404),
    (e.AccessObjectNotFoundError, 404),
    (e.StoreUnavailableError, 503),
    (e.AuditUnavailableError, 503),
]

_KV_CODES = {
    400: "BadParameter",
    401: "Unauthorized",
    403: "Forbidden",
    404: "SecretNotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestTooLarge",
    429: "Throttled",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
}


def is_keyvault_path(path: str) -> bool:
    return path.startswith(_KV_PREFIXES)


def status_for(error: e.StrongroomError) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def error_body(
    path: str, status: int, code: str, message: str, *, inner: str | None = None
) -> dict[str, Any]:
    """The error document for ``path``: Key Vault's shape on its paths, strongroom's elsewhere."""
    if is_keyvault_path(path):
        body: dict[str, Any] = {"code": _KV_CODES.get(status, "Error"), "message": message}
        if inner is not None:
            body["innererror"] = {"code": inner}
        return {"error": body}
    return {"error": {"code": code, "message": message}}


def _kv_inner(error: e.StrongroomError) -> str | None:
    if isinstance(error, e.DeletedSecretConflictError):
        return "ObjectIsDeletedButRecoverable"
    if isinstance(error, e.PermissionDeniedError):
        return "ForbiddenByRbac"
    if isinstance(error, e.SecretDisabledError):
        return "SecretDisabled"
    if isinstance(error, e.SecretExpiredError):
        return "SecretExpired"
    if isinstance(error, e.SecretNotYetValidError):
        return "SecretNotYetValid"
    if isinstance(error, e.SecretRevokedError):
        return "SecretRevoked"
    return None


def error_response(request: Request, error: e.StrongroomError) -> JSONResponse:
    status = status_for(error)
    if status >= 500:
        log.error("request failed", path=request.url.path, code=error.code)
    message = str(error) if status < 500 or status in (502, 503) else "internal error"
    body = error_body(request.url.path, status, error.code, message, inner=_kv_inner(error))
    headers = {}
    if isinstance(error, e.RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def strongroom_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, cast(e.StrongroomError, exc))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        exc = cast(RequestValidationError, exc)
        # Name the fields, never echo the input (it may be a value).
        fields = sorted({".".join(str(p) for p in err.get("loc", ())) for err in exc.errors()})
        message = "invalid request: " + ", ".join(fields)[:500]
        body = error_body(request.url.path, 400, e.ValidationError.code, message)
        return JSONResponse(body, status_code=400)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        exc = cast(StarletteHTTPException, exc)
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code, "http_error"
        )
        message = {
            404: "no such endpoint",
            405: "method not allowed",
            413: "the request body is too large",
        }.get(exc.status_code, "request refused")
        body = error_body(request.url.path, exc.status_code, code, message)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", path=request.url.path, error=type(exc).__name__)
        body = error_body(request.url.path, 500, "internal", "internal error")
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(e.StrongroomError, strongroom_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
