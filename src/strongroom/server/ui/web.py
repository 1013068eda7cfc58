"""What every console page shares: the session, CSRF and origin checks, the acting identity,
templates, and errors rendered as pages.

A page handler is wrapped by :func:`page`: the session cookie is resumed (else a redirect to
sign-in), the principal is put where the API's helpers look for it (so pages answer the same
authorization question as the API), every call runs as that identity from the client's address,
and a state-changing request must come from this origin and carry the session's CSRF token.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from fastapi import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from strongroom import __version__
from strongroom.core.actor import acting_as
from strongroom.core.errors import AuthenticationError, PermissionDeniedError, StrongroomError
from strongroom.core.logging import get_logger
from strongroom.core.policy import Action
from strongroom.server.context import Services, services
from strongroom.server.errors import status_for
from strongroom.server.guard import CLIENT_KEY, PRINCIPAL_KEY
from strongroom.server.ui.sessions import COOKIE, Session, resume_session
from strongroom.server.ui.snapshots import Snapshots
from strongroom.services.access.control import Principal

__all__ = ["Console", "form", "page", "render", "same_origin"]

log = get_logger("strongroom.ui")
P = ParamSpec("P")
MAX_FORM_BYTES = 16_384

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("strongroom.server.ui", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

NAV = (
    ("overview", "/ui/", "Overview"),
    ("secrets", "/ui/secrets", "Inventory"),
    ("audit", "/ui/audit", "Audit"),
    ("threats", "/ui/threats", "Threats"),
    ("revocations", "/ui/revocations", "Revocations"),
    ("rotation", "/ui/rotation", "Rotation"),
    ("analytics", "/ui/analytics", "Analytics"),
    ("reports", "/ui/reports", "Reports"),
)


@dataclass(frozen=True, slots=True)
class Console:
    """One request's view of the console: who, from where, and the services."""

    request: Request
    session: Session
    services: Services

    def snapshots(self, kind: str) -> Snapshots:
        found: Snapshots = self.request.app.state.console_snapshots[kind]
        return found

    @property
    def principal(self) -> Principal:
        return self.session.principal

    def may(self, action: Action, name: str | None) -> bool:
        return self.principal.may(action, name)

    async def require(self, action: Action, name: str | None) -> None:
        """Refuse (403, audited as the API audits it) unless the policies allow ``action``."""
        await self.services.app.access.require(self.principal, action, name)


def _client(request: Request) -> tuple[str | None, str | None]:
    found = request.scope.get(CLIENT_KEY)
    return found if isinstance(found, tuple) else (None, None)


def same_origin(request: Request) -> bool:
    """A state-changing request must come from a page of this server: the browser's
    Sec-Fetch-Site where it sends one, else Origin, else Referer."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("origin")
    source = origin if origin and origin != "null" else request.headers.get("referer")
    if not source:
        return False
    parts = urlsplit(source)
    return bool(parts.netloc) and parts.netloc == request.headers.get("host")


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form (first value of each field), at most 16 KiB."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items() if v}


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    ui: Console | None = None,
    active: str = "",
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        ui=ui,
        identity=ui.principal.identity if ui else None,
        csrf=ui.session.csrf if ui else "",
        nav=NAV,
        active=active,
        app_version=__version__,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=headers)


def _error_page(request: Request, ui: Console | None, error: StrongroomError) -> Response:
    status = status_for(error)
    if isinstance(error, PermissionDeniedError):
        message = "Your policies do not allow this. The attempt was recorded in the audit log."
    else:
        message = str(error)
    return render(request, "error.html", status=status, ui=ui, message=message, code=error.code)


def _to_sign_in(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/ui/signin?next={quote(target, safe='')}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def page(
    handler: Callable[..., Awaitable[Response]],
) -> Callable[..., Awaitable[Response]]:
    """Wrap a console handler (its first parameter is the request; ``ui(request)`` gives the
    :class:`Console`)."""

    @functools.wraps(handler)
    async def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
        svc = services(request)
        try:
            session = await resume_session(svc.app, request.cookies.get(COOKIE))
        except AuthenticationError:
            return _to_sign_in(request)
        ui = Console(request=request, session=session, services=svc)
        request.scope[PRINCIPAL_KEY] = session.principal
        request.state.console = ui
        ip, user_agent = _client(request)
        if request.method not in ("GET", "HEAD"):
            token = request.headers.get("x-csrf-token") or (await form(request)).get("csrf")
            if not same_origin(request) or not session.csrf_ok(token):
                return render(request, "error.html", status=403, ui=ui, code="csrf",
                              message="This form expired or came from another site; reload "
                              "the page and try again.")  # fmt: skip
        auth = {**session.principal.auth, "via": "console"}  # the token the session came from
        with acting_as(session.principal.identity, ip=ip, user_agent=user_agent, auth=auth):
            try:
                return await handler(request, *args, **kwargs)
            except StrongroomError as exc:
                return _error_page(request, ui, exc)

    return wrapped


def ui(request: Request) -> Console:
    found: Console = request.state.console
    return found
