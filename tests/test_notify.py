"""Notifications reach people through real components: an aiosmtpd server and an asyncio HTTP
receiver, both on 127.0.0.1. No traffic leaves the machine: refusal tests use only URLs the
policy refuses before connecting (or literal addresses it checks without DNS)."""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from helpers_notify import Capture, Receiver, field_lines, free_port, http_receiver, smtp_server
from strongroom import ConfigurationError, Settings, ValidationError
from strongroom.core.logging import LOGGED_FIELDS
from strongroom.core.metrics import Metrics
from strongroom.core.models import SecretValue
from strongroom.services.notify import (
    DeliveryOutcome,
    Dispatcher,
    EmailNotifier,
    LogNotifier,
    Notification,
    NotificationTargetError,
    ReplayGuard,
    UrlPolicy,
    WebhookNotifier,
    build_dispatcher,
    sign_payload,
    validate_email_address,
    verify_signature,
)

KEY = secrets.token_bytes(32)
LOOPBACK = UrlPolicy(allow_loopback=True)


def revocation(**overrides: Any) -> Notification:
    options: dict[str, Any] = {
        "kind": "revocation.requested",
        "priority": "critical",
        "subject": "strongroom: revocation of db-password requested",
        "fields": {
            "secret_name": "db-password",
            "severity": "critical",
            "reason": "key leaked in a public repository",
            "revocation_id": "rv-123",
            "actor": "alice",
            "break_glass": False,
            "risk_score": 0.75,
            "approved_by": None,
        },
        "recipients": ["sec@example.com", "oncall@example.com"],
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    options.update(overrides)
    return Notification(**options)


# ---------------------------------------------------------------- SMTP server


@pytest.fixture
def smtp() -> Iterator[tuple[Capture, int]]:
    with smtp_server() as server:
        yield server


# ---------------------------------------------------------------- HTTP receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with http_receiver() as r:
        yield r


def webhook(*urls: str, **options: Any) -> WebhookNotifier:
    options = {"signing_key": KEY, "url_policy": LOOPBACK, "backoff": 0.01, **options}
    return WebhookNotifier(list(urls), **options)


# ---------------------------------------------------------------- Notification


def test_notification_json_is_canonical_and_leaves_out_recipients() -> None:
    n = revocation()
    body = n.to_json()
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    data = json.loads(body)
    assert data["kind"] == "revocation.requested"
    assert data["occurred_at"] == "2026-01-02T03:04:05Z"
    assert data["fields"]["secret_name"] == "db-password"
    assert "recipients" not in data
    assert "example.com" not in body


@pytest.mark.parametrize("key", ["value", "secret_value", "password", "token", "plaintext"])
def test_a_field_named_like_a_value_is_refused(key: str) -> None:
    canary = f"CANARY-{secrets.token_hex(8)}"
    with pytest.raises(ValidationError) as refused:
        revocation(fields={"secret_name": "db", key: canary})
    assert canary not in str(refused.value)


def test_a_secret_value_object_or_a_nested_structure_is_refused_as_a_field() -> None:
    canary = f"CANARY-{secrets.token_hex(8)}"
    value = SecretValue("db", "1", canary.encode(), None)
    for bad in (value, {"inner": canary}, [canary], canary.encode()):
        with pytest.raises(ValidationError) as refused:
            revocation(fields={"detail": bad})
        assert canary not in str(refused.value)


def test_notification_validation() -> None:
    with pytest.raises(ValidationError):
        revocation(kind="Revocation Requested")
    with pytest.raises(ValidationError):
        revocation(priority="urgent")
    with pytest.raises(ValidationError):
        revocation(subject="two\r\nBcc: evil@example.com")
    with pytest.raises(ValidationError):
        revocation(occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValidationError):
        revocation(fields={"ratio": float("nan")})
    with pytest.raises(ValidationError):
        revocation(recipients="sec@example.com")


def test_enum_fields_become_their_values() -> None:
    class Severity(enum.StrEnum):
        HIGH = "high"

    n = revocation(fields={"severity": Severity.HIGH})
    assert type(n.fields["severity"]) is str
    assert json.loads(n.to_json())["fields"] == {"severity": "high"}


@pytest.mark.parametrize(
    "address",
    [
        "sec@example.com\r\nBcc: evil@example.com",
        "sec@example.com\nX: y",
        "no-at-sign",
        "a@b@example.com",
        "a b@example.com",
        "<sec@example.com>",
        "sec@example.com,evil@example.com",
        "Sec Team <sec@example.com>",
        "sec@-bad-.com",
        "",
    ],
)
def test_bad_recipient_addresses_are_refused(address: str) -> None:
    with pytest.raises(NotificationTargetError) as refused:
        validate_email_address(address)
    assert refused.value.code == "bad_target"
    with pytest.raises(NotificationTargetError):
        revocation(recipients=["ok@example.com", address])


# ---------------------------------------------------------------- email


async def test_email_reaches_the_recipients_with_priority_and_only_the_given_fields(
    smtp: tuple[Capture, int],
) -> None:
    handler, port = smtp
    canary = f"CANARY-{secrets.token_hex(8)}"  # the secret's value: nothing may carry it
    n = revocation()
    notifier = EmailNotifier("127.0.0.1", port, sender="strongroom@example.com", timeout=5)
    outcomes = await notifier.deliver(n)

    assert [(o.channel, o.target, o.ok, o.status) for o in outcomes] == [
        ("email", "sec@example.com", True, "250"),
        ("email", "oncall@example.com", True, "250"),
    ]
    assert all(o.delivered_at is not None for o in outcomes)
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "strongroom@example.com"
    assert envelope.rcpt_tos == ["sec@example.com", "oncall@example.com"]
    msg = handler.message()
    assert msg["Subject"] == "[CRITICAL] strongroom: revocation of db-password requested"
    assert msg["X-Priority"] == "1"
    assert msg["X-Strongroom-Event"] == "revocation.requested"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert field_lines(msg) == {
        "secret_name": "db-password",
        "severity": "critical",
        "reason": "key leaked in a public repository",
        "revocation_id": "rv-123",
        "actor": "alice",
        "break_glass": "false",
        "risk_score": "0.75",
        "approved_by": "-",
    }
    assert canary.encode() not in envelope.content


async def test_normal_priority_has_no_prefix_and_high_has_one(smtp: tuple[Capture, int]) -> None:
    handler, port = smtp
    notifier = EmailNotifier("127.0.0.1", port, timeout=5)
    await notifier.deliver(revocation(priority="normal", subject="secret rotated"))
    await notifier.deliver(revocation(priority="high", subject="rotation failed"))
    normal, high = handler.message(0), handler.message(1)
    assert normal["Subject"] == "secret rotated"
    assert normal["X-Priority"] is None
    assert high["Subject"] == "[HIGH] rotation failed"


async def test_a_field_cannot_add_lines_to_the_body(smtp: tuple[Capture, int]) -> None:
    handler, port = smtp
    n = revocation(fields={"reason": "leaked\r\ninjected_field: yes"})
    await EmailNotifier("127.0.0.1", port, timeout=5).deliver(n)
    lines = field_lines(handler.message())
    assert lines == {"reason": "leaked\\u000d\\u000ainjected_field: yes"}


async def test_no_recipients_means_no_message_and_no_outcome(smtp: tuple[Capture, int]) -> None:
    handler, port = smtp
    assert await EmailNotifier("127.0.0.1", port).deliver(revocation(recipients=[])) == []
    assert handler.envelopes == []


async def test_a_refused_recipient_fails_alone(smtp: tuple[Capture, int]) -> None:
    handler, port = smtp
    handler.refuse.add("oncall@example.com")
    outcomes = await EmailNotifier("127.0.0.1", port, timeout=5).deliver(revocation())
    assert [(o.target, o.ok, o.status) for o in outcomes] == [
        ("sec@example.com", True, "250"),
        ("oncall@example.com", False, "550"),
    ]
    assert handler.envelopes[0].rcpt_tos == ["sec@example.com"]


async def test_mail_server_down_is_a_failed_outcome() -> None:
    outcomes = await EmailNotifier("127.0.0.1", free_port(), timeout=2).deliver(revocation())
    assert len(outcomes) == 2
    assert not any(o.ok for o in outcomes)
    assert all(o.error == "cannot reach the mail server" for o in outcomes)


def test_email_configuration_is_checked_when_built() -> None:
    with pytest.raises(ConfigurationError):
        EmailNotifier("mail.example.com", 25, use_tls=True, start_tls=True)
    with pytest.raises(ConfigurationError):  # credentials in clear text to a remote host
        EmailNotifier("mail.example.com", 25, username="u", password=None)
    with pytest.raises(NotificationTargetError):
        EmailNotifier("127.0.0.1", 25, sender="strongroom\r\n@example.com")


# ---------------------------------------------------------------- webhooks


async def test_webhook_is_signed_and_carries_the_headers(receiver: Receiver) -> None:
    n = revocation()
    (outcome,) = await webhook(receiver.url("/hook?token=abc")).deliver(n)
    assert outcome.ok
    assert (outcome.status, outcome.attempts) == ("200", 1)
    assert outcome.target == f"http://127.0.0.1:{receiver.port}/hook"  # no query string
    (req,) = receiver.requests
    assert req.body == n.to_json().encode()
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-strongroom-event"] == "revocation.requested"
    assert req.headers["user-agent"] == "strongroom-webhook/1"
    timestamp = req.headers["x-strongroom-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    signature = req.headers["x-strongroom-signature"]
    delivery = req.headers["x-strongroom-delivery"]
    assert signature.startswith("v2=")
    assert verify_signature(req.body, timestamp, signature, KEY, delivery_id=delivery)
    assert not verify_signature(req.body + b" ", timestamp, signature, KEY, delivery_id=delivery)
    assert not verify_signature(
        req.body, timestamp, signature, secrets.token_bytes(32), delivery_id=delivery
    )


def test_verify_signature_refuses_replays_and_malformed_headers() -> None:
    body, ts = b'{"kind":"x.y"}', "1767225600"  # 2026-01-01T00:00:00Z
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    one = secrets.token_hex(16)
    good = sign_payload(body, ts, KEY, delivery_id=one)

    def ok(header: str, *, at: datetime = sent, stamp: str = ts, delivery: str = one) -> bool:
        return verify_signature(body, stamp, header, KEY, delivery_id=delivery, now=at)

    assert ok(good, at=sent + timedelta(seconds=299))
    assert not ok(good, at=sent + timedelta(seconds=301))
    assert not ok(good, at=sent - timedelta(seconds=301))
    assert not ok(good, stamp=str(int(ts) + 1))
    for header in ("", "v2=", "sha1=" + good[3:], "v2=zz" + good[5:], good[3:]):
        assert not ok(header)
    rotated = f"{sign_payload(body, ts, secrets.token_bytes(32), delivery_id=one)}, {good}"
    assert ok(rotated)
    # The signature of the scheme that left the delivery id outside it is refused.
    unsigned_id = "sha256=" + hmac_sha256(KEY, ts.encode() + b"." + body).hex()
    assert not ok(unsigned_id)


def test_a_captured_delivery_replayed_with_a_new_id_is_refused() -> None:
    """A delivery captured on the wire and sent again inside the timestamp window: with a new
    delivery id it fails the signature; with its own id the receiver's guard drops it."""
    body, ts = b'{"kind":"secret.revoked"}', "1767225600"
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    original = secrets.token_hex(16)
    header = sign_payload(body, ts, KEY, delivery_id=original)
    later = sent + timedelta(seconds=60)
    assert not verify_signature(body, ts, header, KEY, delivery_id=secrets.token_hex(16), now=later)
    guard = ReplayGuard()
    assert verify_signature(body, ts, header, KEY, delivery_id=original, now=sent)
    assert guard.first_time(original, ts, now=sent)
    assert verify_signature(body, ts, header, KEY, delivery_id=original, now=later)
    assert not guard.first_time(original, ts, now=later)
    assert guard.first_time(secrets.token_hex(16), ts, now=later)  # another delivery passes


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    import hashlib
    import hmac

    return hmac.new(key, message, hashlib.sha256).digest()


async def test_webhook_retries_on_500_then_succeeds(receiver: Receiver) -> None:
    receiver.script = [(500, {}), (503, {}), (200, {})]
    (outcome,) = await webhook(receiver.url()).deliver(revocation())
    assert outcome.ok
    assert outcome.attempts == 3
    assert len(receiver.requests) == 3
    assert len({r.headers["x-strongroom-delivery"] for r in receiver.requests}) == 1
    for r in receiver.requests:
        h = r.headers
        assert verify_signature(
            r.body,
            h["x-strongroom-timestamp"],
            h["x-strongroom-signature"],
            KEY,
            delivery_id=h["x-strongroom-delivery"],
        )


async def test_webhook_does_not_retry_a_400(receiver: Receiver) -> None:
    receiver.script = [(400, {}), (200, {})]
    (outcome,) = await webhook(receiver.url()).deliver(revocation())
    assert not outcome.ok
    assert (outcome.status, outcome.attempts, outcome.error) == ("400", 1, "HTTP 400")
    assert len(receiver.requests) == 1


async def test_webhook_does_not_follow_a_redirect(receiver: Receiver) -> None:
    receiver.script = [(302, {"Location": receiver.url("/elsewhere")})]
    (outcome,) = await webhook(receiver.url()).deliver(revocation())
    assert not outcome.ok
    assert (outcome.status, outcome.attempts) == ("302", 1)
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_webhook_honours_retry_after_up_to_the_cap(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "3600"}), (200, {})]
    started = time.monotonic()
    (outcome,) = await webhook(receiver.url(), retry_after_cap=0.2).deliver(revocation())
    elapsed = time.monotonic() - started
    assert outcome.ok
    assert outcome.attempts == 2
    assert 0.2 <= elapsed < 2


