"""Revocation notifications through real components, configured as an operator would
(STRONGROOM_SMTP_* and STRONGROOM_WEBHOOK_*): an aiosmtpd server and an asyncio HTTP receiver
on 127.0.0.1. People hear the secret's name, severity and reason, never its value; a receiver
that is down neither stops nor undoes a revocation, and its failure is kept with the request."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers_notify import Capture, Receiver, field_lines, free_port, http_receiver, smtp_server
from helpers_settings import new_master_key
from strongroom import (
    EmergencyRevoke,
    RevocationRequest,
    RotationConfig,
    SecretNotFoundError,
    SecretRevokedError,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    Settings,
    Strongroom,
    acting_as,
)
from strongroom.services.notify import verify_signature

KEY = secrets.token_bytes(32)
RECIPIENTS = ["sec@example.com", "oncall@example.com"]


def canary() -> str:
    return f"NOTIFY-CANARY-{secrets.token_hex(8)}"


def settings(home: Path, **env: str) -> Settings:
    return Settings(
        STRONGROOM_BACKEND="sqlite",
        STRONGROOM_HOME=home,
        STRONGROOM_MASTER_KEY=new_master_key(),
        STRONGROOM_SMTP_FROM="vault@example.com",
        **env,
    )


def webhook_env(url: str) -> dict[str, str]:
    return {
        "STRONGROOM_WEBHOOK_URLS": url,
        "STRONGROOM_WEBHOOK_SIGNING_KEY": base64.b64encode(KEY).decode(),
        "STRONGROOM_WEBHOOK_ALLOW_LOOPBACK": "true",
    }


def request(name: str, **options: Any) -> RevocationRequest:
    options = {
        "reason": "key_compromise",
        "requested_by": "alice",
        "severity": "critical",
        "description": "pasted in a public channel",
        "notify_recipients": RECIPIENTS,
        **options,
    }
    return RevocationRequest(secret_name=name, **options)


@pytest.fixture
def smtp() -> Iterator[tuple[Capture, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


async def open_app(config: Settings) -> Strongroom:
    return await Strongroom.open(config)


async def test_email_reaches_the_recipients_with_name_severity_reason_and_no_value(
    smtp: tuple[Capture, int], tmp_path: Path
) -> None:
    handler, port = smtp
    app = await open_app(
        settings(tmp_path, STRONGROOM_SMTP_HOST="127.0.0.1", STRONGROOM_SMTP_PORT=str(port))
    )
    try:
        manager = SecretsManager(app)
        value = canary()
        await manager.create_secret("fleet-db", value)
        status = await EmergencyRevoke(app).request_revocation(request("fleet-db", immediate=True))
        assert status["status"] == "COMPLETED"
        with pytest.raises(SecretRevokedError):
            await manager.get_secret("fleet-db")
    finally:
        await app.close()

    assert handler.envelopes, "no message reached the SMTP server"
    kinds = set()
    for index, envelope in enumerate(handler.envelopes):
        assert envelope.mail_from == "vault@example.com"
        assert envelope.rcpt_tos == RECIPIENTS
        assert value.encode() not in handler.raw(index)
        msg = handler.message(index)
        assert msg["Subject"].startswith("[CRITICAL] ")
        assert "fleet-db" in msg["Subject"]
        fields = field_lines(msg)
        assert fields["secret_name"] == "fleet-db"
        assert fields["severity"] == "critical"
        assert fields["reason"] == "key_compromise"
        assert fields["revocation_id"] == str(status["revocation_id"])
        assert fields["requested_by"] == "alice"
        assert fields["break_glass"] == "true"
        kinds.add(msg["X-Strongroom-Event"])
    assert "revocation.completed" in kinds

    emails = [d for d in status["deliveries"] if d["channel"] == "email"]
    assert emails, status["deliveries"]
    assert {d["target"] for d in emails} == set(RECIPIENTS)
    assert all(d["ok"] and d["status"] == "250" for d in emails)


async def test_each_step_of_an_approval_is_mailed(
    smtp: tuple[Capture, int], tmp_path: Path
) -> None:
    handler, port = smtp
    app = await open_app(
        settings(tmp_path, STRONGROOM_SMTP_HOST="127.0.0.1", STRONGROOM_SMTP_PORT=str(port))
    )
    try:
        manager = SecretsManager(app)
        value = canary()
        await manager.create_secret("billing-api", value)
        revoke = EmergencyRevoke(app)
        pending = await revoke.request_revocation(request("billing-api", severity="medium"))
        (first,) = handler.envelopes
        msg = handler.message(0)
        assert msg["X-Strongroom-Event"] == "revocation.requested"
        assert msg["Subject"] == "strongroom: revocation of billing-api pending"  # normal
        assert field_lines(msg)["severity"] == "medium"
        assert field_lines(msg)["status"] == "PENDING"
        await revoke.approve_revocation(pending["revocation_id"], "bob")
        events = [handler.message(i)["X-Strongroom-Event"] for i in range(len(handler.envelopes))]
        # The last approval revokes first, then tells: completed before approved.
        assert events == ["revocation.requested", "revocation.completed", "revocation.approved"]
        assert field_lines(handler.message(2))["approved_by"] == "bob"
        assert all(value.encode() not in handler.raw(i) for i in range(3))
        status = await revoke.get_revocation_status(pending["revocation_id"])
        assert [d["kind"] for d in status["deliveries"] if d["channel"] == "email"] == [
            "revocation.requested",
            "revocation.requested",
            "revocation.completed",
            "revocation.completed",
            "revocation.approved",
            "revocation.approved",
        ]
        assert first.rcpt_tos == RECIPIENTS
    finally:
        await app.close()


async def test_webhook_reaches_the_receiver_signed(receiver: Receiver, tmp_path: Path) -> None:
    app = await open_app(settings(tmp_path, **webhook_env(receiver.url("/hook"))))
    try:
        manager = SecretsManager(app)
        value = canary()
        await manager.create_secret("fleet-db", value)
        status = await EmergencyRevoke(app).request_revocation(
            request("fleet-db", immediate=True, notify_recipients=[])
        )
        assert status["status"] == "COMPLETED"
    finally:
        await app.close()

    assert receiver.requests, "no webhook reached the receiver"
    kinds = []
    for req in receiver.requests:
        assert req.path == "/hook"
        h = req.headers
        assert verify_signature(
            req.body,
            h["x-strongroom-timestamp"],
            h["x-strongroom-signature"],
            KEY,
            delivery_id=h["x-strongroom-delivery"],
        )
        assert not verify_signature(
            req.body,
            h["x-strongroom-timestamp"],
            h["x-strongroom-signature"],
            b"k" * 32,
            delivery_id=h["x-strongroom-delivery"],
        )
        assert value.encode() not in req.body
        payload = json.loads(req.body)
        assert payload["kind"] == h["x-strongroom-event"]
        assert payload["fields"]["secret_name"] == "fleet-db"
        assert payload["fields"]["severity"] == "critical"
        assert payload["fields"]["reason"] == "key_compromise"
        assert payload["fields"]["revocation_id"] == status["revocation_id"]
        kinds.append(payload["kind"])
    assert "revocation.completed" in kinds
    hooks = [d for d in status["deliveries"] if d["channel"] == "webhook"]
    assert hooks
    assert all(d["ok"] and d["target"] == receiver.url("/hook") for d in hooks)


async def test_receivers_down_do_not_stop_the_revocation_and_failures_are_recorded(
    tmp_path: Path,
) -> None:
    closed = free_port()
    app = await open_app(
        settings(
            tmp_path,
            STRONGROOM_SMTP_HOST="127.0.0.1",
            STRONGROOM_SMTP_PORT=str(free_port()),
            **webhook_env(f"http://127.0.0.1:{closed}/hook"),
        )
    )
    try:
        manager = SecretsManager(app)
        await manager.create_secret("fleet-db", canary())
        revoke = EmergencyRevoke(app)
        status = await revoke.request_revocation(request("fleet-db", immediate=True))
        assert status["status"] == "COMPLETED"
        with pytest.raises(SecretRevokedError):
            await manager.get_secret("fleet-db")
        stored = await revoke.get_revocation_status(status["revocation_id"])
    finally:
        await app.close()

    deliveries = stored["deliveries"]
    hooks = [d for d in deliveries if d["channel"] == "webhook"]
    emails = [d for d in deliveries if d["channel"] == "email"]
    logs = [d for d in deliveries if d["channel"] == "log"]
    assert hooks
    assert all(d["ok"] is False for d in hooks)
    assert all(d["status"] == "ConnectError" and d["attempts"] > 1 for d in hooks)
    assert all(d["target"] == f"http://127.0.0.1:{closed}/hook" for d in hooks)
    assert emails
    assert all(d["ok"] is False and d["target"] in RECIPIENTS for d in emails)
    assert logs
    assert all(d["ok"] for d in logs)
    assert {d["kind"] for d in hooks} >= {"revocation.completed"}


async def test_the_last_approval_revokes_before_anyone_is_told(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The dispatcher's contract is that revocation notifies *after* it has acted, so a slow or
    hanging receiver cannot hold a revocation back. While the "approved" webhook is still in
    flight the secret must already be unreadable."""
    receiver.hold = {"revocation.approved"}
    app = await open_app(settings(tmp_path, **webhook_env(receiver.url("/hook"))))
    task: asyncio.Task[dict[str, Any]] | None = None
    try:
        manager = SecretsManager(app)
        await manager.create_secret("fleet-db", canary())
        revoke = EmergencyRevoke(app)
        pending = await revoke.request_revocation(request("fleet-db", notify_recipients=[]))
        task = asyncio.get_running_loop().create_task(
            revoke.approve_revocation(pending["revocation_id"], "bob")
        )
        async with asyncio.timeout(5):
            await receiver.held.wait()
        with pytest.raises(SecretRevokedError):
            await manager.get_secret("fleet-db")
    finally:
        receiver.release.set()
        if task is not None:
            done = await task
            assert done["status"] == "COMPLETED"
        await app.close()


