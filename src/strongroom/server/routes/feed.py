"""``GET /v1/events/feed``: the change feed as Server-Sent Events.

Each event is ``id: <n>``, ``event: <kind>`` and ``data: {"id", "kind", "name", "version",
"at"}`` (never a value), filtered by the caller's policies (a secret it may read or list). A
client that reconnects with ``Last-Event-ID`` (or ``?after=``) gets every change after that id;
without one it starts at the present. A comment line every 15 seconds
(``STRONGROOM_FEED_HEARTBEAT_SECONDS``) keeps proxies from closing an idle stream and tells
edges the link is up.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import StreamingResponse

from strongroom.core.errors import ValidationError
from strongroom.core.policy import Action
from strongroom.server.context import authorize_listing, principal, services
from strongroom.services.access.control import Principal
from strongroom.services.events.feed import FeedEvent, FeedOverflow, feed_for

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"])

#: How long a client waits before reconnecting after the stream ends (the SSE ``retry:``).
RETRY_MS = 1000


def _visible(caller: Principal, event: FeedEvent) -> bool:
    return caller.may(Action.READ, event.name) or caller.may(Action.LIST, event.name)


def _frame(event: FeedEvent) -> bytes:
    data = json.dumps(event.to_dict(), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def _resume_point(header: str | None, after: int | None) -> int | None:
    if after is not None:
        return after
    if header is None or header == "":
        return None
    if not header.isdigit() or len(header) > 19:
        raise ValidationError("Last-Event-ID must be an event id (a whole number)")
    return int(header)


@router.get(
    "/feed",
    summary="The change feed (Server-Sent Events), resumable with Last-Event-ID",
    response_class=StreamingResponse,
)
async def feed(
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> StreamingResponse:
    caller = principal(request)
    if not (caller.holds(Action.READ) or caller.holds(Action.LIST)):
        await authorize_listing(request, Action.LIST)  # 403, audited
    start = _resume_point(last_event_id, after)
    app = services(request).app
    changes = feed_for(app)
    heartbeat = app.settings.feed_heartbeat_seconds

    async def stream() -> AsyncIterator[bytes]:
        yield f"retry: {RETRY_MS}\n: strongroom change feed\n\n".encode()
        try:
            async for event in changes.follow(start, heartbeat=heartbeat):
                if event is None:
                    yield b": keep-alive\n\n"
                elif _visible(caller, event):
                    yield _frame(event)
        except FeedOverflow:
            return  # the client resumes from the last id it saw

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