async def test_receiver_down_fails_after_every_retry() -> None:
    (outcome,) = await webhook(f"http://127.0.0.1:{free_port()}/hook", retries=2).deliver(
        revocation()
    )
    assert not outcome.ok
    assert outcome.attempts == 3
    assert outcome.status == "ConnectError"
    assert outcome.delivered_at is None


async def test_a_receiver_that_never_answers_times_out(receiver: Receiver) -> None:
    receiver.hang = True
    (outcome,) = await webhook(receiver.url(), timeout=0.2, retries=1).deliver(revocation())
    assert not outcome.ok
    assert (outcome.status, outcome.attempts) == ("timeout", 2)
    assert len(receiver.requests) == 2


async def test_each_url_gets_its_own_outcome(receiver: Receiver) -> None:
    down = f"http://127.0.0.1:{free_port()}/down"
    outcomes = await webhook(receiver.url(), down, retries=0).deliver(revocation())
    assert [(o.target.rsplit("/", 1)[-1], o.ok) for o in outcomes] == [
        ("hook", True), ("down", False)
    ]  # fmt: skip


async def test_the_url_is_checked_again_at_send_time(receiver: Receiver) -> None:
    # A host name passes the no-DNS check at registration; at send time "localhost" resolves
    # to loopback, which this policy refuses, so nothing is sent.
    notifier = webhook(f"http://localhost:{receiver.port}/hook", url_policy=UrlPolicy())
    (outcome,) = await notifier.deliver(revocation())
    assert not outcome.ok
    assert (outcome.status, outcome.attempts) == ("bad_target", 1)
    assert "loopback" in (outcome.error or "")
    assert receiver.requests == []
    with pytest.raises(NotificationTargetError):
        await notifier.check_targets()


