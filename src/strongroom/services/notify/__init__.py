"""Notifications that reach people: emergency revocation, rotation failures, threat alerts and
event subscriptions.

Build a :class:`Notification` (names, ids, reasons: never a secret's value) and hand it to a
:class:`Dispatcher`, which delivers it through a log line, email and signed webhooks at once
and never raises. :func:`build_dispatcher` assembles one from :class:`Settings`.
"""

from __future__ import annotations

import base64
import binascii
import importlib
from typing import TYPE_CHECKING, Any

from strongroom.core.config import Settings
from strongroom.core.errors import ConfigurationError, ValidationError
from strongroom.core.metrics import Metrics
from strongroom.services.notify.base import (
    FORBIDDEN_FIELD_KEYS,
    KINDS,
    DeliveryOutcome,
    Dispatcher,
    FieldValue,
    LogNotifier,
    Notification,
    NotificationTargetError,
    Notifier,
    Priority,
    validate_email_address,
)
from strongroom.services.notify.urls import UrlPolicy, display_url
from strongroom.services.notify.webhook import (
    ReplayGuard,
    WebhookNotifier,
    sign_payload,
    verify_signature,
)

if TYPE_CHECKING:
    from strongroom.services.notify.email import EmailNotifier, render_email

#: Loaded on first use (PEP 562): the email package costs every process that wires a store a
#: few ms, and only a configured SMTP host or a preview needs it.
_LAZY = {"EmailNotifier": "strongroom.services.notify.email",
         "render_email": "strongroom.services.notify.email"}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "FORBIDDEN_FIELD_KEYS",
    "KINDS",
    "DeliveryOutcome",
    "Dispatcher",
    "EmailNotifier",
    "FieldValue",
    "LogNotifier",
    "Notification",
    "NotificationTargetError",
    "Notifier",
    "Priority",
    "ReplayGuard",
    "UrlPolicy",
    "WebhookNotifier",
    "build_dispatcher",
    "display_url",
    "render_email",
    "sign_payload",
    "validate_email_address",
    "verify_signature",
]

WEBHOOK_RETRIES = 3
RETRY_AFTER_CAP = 10.0


def _signing_key(settings: Settings) -> bytes:
    if settings.webhook_signing_key is None:
        raise ConfigurationError("STRONGROOM_WEBHOOK_URLS needs STRONGROOM_WEBHOOK_SIGNING_KEY")
    try:
        return base64.b64decode(settings.webhook_signing_key.get_secret_value(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError("STRONGROOM_WEBHOOK_SIGNING_KEY is not valid base64") from exc


def build_dispatcher(settings: Settings, metrics: Metrics | None = None) -> Dispatcher:
    """A log notifier always; email when STRONGROOM_SMTP_HOST is set; webhooks when
    STRONGROOM_WEBHOOK_URLS is. Bad settings fail here (ConfigurationError), at start-up,
    rather than at the first revocation. Webhook hosts are resolved and checked at send time."""
    timeout = settings.notify_timeout_seconds
    notifiers: list[Notifier] = [LogNotifier()]
    if settings.smtp_host:
        from strongroom.services.notify.email import EmailNotifier  # noqa: PLC0415 (see _LAZY)

        notifiers.append(
            EmailNotifier(
                settings.smtp_host,
                settings.smtp_port,
                use_tls=settings.smtp_tls == "tls",
                start_tls=settings.smtp_tls == "starttls",
                username=settings.smtp_username or None,
                password=settings.smtp_password,
                sender=settings.smtp_from,
                timeout=timeout,
            )
        )
    urls = [u.strip() for u in (settings.webhook_urls or "").split(",") if u.strip()]
    if urls:
        policy = UrlPolicy(
            allow_private=settings.webhook_allow_private,
            allow_loopback=settings.webhook_allow_loopback,
        )
        try:
            notifiers.append(
                WebhookNotifier(
                    urls,
                    signing_key=_signing_key(settings),
                    timeout=timeout,
                    retries=WEBHOOK_RETRIES,
                    url_policy=policy,
                    retry_after_cap=RETRY_AFTER_CAP,
                )
            )
        except ValidationError as exc:
            raise ConfigurationError(f"STRONGROOM_WEBHOOK_*: {exc}") from exc
    # Long enough for every webhook retry (a policy check, a request and a wait per attempt),
    # so the dispatcher's own limit only ever cuts off a notifier that hangs.
    attempts = WEBHOOK_RETRIES + 1
    budget = attempts * (2 * timeout) + WEBHOOK_RETRIES * RETRY_AFTER_CAP + 5.0
    return Dispatcher(notifiers, metrics=metrics, timeout=budget)
