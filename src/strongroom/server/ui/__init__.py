"""The security team's console at ``/ui/``: server-rendered pages, htmx, SVG charts.

Every page answers the same authorization question as the API and runs as the signed-in
identity; nothing is loaded from anywhere but this server (strict CSP, no inline script or
style).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from strongroom.server.ui import routes_audit, routes_auth, routes_ops, routes_secrets
from strongroom.server.ui.snapshots import Snapshots

__all__ = ["install_console"]


def install_console(api: FastAPI) -> None:
    """Add the console's routes and its static files (htmx, the stylesheet) to ``api``."""
    # The inventory's listing is refreshed every few seconds; threat rules and analytics,
    # which read a window of the audit log, once a minute.
    api.state.console_snapshots = {
        "inventory": Snapshots(5.0),
        "threats": Snapshots(60.0),
        "analytics": Snapshots(60.0),
    }

    @api.get("/ui", include_in_schema=False)
    async def _root() -> Response:
        return RedirectResponse("/ui/", status_code=308)

    for module in (routes_auth, routes_secrets, routes_audit, routes_ops):
        api.include_router(module.router)
    api.mount(
        "/ui/static",
        StaticFiles(packages=[("strongroom.server.ui", "static")]),
        name="ui-static",
    )