def test_webhook_refuses_refused_urls_and_short_keys_when_built() -> None:
    with pytest.raises(NotificationTargetError):
        WebhookNotifier(["http://169.254.169.254/latest/meta-data/"], signing_key=KEY)
    with pytest.raises(ValidationError):
        WebhookNotifier(["https://1.1.1.1/hook"], signing_key=b"short")


# ---------------------------------------------------------------- URL policy


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "file:///etc/passwd",
        "ftp://x/",
        "gopher://127.0.0.1/",
        "http://user:pw@example.com/",
        "http://user@example.com/",
        "http:///nohost",
        "http://example.com:99999/",
        "http://127.1/",
        "http://0x7f000001/",
        "http://[fe80::1%25eth0]/",
        "http://example.com/a b",
    ],
)
async def test_policy_refuses_whatever_the_configuration(url: str) -> None:
    policy = UrlPolicy(allow_private=True, allow_loopback=True)
    with pytest.raises(NotificationTargetError) as refused:
        await policy.check(url)
    assert refused.value.code == "bad_target"
    assert "pw" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "allowed_by"),
    [
        ("http://10.0.0.1/hook", "allow_private"),
        ("http://172.16.5.4/hook", "allow_private"),
        ("http://192.168.1.1/hook", "allow_private"),
        ("http://100.64.0.1/hook", "allow_private"),
        ("http://[fd12::1]/hook", "allow_private"),
        ("http://127.0.0.1:8080/hook", "allow_loopback"),
        ("http://[::1]/hook", "allow_loopback"),
        ("http://localhost/hook", "allow_loopback"),
    ],
)
async def test_private_and_loopback_only_when_allowed(url: str, allowed_by: str) -> None:
    with pytest.raises(NotificationTargetError):
        await UrlPolicy().check(url)
    other = "allow_loopback" if allowed_by == "allow_private" else "allow_private"
    with pytest.raises(NotificationTargetError):
        await UrlPolicy(**{other: True}).check(url)
    assert await UrlPolicy(**{allowed_by: True}).check(url) == url


