"""``/v1/events/subscriptions``: webhook subscriptions over HTTP (what ``strongroom events``
does locally), so remote clients and the remote profile's ``EventSubscriptions`` can use them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from strongroom.core.errors import AccessObjectNotFoundError
from strongroom.core.policy import Action
from strongroom.server.context import authorize, services
from strongroom.server.jsonio import json_response
from strongroom.services.events.subscriptions import EventSubscriptions

__all__ = ["router"]

router = APIRouter(prefix="/v1/events", tags=["events"])
Obj = dict[str, Any]
SubscriptionId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    pattern: str = Field(default="*", min_length=1, max_length=127)
    events: list[str] | None = Field(default=None, max_length=32)


class ExpiryCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warning_days: int | None = Field(default=None, ge=1, le=365)


def _subscriptions(request: Request) -> EventSubscriptions:
    return EventSubscriptions(services(request).app)


@router.post("/subscriptions", status_code=201, response_model=Obj, summary="Subscribe a webhook")
async def subscribe(request: Request, body: SubscriptionIn) -> Response:
    """Admin only: a subscription sends events about every matching secret to its URL. The
    answer carries the signing key, shown this once."""
    await authorize(request, Action.ADMIN, None)
    found = await _subscriptions(request).subscribe(body.url, body.pattern, body.events)
    return json_response(found, 201)


@router.get("/subscriptions", response_model=list[Obj], summary="Subscriptions (never keys)")
async def list_subscriptions(request: Request) -> Response:
    await authorize(request, Action.ADMIN, None)
    return json_response(await _subscriptions(request).list_subscriptions())


@router.delete("/subscriptions/{subscription_id}", status_code=204, summary="Unsubscribe")
async def unsubscribe(request: Request, subscription_id: SubscriptionId) -> Response:
    await authorize(request, Action.ADMIN, None)
    if not await _subscriptions(request).unsubscribe(subscription_id):
        raise AccessObjectNotFoundError(f"no event subscription {subscription_id}")
    return Response(status_code=204)


@router.post("/check-expiry", response_model=Obj, summary="Send near-expiry notices now")
async def check_expiry(request: Request, body: ExpiryCheckIn | None = None) -> Response:
    await authorize(request, Action.ADMIN, None)
    days = body.warning_days if body is not None else None
    sent = await _subscriptions(request).check_expiry(warning_days=days)
    return json_response({"events": sent})
