"""Errors as HTTP answers: one status per error class, and the two body shapes.

Native ``/v1`` answers ``{"error": {"code", "message"}}`` with strongroom's own codes; the Key
Vault-compatible paths answer Key Vault's codes (``SecretNotFound``, ``Conflict`` with inner
``ObjectIsDeletedButRecoverable``, ``Forbidden``/``ForbiddenByRbac``, ``BadParameter``...).
Messages are those of strongroom's errors, which never carry a value; anything unexpected
becomes a bare 500 with no detail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from strongroom.core import errors as e
from strongroom.core.logging import get_logger

__all__ = [
    "RETRY_AFTER_SECONDS",
    "describe_validation_errors",
    "error_body",
    "install_error_handlers",
    "is_keyvault_path",
    "is_store_fault",
    "status_for",
]

log = get_logger("strongroom.http")

_KV_PREFIXES = ("/secrets", "/deletedsecrets", "/keys")
#: What a 503 asks clients to wait: stores and the audit log recover by themselves, in seconds.
RETRY_AFTER_SECONDS = 1
# Drivers whose errors mean a store failed us (an untranslated one is still an outage).
_DRIVER_MODULES = ("asyncpg", "sqlite3", "_sqlite3")

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
    (e.SecretNotDeletedError, 409),
    (e.RevocationStateError, 409),
    (e.DuplicateShareError, 409),
    (e.ShareError, 400),
    (e.UnwrapError, 400),
    (e.UnsupportedError, 501),
    (e.CustodyError, 409),
    (e.SealedError, 503),
    (e.RotationTargetError, 502),
    (e.RotationFailedError, 409),
    (e.SecretNotFoundError, 404),
    (e.RevocationNotFoundError, 404),
    (e.AccessObjectNotFoundError, 404),
    (e.EdgeReadOnlyError, 405),
    (e.EdgeJournalBrokenError, 409),
    (e.EdgeJournalStaleError, 409),
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
    501: "NotImplemented",
    502: "BadGateway",
    503: "ServiceUnavailable",
}


def is_keyvault_path(path: str) -> bool:
    return path.startswith(_KV_PREFIXES)


def is_store_fault(error: BaseException) -> bool:
    """True for a driver's or the OS's error that no store translated: an outage, not a bug."""
    if isinstance(error, OSError):
        return True
    return type(error).__module__.split(".", 1)[0] in _DRIVER_MODULES


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
        kv_code = _KV_CODES.get(status, "Error")
        if status == 404 and path.startswith("/keys"):
            kv_code = "KeyNotFound"
        body: dict[str, Any] = {"code": kv_code, "message": message}
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
    if isinstance(error, e.KeyDisabledError):
        return "KeyDisabled"
    if isinstance(error, e.SecretExpiredError):
        return "SecretExpired"
    if isinstance(error, e.SecretNotYetValidError):
        return "SecretNotYetValid"
    if isinstance(error, e.SecretRevokedError):
        return "SecretRevoked"
    return None


def error_response(request: Request, error: e.StrongroomError) -> JSONResponse:
    status = status_for(error)
    if isinstance(error, e.SecretNotDeletedError) and is_keyvault_path(request.url.path):
        status = 404  # Key Vault: the deleted secret is not found
    if status >= 500:
        log.error("request failed", path=request.url.path, code=error.code)
    message = str(error) if status < 500 or status in (501, 502, 503) else "internal error"
    body = error_body(request.url.path, status, error.code, message, inner=_kv_inner(error))
    if isinstance(error, e.PermissionDeniedError) and not is_keyvault_path(request.url.path):
        body["error"]["policies"] = list(error.policies)  # the ones that did not allow it
    headers = {}
    if isinstance(error, e.RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    elif status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return JSONResponse(body, status_code=status, headers=headers)


_WHERE = {"query": "query parameter", "path": "in the path", "header": "header"}
_KINDS = {
    "string_type": "text",
    "dict_type": "an object",
    "list_type": "a list",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "float_type": "a number",
    "datetime_type": "a date-time",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


_TAG_NAMES = frozenset(
    {"str", "int", "float", "bool", "bytes", "list", "dict", "tuple", "set", "none", "datetime"}
)
_TAG_PREFIXES = ("constrained-", "function-", "lax-or-strict", "json-or-python", "tagged-union")


def _is_union_tag(part: str) -> bool:
    """pydantic names the member of a union a value failed (``constrained-str``,
    ``dict[str,any]``) in the error's location; those are not field names."""
    return "[" in part or part in _TAG_NAMES or part.startswith(_TAG_PREFIXES)


def _field(loc: Sequence[Any]) -> str:
    """``("body", "value", "constrained-str")`` -> ``value``; ``("body", "grants", 1)`` ->
    ``grants[1]``; ``("query", "limit")`` -> ``limit (query parameter)``; the body itself (or
    a position in JSON that does not parse) -> ``the request body``."""
    where, *rest = loc or ("body",)
    field = ""
    for part in rest:
        if isinstance(part, int) and field:
            field += f"[{part}]"
        elif isinstance(part, str) and not _is_union_tag(part):
            field += f".{part}" if field else part
    if not field:
        return "the request body" if where == "body" else str(where)
    return f"{field} ({_WHERE[where]})" if where in _WHERE else field


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """Which fields are wrong and why, in words; never the input (it may be a value).

    A field that fails every member of a union (a value that may be text, an object or a
    list) is described once: the specific failure if one member came close, else the types
    it may have."""
    by_field: dict[str, list[Any]] = {}
    for err in errors:
        by_field.setdefault(_field(err.get("loc", ())), []).append(err)
    parts = []
    for field, errs in by_field.items():
        specific = [err for err in errs if err.get("type") not in _KINDS]
        if specific or len(errs) == 1:
            reason = str((specific or errs)[0].get("msg", "is invalid"))
            if len(errs) == 1 and errs[0].get("type") in _KINDS:
                reason = f"must be {_KINDS[errs[0]['type']]}"
        else:
            kinds = list(dict.fromkeys(_KINDS[err["type"]] for err in errs))
            reason = "must be " + " or ".join(kinds)
        parts.append(f"{field}: {reason[:1].lower()}{reason[1:]}")
    return ("invalid request: " + "; ".join(parts))[:1000]


def install_error_handlers(app: FastAPI) -> None:
    async def strongroom_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, cast(e.StrongroomError, exc))

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        exc = cast(RequestValidationError, exc)
        message = describe_validation_errors(exc.errors())
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