async def test_a_public_literal_address_is_accepted_without_any_traffic() -> None:
    assert await UrlPolicy().check("https://1.1.1.1/hook?x=1") == "https://1.1.1.1/hook?x=1"


# ---------------------------------------------------------------- log and dispatcher


async def test_log_notifier_logs_one_line_with_allowlisted_fields_only() -> None:
    with capture_logs() as logs:
        (outcome,) = await LogNotifier().deliver(revocation())
    assert outcome.ok
    assert outcome.channel == "log"
    (line,) = logs
    assert set(line) <= LOGGED_FIELDS
    assert line["kind"] == "revocation.requested"
    assert line["name"] == "db-password"
    assert line["revocation_id"] == "rv-123"
    assert "reason" in line["field_names"]
    assert "key leaked" not in repr(line)  # free text stays out of logs
    assert "example.com" not in repr(line)


class Exploding:
    channel = "test"

    async def deliver(self, n: Notification) -> list[DeliveryOutcome]:
        raise RuntimeError("CANARY-in-an-exception-message")


class Garbage:
    channel = "test"

    async def deliver(self, n: Notification) -> list[DeliveryOutcome]:
        return [None]  # type: ignore[list-item]


class Hanging:
    channel = "test"

    async def deliver(self, n: Notification) -> list[DeliveryOutcome]:
        await asyncio.Event().wait()
        return []