async def test_detected_threats_and_failed_rotations_reach_people(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The seed's alert triggers: suspicious activity and a failed rotation are sent through
    the notifiers (here a signed webhook) without anyone asking for it."""
    app = await open_app(settings(tmp_path, **webhook_env(receiver.url("/hook"))))
    try:
        manager = SecretsManager(app)
        with acting_as("mallory", ip="203.0.113.9"):
            for n in range(6):
                with pytest.raises(SecretNotFoundError):
                    await manager.get_secret(f"guess-{n}")
        found = await SecretsAudit(app).detect_suspicious_activity(failure_threshold=5)
        assert found["threats_detected"] >= 1
        alerted = await SecretsAudit(app).run_threat_detection()  # what the schedule does
        assert len(alerted) == found["threats_detected"]

        def broken(_name: str) -> str:
            raise RuntimeError("generator offline")

        rotation = SecretsRotation(app)
        await rotation.register_secret(RotationConfig(name="billing-key", rotation_callback=broken))
        outcome = await rotation.run_check()
        assert outcome["failed"] == ["billing-key"]
        await app.notifier.drain()
    finally:
        await app.close()

    payloads = {}
    for req in receiver.requests:
        h = req.headers
        assert verify_signature(
            req.body,
            h["x-strongroom-timestamp"],
            h["x-strongroom-signature"],
            KEY,
            delivery_id=h["x-strongroom-delivery"],
        )
        payload = json.loads(req.body)
        payloads[payload["kind"]] = payload
    threat = payloads["threat.detected"]
    assert threat["fields"]["threats_detected"] == found["threats_detected"]
    assert "failure_burst_actor" in threat["fields"]["types"]
    failed = payloads["rotation.failed"]
    assert failed["fields"]["secret_name"] == "billing-key"
    assert "generator offline" not in json.dumps(failed)


async def test_reading_threats_never_notifies_and_the_schedule_alerts_once(
    receiver: Receiver, tmp_path: Path
) -> None:
    """Twenty reads of ``GET /v1/audit/threats`` while a threat stands send nothing; the
    detection schedule alerts on it once, however many times it runs, and again only for a
    threat it has not seen."""
    from helpers_serve import serve

    app = await open_app(settings(tmp_path, **webhook_env(receiver.url("/hook"))))
    try:
        manager = SecretsManager(app)
        with acting_as("mallory", ip="203.0.113.9"):
            for n in range(6):
                with pytest.raises(SecretNotFoundError):
                    await manager.get_secret(f"guess-{n}")
        async with serve(app) as served, served.admin() as c:
            for _ in range(20):
                found = await c.get("/v1/audit/threats")
                assert found.json()["threats_detected"] >= 1
        await app.notifier.drain()
        assert receiver.requests == []

        audit = SecretsAudit(app)
        first = await audit.run_threat_detection()
        assert first
        assert await audit.run_threat_detection() == []
        with acting_as("eve", ip="198.51.100.7"):
            for n in range(6):
                with pytest.raises(SecretNotFoundError):
                    await manager.get_secret(f"probe-{n}")
        newer = await audit.run_threat_detection()
        assert newer
        assert {t["actor_id"] for t in newer} == {"eve"}
        await app.notifier.drain()
    finally:
        await app.close()
    kinds = [json.loads(r.body)["kind"] for r in receiver.requests]
    assert kinds == ["threat.detected", "threat.detected"]
