"""``/v1/edge/journal``: edge sites ship their audit journals to the centre.

``GET`` answers the site's head (the last of its events stored here); ``POST`` sends the events
after it, oldest first. The site is the caller's authenticated identity, which needs
``edge-sync`` on ``*``. A batch that does not continue the site's chain is refused with 409
``edge_journal_broken`` (and alarmed); one already stored, with 409 ``edge_journal_stale``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, Field
from starlette.responses import Response

from strongroom.core.audit import AuditAction, AuditEvent, AuditResult
from strongroom.core.edge_journal import MAX_BATCH, JournalHead, ShippedEvent
from strongroom.core.policy import Action
from strongroom.server.context import authorize, services
from strongroom.server.jsonio import json_response
from strongroom.server.schemas import Strict, Text
from strongroom.services.audit.edge_intake import EdgeIntake

__all__ = ["router"]

router = APIRouter(prefix="/v1/edge", tags=["edge"])

Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Short = Annotated[Text | None, Field(default=None, max_length=1024)]


class JournalEventIn(Strict):
    seq: int = Field(ge=1)
    prev_hash: Hash
    chain_hash: Hash
    action: AuditAction
    resource_name: Annotated[Text | None, Field(max_length=256)] = None
    timestamp: AwareDatetime
    result: AuditResult
    actor_id: Annotated[Text, Field(max_length=256)]
    actor_ip: Annotated[Text | None, Field(max_length=64)] = None
    actor_user_agent: Annotated[Text | None, Field(max_length=512)] = None
    details: dict[str, Any] = Field(default_factory=dict)
    error_message: Short = None
    error_code: Annotated[Text | None, Field(max_length=64)] = None
    duration_ms: int | None = Field(default=None, ge=0, le=2**31 - 1)

    def shipped(self) -> ShippedEvent:
        fields = self.model_dump(exclude={"seq", "prev_hash", "chain_hash"})
        return ShippedEvent(
            seq=self.seq,
            prev_hash=bytes.fromhex(self.prev_hash),
            chain_hash=bytes.fromhex(self.chain_hash),
            event=AuditEvent.build(**fields),
        )


class JournalBatchIn(Strict):
    after_seq: int = Field(ge=0)
    after_hash: Hash
    events: list[JournalEventIn] = Field(min_length=1, max_length=MAX_BATCH)


class JournalHeadOut(BaseModel):
    site: str
    last_seq: int
    last_hash: str
    stored: int = 0


def _head(site: str, head: JournalHead, stored: int = 0) -> dict[str, Any]:
    return {"site": site, **head.to_dict(), "stored": stored}


@router.get("/journal", response_model=JournalHeadOut, summary="The site's journal head")
async def journal_head(request: Request) -> Response:
    caller = await authorize(request, Action.EDGE_SYNC, None)
    head = await EdgeIntake(services(request).app).head(caller.identity)
    return json_response(_head(caller.identity, head))


@router.post("/journal", response_model=JournalHeadOut, summary="Ship journal events")
async def journal_ship(request: Request, batch: JournalBatchIn) -> Response:
    caller = await authorize(request, Action.EDGE_SYNC, None)
    after = JournalHead(batch.after_seq, bytes.fromhex(batch.after_hash))
    stored, head = await EdgeIntake(services(request).app).receive(
        caller.identity, after, [e.shipped() for e in batch.events]
    )
    return json_response(_head(caller.identity, head, stored))
