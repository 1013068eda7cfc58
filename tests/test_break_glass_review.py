"""Break-glass reviews: each use opens a review that a second identity must acknowledge with a
note; overdue reviews are notified again, with escalation, through a real SMTP server and a real
webhook receiver. On SQLite and PostgreSQL, with the test's clock."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers_notify import Receiver, field_lines, http_receiver, smtp_server
from helpers_settings import DURABLE_STORES, PG_URL, new_master_key
from strongroom import (
    ConfigurationError,
    EmergencyRevoke,
    RevocationNotFoundError,
    RevocationRequest,
    RevocationStateError,
    SecretsAudit,
    SecretsManager,
    SeparationOfDutiesError,
    Settings,
    Strongroom,
    ValidationError,
    acting_as,
)
from strongroom.core.clock import ManualClock
from strongroom.services.notify import verify_signature
from strongroom.services.reports.collect import collect
from strongroom.services.revocation.reviews import SCHEDULER_ACTOR

KEY = secrets.token_bytes(32)
RECIPIENTS = ["sec@example.com"]


def glass(name: str, by: str = "erin", *, immediate: bool = True) -> RevocationRequest:
    return RevocationRequest(
        secret_name=name, reason="key_compromise", requested_by=by, severity="critical",
        notify_recipients=RECIPIENTS, immediate=immediate,
    )  # fmt: skip


@pytest.fixture(params=DURABLE_STORES)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgres":
        request.getfixturevalue("postgres_available")
    return name


def review_settings(backend: str, home: Path, schema: str, **env: str) -> Settings:
    return Settings(
        STRONGROOM_BACKEND=backend,
        STRONGROOM_HOME=home,
        DATABASE_URL=PG_URL,
        STRONGROOM_PG_SCHEMA=schema,
        STRONGROOM_MASTER_KEY=new_master_key(),
        STRONGROOM_SMTP_FROM="vault@example.com",
        **env,
    )


@pytest.fixture
async def schema(backend: str) -> AsyncIterator[str]:
    name = f"t_{secrets.token_hex(6)}"
    yield name
    if backend == "postgres":
        from helpers_settings import drop_schema

        await drop_schema(name)


async def review_events(app: Strongroom, name: str) -> list[dict[str, Any]]:
    rows = await SecretsAudit(app).get_audit_trail(name, "REVOKE", limit=100)
    return [
        r for r in reversed(rows) if str(r["details"].get("operation", "")).startswith("review.")
    ]


async def test_a_second_identity_answers_for_each_break_glass_use(
    backend: str, schema: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    app = await Strongroom.open(review_settings(backend, tmp_path, schema), clock=clock)
    try:
        await SecretsManager(app).create_secret("fleet-key", "v1")
        await SecretsManager(app).create_secret("calm-key", "v2")
        revoke = EmergencyRevoke(app)
        with acting_as("erin"):
            used = await revoke.request_revocation(glass("fleet-key"))
            plain = await revoke.request_revocation(glass("calm-key", immediate=False))
        rid = used["revocation_id"]
        assert used["status"] == "COMPLETED"
        (review,) = await revoke.list_break_glass_reviews()
        assert (review["revocation_id"], review["status"], review["used_by"]) == (
            rid,
            "OPEN",
            "erin",
        )
        assert (review["due_at"] - review["opened_at"]).total_seconds() == 24 * 3600  # default
        assert review["overdue"] is False
        status = await revoke.get_revocation_status(rid)
        assert (status["review_status"], status["review_due_at"], status["reviewed_by"]) == (
            "OPEN", review["due_at"], None,
        )  # fmt: skip
        assert "review_status" not in await revoke.get_revocation_status(plain["revocation_id"])

        with acting_as("erin"), pytest.raises(SeparationOfDutiesError) as own:
            await revoke.acknowledge_break_glass(rid, "ERIN", "checked it myself")
        assert "nobody acknowledges their own break-glass use" in str(own.value)
        with acting_as("ciso"), pytest.raises(ValidationError, match="with a note"):
            await revoke.acknowledge_break_glass(rid, "ciso", "   ")
        with pytest.raises(RevocationNotFoundError, match="no break-glass review"):
            await revoke.acknowledge_break_glass(plain["revocation_id"], "ciso", "n/a")
        assert [r["status"] for r in await revoke.list_break_glass_reviews()] == ["OPEN"]

        clock.advance(hours=2)
        with acting_as("ciso"):
            done = await revoke.acknowledge_break_glass(rid, "ciso", "leak confirmed in paste")
        assert (done["status"], done["acknowledged_by"], done["note"]) == (
            "ACKNOWLEDGED", "ciso", "leak confirmed in paste",
        )  # fmt: skip
        assert done["acknowledged_at"] == clock()
        status = await revoke.get_revocation_status(rid)
        assert (status["review_status"], status["reviewed_by"]) == ("ACKNOWLEDGED", "ciso")
        with acting_as("dana"), pytest.raises(RevocationStateError, match="already acknowledged"):
            await revoke.acknowledge_break_glass(rid, "dana", "me too")
        assert await revoke.list_break_glass_reviews() == []
        assert [
            r["revocation_id"] for r in await revoke.list_break_glass_reviews(open_only=False)
        ] == [rid]

        report = (await collect(app, "soc2", clock() - timedelta(days=1), clock()))["revocations"]
        assert report["break_glass_reviews"] == {"acknowledged": 1, "open": 0, "overdue": 0}
        (evidence,) = report["break_glass"]
        assert evidence["review"]["acknowledged_by"] == "ciso"

        trail = await review_events(app, "fleet-key")
        seen = [(e["details"]["operation"], e["result"], e["actor_id"]) for e in trail]
        assert seen == [
            ("review.open", "SUCCESS", "erin"),
            ("review.acknowledge", "FAILURE", "erin"),  # their own use
            ("review.acknowledge", "FAILURE", "ciso"),  # no note
            ("review.acknowledge", "SUCCESS", "ciso"),
            ("review.acknowledge", "FAILURE", "dana"),  # already acknowledged
        ]
        assert trail[1]["error_code"] == "denied"
        assert trail[3]["details"]["used_by"] == "erin"
    finally:
        await app.close()


async def test_overdue_reviews_are_notified_again_with_escalation(
    backend: str, schema: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    with smtp_server() as (mail, port):
        async with http_receiver() as hooks:
            env = {
                "STRONGROOM_SMTP_HOST": "127.0.0.1",
                "STRONGROOM_SMTP_PORT": str(port),
                "STRONGROOM_WEBHOOK_URLS": hooks.url(),
                "STRONGROOM_WEBHOOK_SIGNING_KEY": base64.b64encode(KEY).decode(),
                "STRONGROOM_WEBHOOK_ALLOW_LOOPBACK": "true",
                "STRONGROOM_BREAK_GLASS_REVIEW_HOURS": "1",
                "STRONGROOM_BREAK_GLASS_REMIND_MINUTES": "30",
                "STRONGROOM_BREAK_GLASS_ESCALATE_TO": "ciso@example.com",
            }
            app = await Strongroom.open(
                review_settings(backend, tmp_path, schema, **env), clock=clock
            )
            try:
                await run_overdue_script(app, clock, mail, hooks)
            finally:
                await app.close()


async def run_overdue_script(
    app: Strongroom, clock: ManualClock, mail: Any, hooks: Receiver
) -> None:
    value = f"CANARY-{secrets.token_hex(8)}"
    await SecretsManager(app).create_secret("radio-key", value)
    with acting_as("erin"):
        used = await EmergencyRevoke(app).request_revocation(glass("radio-key"))
    rid = used["revocation_id"]
    reviews = app.break_glass_reviews
    assert await reviews.escalate_overdue() == []  # not due yet
    opened = [m for m in range(len(mail.envelopes)) if "review" in mail.message(m)["Subject"]]
    assert len(opened) == 1
    assert mail.envelopes[opened[0]].rcpt_tos == RECIPIENTS
    before = len(mail.envelopes)

    clock.advance(minutes=61)
    # Two schedules sharing the store at once: the first notice goes out once.
    first = await asyncio.gather(reviews.escalate_overdue(), reviews.escalate_overdue())
    assert sum(len(f) for f in first) == 1
    assert await reviews.escalate_overdue() == []  # within the remind interval
    clock.advance(minutes=31)
    (second,) = await reviews.escalate_overdue()
    assert (second["escalations"], second["overdue"]) == (2, True)

    notices = [mail.message(i) for i in range(before, len(mail.envelopes))]
    assert [m["X-Strongroom-Event"] for m in notices] == ["revocation.review_overdue"] * 2
    assert notices[0]["Subject"].strip().startswith("[HIGH] ")
    assert notices[1]["Subject"].strip().startswith("[CRITICAL] ")
    assert mail.envelopes[before].rcpt_tos == RECIPIENTS
    assert mail.envelopes[before + 1].rcpt_tos == [*RECIPIENTS, "ciso@example.com"]
    fields = field_lines(notices[1])
    assert (fields["revocation_id"], fields["requested_by"], fields["escalation"]) == (
        str(rid), "erin", "2",
    )  # fmt: skip
    assert all(value.encode() not in mail.raw(i) for i in range(len(mail.envelopes)))

    overdue = [json.loads(r.body) for r in hooks.requests
               if r.headers["x-strongroom-event"] == "revocation.review_overdue"]  # fmt: skip
    assert [(o["priority"], o["fields"]["escalation"]) for o in overdue] == [
        ("high", 1), ("critical", 2),
    ]  # fmt: skip
    for r in hooks.requests:
        h = r.headers
        assert verify_signature(
            r.body, h["x-strongroom-timestamp"], h["x-strongroom-signature"], KEY,
            delivery_id=h["x-strongroom-delivery"],
        )  # fmt: skip
        assert value.encode() not in r.body

    trail = await review_events(app, "radio-key")
    escalations = [e for e in trail if e["details"]["operation"] == "review.overdue"]
    assert [(e["actor_id"], e["details"]["escalation"]) for e in escalations] == [
        (SCHEDULER_ACTOR, 1), (SCHEDULER_ACTOR, 2),
    ]  # fmt: skip

    with acting_as("ciso"):
        await EmergencyRevoke(app).acknowledge_break_glass(rid, "ciso", "late, but checked")
    clock.advance(hours=5)
    assert await reviews.escalate_overdue() == []  # acknowledged: no more notices


async def test_a_bad_escalation_address_fails_at_start(tmp_path: Path) -> None:
    bad = review_settings(
        "sqlite", tmp_path, "unused", STRONGROOM_BREAK_GLASS_ESCALATE_TO="x@y, no"
    )
    with pytest.raises(ConfigurationError, match="STRONGROOM_BREAK_GLASS_ESCALATE_TO"):
        await Strongroom.open(bad)