async def test_dispatcher_send_never_raises_and_reports_each_failure() -> None:
    metrics = Metrics()
    down = webhook(f"http://127.0.0.1:{free_port()}/hook", retries=0)
    notifiers = [LogNotifier(), Exploding(), Garbage(), Hanging(), down]
    dispatcher = Dispatcher(notifiers, metrics=metrics, timeout=0.5)
    started = time.monotonic()
    outcomes = await dispatcher.send(revocation())
    assert time.monotonic() - started < 3
    assert [(o.channel, o.ok, o.status) for o in outcomes] == [
        ("log", True, "logged"),
        ("test", False, "RuntimeError"),
        ("test", False, "TypeError"),
        ("test", False, "timeout"),
        ("webhook", False, "ConnectError"),
    ]
    assert all("CANARY" not in (o.error or "") for o in outcomes)
    assert metrics.value("notifications_total", channel="log", result="ok") == 1
    assert metrics.value("notifications_total", channel="test", result="failed") == 3
    assert metrics.value("notifications_total", channel="webhook", result="failed") == 1


async def test_send_later_runs_in_the_background(receiver: Receiver) -> None:
    dispatcher = Dispatcher([webhook(receiver.url())])
    task = dispatcher.send_later(revocation())
    await dispatcher.drain()
    assert task.done()
    assert [o.ok for o in task.result()] == [True]
    assert len(receiver.requests) == 1


