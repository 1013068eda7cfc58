"""Event subscriptions on SQLite and PostgreSQL, delivered to a real HTTP receiver on 127.0.0.1
(allowed by STRONGROOM_WEBHOOK_ALLOW_LOOPBACK): signed per subscription, filtered by name
pattern and event kind, expiry notices sent once, unsafe targets refused."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpers_notify import Receiver, Request, http_receiver
from strongroom import (
    EmergencyRevoke,
    EventSubscriptions,
    RevocationRequest,
    RotationConfig,
    SecretsManager,
    SecretsRotation,
    Settings,
    Strongroom,
    ValidationError,
    acting_as,
)
from strongroom.core.clock import ManualClock
from strongroom.services.notify import verify_signature

pytestmark = pytest.mark.stores("sqlite", "postgres")


def canary() -> str:
    return f"EVENT-CANARY-{secrets.token_hex(8)}"


@pytest.fixture
def loopback_settings(store_settings: Settings) -> Settings:
    return store_settings.model_copy(update={"webhook_allow_loopback": True})


@pytest.fixture
async def events_app(loopback_settings: Settings, clock: ManualClock) -> AsyncIterator[Strongroom]:
    instance = await Strongroom.open(loopback_settings, clock=clock)
    yield instance
    await instance.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


def key_of(subscription: dict[str, Any]) -> bytes:
    key = base64.b64decode(subscription["signing_key"], validate=True)
    assert len(key) >= 32
    return key


def signed_by(req: Request, key: bytes, clock: ManualClock) -> bool:
    h = req.headers
    return verify_signature(
        req.body,
        h["x-strongroom-timestamp"],
        h["x-strongroom-signature"],
        key,
        delivery_id=h["x-strongroom-delivery"],
        now=clock(),
    )


def received(receiver: Receiver, path: str | None = None) -> list[tuple[str, str]]:
    """(kind, secret name) of each request to ``path``, sorted (deliveries run concurrently)."""
    out = []
    for req in receiver.requests:
        if path is None or req.path == path:
            payload = json.loads(req.body)
            assert payload["kind"] == req.headers["x-strongroom-event"]
            out.append((payload["kind"], payload["fields"]["secret_name"]))
    return sorted(out)


async def test_a_subscriber_receives_signed_events_for_update_rotation_and_revocation(
    events_app: Strongroom, receiver: Receiver, clock: ManualClock
) -> None:
    subs = EventSubscriptions(events_app)
    manager = SecretsManager(events_app)
    with acting_as("billing-team"):
        first = await subs.subscribe(receiver.url("/a"), "billing-*")
    second = await subs.subscribe(receiver.url("/b"), "billing-*", ["secret.revoked"])
    assert first["url"] == receiver.url("/a")
    assert first["pattern"] == "billing-*"
    assert set(first["events"]) >= {"secret.updated", "secret.rotated", "secret.revoked"}
    assert second["events"] == ["secret.revoked"]
    assert first["signing_key"] != second["signing_key"]

    values = [canary(), canary()]
    await manager.create_secret("billing-api", values[0])
    updated = await manager.update_secret("billing-api", values[1])
    await SecretsRotation(events_app).register_secret(
        RotationConfig(name="billing-api", generator="api_key")
    )
    rotated = await SecretsRotation(events_app).rotate_secret("billing-api", force=True)
    assert rotated["rotated"]
    values.append(await manager.get_secret("billing-api"))
    revoked = await EmergencyRevoke(events_app).request_revocation(
        RevocationRequest("billing-api", "key_compromise", "alice", immediate=True)
    )
    await events_app.events.drain()

    assert received(receiver, "/a") == [
        ("secret.created", "billing-api"),
        ("secret.revoked", "billing-api"),
        ("secret.rotated", "billing-api"),
        ("secret.updated", "billing-api"),
    ]
    assert received(receiver, "/b") == [("secret.revoked", "billing-api")]
    keys = {"/a": key_of(first), "/b": key_of(second)}
    for req in receiver.requests:
        assert signed_by(req, keys[req.path], clock)
        other = keys["/b" if req.path == "/a" else "/a"]
        assert not signed_by(req, other, clock)  # each subscription has its own key
        assert all(v.encode() not in req.body for v in values)
        assert req.headers["user-agent"] == "strongroom-webhook/1"
    by_kind = {
        json.loads(r.body)["kind"]: json.loads(r.body)["fields"]
        for r in receiver.requests
        if r.path == "/a"
    }
    assert by_kind["secret.updated"]["version"] == updated["version"]
    assert by_kind["secret.rotated"]["version"] == rotated["version"]
    assert by_kind["secret.revoked"]["revocation_id"] == revoked["revocation_id"]
    assert by_kind["secret.revoked"]["versions_revoked"] == 3
    assert all(d["ok"] for d in events_app.events.delivered)

    listed = await subs.list_subscriptions()
    assert [(s["id"], s["url"], s["pattern"]) for s in listed] == [
        (first["id"], receiver.url("/a"), "billing-*"),
        (second["id"], receiver.url("/b"), "billing-*"),
    ]
    assert listed[0]["created_by"] == "billing-team"
    assert all("signing_key" not in s for s in listed)  # shown once, at subscribe


async def test_near_expiry_is_sent_once_then_expired_once(
    events_app: Strongroom, receiver: Receiver, clock: ManualClock
) -> None:
    subs = EventSubscriptions(events_app)
    manager = SecretsManager(events_app)
    sub = await subs.subscribe(receiver.url(), "*", ["secret.near_expiry", "secret.expired"])
    soon = await manager.create_secret("billing-cert", canary(), expires_in_days=10)
    await manager.create_secret("billing-later", canary(), expires_in_days=300)
    await manager.create_secret("billing-never", canary())

    assert await subs.check_expiry() == 1
    await events_app.events.drain()
    assert received(receiver) == [("secret.near_expiry", "billing-cert")]
    (notice,) = receiver.requests
    assert signed_by(notice, key_of(sub), clock)
    fields = json.loads(notice.body)["fields"]
    assert fields["version"] == soon["version"]
    assert fields["expires_at"] == soon["expires_at"].isoformat()

    clock.advance(days=1)
    assert await subs.check_expiry() == 0  # sent once per version
    await events_app.events.drain()
    assert len(receiver.requests) == 1

    clock.advance(days=10)  # past the expiry
    assert await subs.check_expiry() == 1
    await events_app.events.drain()
    assert received(receiver) == [
        ("secret.expired", "billing-cert"),
        ("secret.near_expiry", "billing-cert"),
    ]
    assert all(signed_by(r, key_of(sub), clock) for r in receiver.requests[1:])
    assert await subs.check_expiry() == 0
    await events_app.events.drain()
    assert len(receiver.requests) == 2


async def test_patterns_and_event_kinds_filter_what_a_subscriber_hears(
    events_app: Strongroom, receiver: Receiver
) -> None:
    subs = EventSubscriptions(events_app)
    manager = SecretsManager(events_app)
    billing = await subs.subscribe(receiver.url("/billing"), "Billing-*")
    assert billing["pattern"] == "billing-*"
    await subs.subscribe(receiver.url("/revoked"), "*", ["secret.revoked"])
    await subs.subscribe(receiver.url("/updates"), "fleet-?b", ["secret.updated"])

    await manager.create_secret("fleet-db", canary())
    await manager.create_secret("BILLING-Invoices", canary())
    await manager.update_secret("fleet-db", canary())
    await manager.update_secret("billing-invoices", canary())
    await EmergencyRevoke(events_app).request_revocation(
        RevocationRequest("fleet-db", "key_compromise", "alice", immediate=True)
    )
    await events_app.events.drain()

    assert received(receiver, "/billing") == [
        ("secret.created", "BILLING-Invoices"),
        ("secret.updated", "BILLING-Invoices"),
    ]
    assert received(receiver, "/revoked") == [("secret.revoked", "fleet-db")]
    assert received(receiver, "/updates") == [("secret.updated", "fleet-db")]


async def test_subscribers_hear_of_a_revocation_that_failed_after_revoking(
    events_app: Strongroom, receiver: Receiver, clock: ManualClock
) -> None:
    """A revocation whose fresh value could not be issued ends FAILED, but its versions *are*
    revoked: the services using the secret must hear secret.revoked (their reads now fail), not
    only rotation.failed."""
    subs = EventSubscriptions(events_app)
    sub = await subs.subscribe(receiver.url(), "*", ["secret.revoked", "rotation.failed"])
    manager = SecretsManager(events_app)
    await manager.create_secret("ledger-db", canary())

    def broken(name: str) -> str:
        raise RuntimeError("target unreachable")

    await SecretsRotation(events_app).register_secret(
        RotationConfig(name="ledger-db", rotation_callback=broken)
    )
    status = await EmergencyRevoke(events_app).request_revocation(
        RevocationRequest("ledger-db", "key_compromise", "alice", immediate=True, rotate_after=True)
    )
    assert status["status"] == "FAILED"
    assert status["versions_revoked"] == 1
    await events_app.events.drain()
    assert all(signed_by(r, key_of(sub), clock) for r in receiver.requests)
    assert received(receiver) == [
        ("rotation.failed", "ledger-db"),
        ("secret.revoked", "ledger-db"),
    ]


async def test_unsubscribed_targets_hear_nothing_more(
    events_app: Strongroom, receiver: Receiver
) -> None:
    subs = EventSubscriptions(events_app)
    manager = SecretsManager(events_app)
    gone = await subs.subscribe(receiver.url("/gone"), "*", ["secret.updated"])
    kept = await subs.subscribe(receiver.url("/kept"), "*", ["secret.updated"])
    await manager.create_secret("fleet-db", canary())
    assert await subs.unsubscribe(gone["id"]) is True
    assert await subs.unsubscribe(gone["id"]) is False
    assert [s["id"] for s in await subs.list_subscriptions()] == [kept["id"]]
    await manager.update_secret("fleet-db", canary())
    await events_app.events.drain()
    assert [r.path for r in receiver.requests] == ["/kept"]


async def test_a_slow_subscriber_does_not_hold_up_a_write(
    events_app: Strongroom, receiver: Receiver
) -> None:
    receiver.hold = {"secret.updated"}
    manager = SecretsManager(events_app)
    await EventSubscriptions(events_app).subscribe(receiver.url(), "*", ["secret.updated"])
    await manager.create_secret("fleet-db", canary())
    async with asyncio.timeout(2):
        await manager.update_secret("fleet-db", canary())  # returns with delivery in flight
        await receiver.held.wait()
    assert events_app.events.delivered == []
    receiver.release.set()
    await events_app.events.drain()
    assert [d["ok"] for d in events_app.events.delivered] == [True]


async def test_subscriptions_and_their_keys_survive_a_restart(
    loopback_settings: Settings, receiver: Receiver, clock: ManualClock
) -> None:
    first = await Strongroom.open(loopback_settings, clock=clock)
    try:
        sub = await EventSubscriptions(first).subscribe(receiver.url(), "*", ["secret.updated"])
        await SecretsManager(first).create_secret("fleet-db", canary())
    finally:
        await first.close()
    again = await Strongroom.open(loopback_settings, clock=clock)
    try:
        await SecretsManager(again).update_secret("fleet-db", canary())
        await again.events.drain()
    finally:
        await again.close()
    (req,) = receiver.requests
    assert signed_by(req, key_of(sub), clock)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
        "http://user:pw@127.0.0.1/hook",
    ],
)
async def test_unsafe_targets_are_refused_even_with_loopback_allowed(
    events_app: Strongroom, url: str
) -> None:
    subs = EventSubscriptions(events_app)
    with pytest.raises(ValidationError) as refused:
        await subs.subscribe(url)
    assert "pw" not in str(refused.value)
    assert await subs.list_subscriptions() == []


async def test_loopback_is_refused_unless_configuration_allows_it(
    app: Strongroom, receiver: Receiver
) -> None:
    assert app.settings.webhook_allow_loopback is False
    subs = EventSubscriptions(app)
    for url in (receiver.url(), f"http://localhost:{receiver.port}/hook", "http://[::1]/hook"):
        with pytest.raises(ValidationError):
            await subs.subscribe(url)
    assert await subs.list_subscriptions() == []


async def test_kinds_and_patterns_are_validated(events_app: Strongroom, receiver: Receiver) -> None:
    subs = EventSubscriptions(events_app)
    for bad in (
        {"events": ["secret.stolen"]},
        {"events": []},
        {"pattern": ""},
        {"pattern": "x" * 200},
    ):
        with pytest.raises(ValidationError):
            await subs.subscribe(receiver.url(), **bad)
    assert await subs.list_subscriptions() == []
