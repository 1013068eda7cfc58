"""Sign-in and sign-out. A sign-in is audited (AUTHENTICATE, success or failure) and failed
attempts are limited per client address like the API's."""

from __future__ import annotations

import secrets
import time
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from strongroom.core.actor import acting_as
from strongroom.core.audit import AuditAction
from strongroom.core.errors import AuthenticationError
from strongroom.core.ratelimit import RateLimiter
from strongroom.server.context import services
from strongroom.server.ui.sessions import COOKIE, METHODS, end_session, start_session
from strongroom.server.ui.web import form, render, same_origin

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)
LOGIN_COOKIE = "__Host-strongroom-signin"
_FAILURES = RateLimiter(2.0, 20)


def _next(target: str | None) -> str:
    """Only a console path: never another site (an open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


def _cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict"
    )


@router.get("/signin")
async def signin_form(request: Request, next: str | None = None) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(request, "signin.html", nonce=nonce, next=_next(next),
                      methods=sorted(METHODS), error=None)  # fmt: skip
    _cookie(response, LOGIN_COOKIE, nonce, max_age=900)
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    app = services(request).app
    fields = await form(request)
    target = _next(fields.get("next"))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    given = fields.get("nonce", "")
    if not same_origin(request) or not nonce or not secrets.compare_digest(nonce, given):
        return render(request, "signin.html", status=403, nonce=nonce, next=target,
                      methods=sorted(METHODS),
                      error="The sign-in form expired; try again.")  # fmt: skip
    method = METHODS.get(fields.get("method", "token"))
    ip = request.scope.get("strongroom.client", (None, None))[0]
    try:
        if method is None:
            raise AuthenticationError("unknown sign-in method")
        if _FAILURES.peek(f"ip:{ip}", time.monotonic()) > 0:
            raise AuthenticationError("too many failed sign-ins from this address; wait a minute")
        async with app.audit.operation(
            AuditAction.AUTHENTICATE, None, method="console", path="/ui/signin"
        ) as op:
            principal = await method.sign_in(app, fields)
            op.details.update(identity=principal.identity, token_id=principal.token_id)
    except AuthenticationError as exc:
        _FAILURES.take(f"ip:{ip}", time.monotonic())
        app.metrics.inc("unauthorized_attempts_total", reason="bad_token")
        return render(request, "signin.html", status=401, nonce=nonce, next=target,
                      methods=sorted(METHODS), error=str(exc))  # fmt: skip
    with acting_as(principal.identity):
        session_id = await start_session(app, method, principal)
    response = RedirectResponse(target, status_code=303)
    _cookie(response, COOKIE, session_id)
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    if same_origin(request):
        await end_session(services(request).app, request.cookies.get(COOKIE))
    response = RedirectResponse(f"/ui/signin?next={quote('/ui/')}", status_code=303)
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response