# ---------------------------------------------------------------- settings


def notify_settings(**env: Any) -> Settings:
    return Settings(**env)


def test_build_dispatcher_defaults_to_the_log_only() -> None:
    dispatcher = build_dispatcher(notify_settings())
    assert [type(n) for n in dispatcher.notifiers] == [LogNotifier]


def test_build_dispatcher_refuses_bad_webhook_settings() -> None:
    url = {"STRONGROOM_WEBHOOK_URLS": "https://1.1.1.1/hook"}
    with pytest.raises(ConfigurationError, match="SIGNING_KEY"):
        build_dispatcher(notify_settings(**url))
    with pytest.raises(ConfigurationError, match="base64"):
        build_dispatcher(notify_settings(**url, STRONGROOM_WEBHOOK_SIGNING_KEY="not base64!"))
    short = base64.b64encode(b"0123456789").decode()
    with pytest.raises(ConfigurationError):
        build_dispatcher(notify_settings(**url, STRONGROOM_WEBHOOK_SIGNING_KEY=short))
    key = base64.b64encode(KEY).decode()
    with pytest.raises(ConfigurationError, match="loopback"):
        build_dispatcher(
            notify_settings(
                STRONGROOM_WEBHOOK_URLS="http://127.0.0.1:9/hook",
                STRONGROOM_WEBHOOK_SIGNING_KEY=key,
            )
        )


async def test_build_dispatcher_delivers_through_log_email_and_webhooks(
    smtp: tuple[Capture, int], receiver: Receiver
) -> None:
    handler, port = smtp
    metrics = Metrics()
    settings = notify_settings(
        STRONGROOM_SMTP_HOST="127.0.0.1",
        STRONGROOM_SMTP_PORT=str(port),
        STRONGROOM_SMTP_FROM="vault@example.com",
        STRONGROOM_WEBHOOK_URLS=f" {receiver.url('/a')} , {receiver.url('/b')} ",
        STRONGROOM_WEBHOOK_SIGNING_KEY=base64.b64encode(KEY).decode(),
        STRONGROOM_WEBHOOK_ALLOW_LOOPBACK="true",
        STRONGROOM_NOTIFY_TIMEOUT_SECONDS="5",
    )
    dispatcher = build_dispatcher(settings, metrics)
    assert [type(n) for n in dispatcher.notifiers] == [LogNotifier, EmailNotifier, WebhookNotifier]
    outcomes = await dispatcher.send(revocation())
    assert all(o.ok for o in outcomes)
    assert sorted(o.channel for o in outcomes) == ["email", "email", "log", "webhook", "webhook"]
    assert handler.envelopes[0].mail_from == "vault@example.com"
    assert sorted(r.path for r in receiver.requests) == ["/a", "/b"]
    assert metrics.value("notifications_total", channel="webhook", result="ok") == 2
