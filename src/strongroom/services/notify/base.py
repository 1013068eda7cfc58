"""What a notification is, what delivering it produced, and the dispatcher that never raises.

A notification tells people that something happened to a secret: it carries the secret's name,
a severity, a reason, an actor, a revocation id. It NEVER carries a secret's value: there is no
field for one, field values must be plain scalars (a ``SecretValue`` is refused), and keys that
name a value (``value``, ``password``, ``token`` ...) are refused, so a value cannot reach an
inbox, a webhook receiver or a log line by accident.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

from strongroom.core.clock import Clock, system_clock
from strongroom.core.errors import ValidationError
from strongroom.core.logging import get_logger
from strongroom.core.metrics import Metrics

__all__ = [
    "FORBIDDEN_FIELD_KEYS",
    "KINDS",
    "DeliveryOutcome",
    "Dispatcher",
    "FieldValue",
    "LogNotifier",
    "Notification",
    "NotificationTargetError",
    "Notifier",
    "Priority",
    "validate_email_address",
]

log = get_logger("strongroom.notify")

FieldValue = str | int | float | bool | None
Priority = Literal["normal", "high", "critical"]
Channel = Literal["email", "webhook", "log"]

#: The kinds strongroom itself sends; others of the same dotted shape are accepted.
KINDS = frozenset(
    {
        "revocation.requested", "revocation.approved", "revocation.completed",
        "revocation.failed", "rotation.failed", "threat.detected", "secret.created",
        "secret.updated", "secret.rotated", "secret.revoked", "secret.near_expiry",
        "secret.expired", "integrity.tampered", "revocation.review_opened",
        "revocation.review_acknowledged", "revocation.review_overdue",
    }
)  # fmt: skip

#: Field keys that name a secret's value: refused, so nobody passes one "just this once".
FORBIDDEN_FIELD_KEYS = frozenset(
    {
        "value", "secret_value", "plaintext", "password", "passphrase", "private_key",
        "token", "api_key", "credential", "credentials",
    }
)  # fmt: skip

_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_DOMAIN = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
MAX_SUBJECT = 200
MAX_FIELDS = 50
MAX_FIELD_TEXT = 2000
MAX_RECIPIENTS = 100


class NotificationTargetError(ValidationError):
    """A recipient address or webhook URL was refused (malformed, or an SSRF risk).

    ``transient`` marks refusals that may pass later (a name that did not resolve).
    """

    code = "bad_target"

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def validate_email_address(address: str) -> str:
    """Return ``address`` if it is one plain ``local@domain`` address, else raise.

    Deliberately stricter than RFC 5322: no display names, quotes, comments, commas or
    whitespace, so an address can never add a header or a second recipient.
    """
    if not isinstance(address, str) or len(address) > 254:
        raise NotificationTargetError("an email address must be text of at most 254 characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in address):
        raise NotificationTargetError("an email address may not contain whitespace or CR/LF")
    if address.count("@") != 1:
        raise NotificationTargetError("an email address needs exactly one '@'")
    local, domain = address.split("@")
    if not _LOCAL_PART.match(local) or local.startswith(".") or local.endswith("."):
        raise NotificationTargetError("the part of an email address before '@' is not valid")
    if not _DOMAIN.match(domain):
        raise NotificationTargetError("the domain of an email address is not valid")
    return address


def _clean_field(key: object, value: object) -> FieldValue:
    if not isinstance(key, str) or not _FIELD_KEY.match(key):
        raise ValidationError("notification field keys are lower_snake_case, 1-64 characters")
    if key in FORBIDDEN_FIELD_KEYS:
        raise ValidationError(f"notification field {key!r} would carry a value: refused")
    if isinstance(value, enum.Enum):
        value = value.value
    # Exact types: a str subclass could be a wrapper that prints a value.
    if value is None or type(value) is bool or type(value) is int:
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise ValidationError(f"notification field {key!r} must be a finite number")
        return value
    if type(value) is str:
        if len(value) > MAX_FIELD_TEXT:
            raise ValidationError(f"notification field {key!r} is longer than {MAX_FIELD_TEXT}")
        return value
    raise ValidationError(
        f"notification field {key!r} must be str, int, float, bool or None, "
        f"not {type(value).__name__}"
    )


@dataclass(frozen=True, kw_only=True)
class Notification:
    """Something people must hear about. ``fields`` hold names, ids and reasons: NEVER a value.

    Validated when built, so a bad notification fails where it is made, not in a notifier.
    """

    kind: str
    subject: str
    priority: Priority = "normal"
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    recipients: Sequence[str] = ()
    occurred_at: datetime = field(default_factory=system_clock)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _KIND.match(self.kind) or len(self.kind) > 64:
            raise ValidationError("a notification kind looks like 'secret.rotated'")
        if self.priority not in get_args(Priority):
            raise ValidationError("priority must be 'normal', 'high' or 'critical'")
        if not isinstance(self.subject, str) or not self.subject.strip():
            raise ValidationError("a notification needs a subject")
        if len(self.subject) > MAX_SUBJECT or any(not c.isprintable() for c in self.subject):
            raise ValidationError(
                f"a subject is one printable line of at most {MAX_SUBJECT} characters"
            )
        if len(self.fields) > MAX_FIELDS:
            raise ValidationError(f"a notification has at most {MAX_FIELDS} fields")
        cleaned = {k: _clean_field(k, v) for k, v in self.fields.items()}
        if isinstance(self.recipients, str):
            raise ValidationError("recipients is a list of addresses, not one string")
        if len(self.recipients) > MAX_RECIPIENTS:
            raise ValidationError(f"a notification has at most {MAX_RECIPIENTS} recipients")
        recipients = tuple(dict.fromkeys(validate_email_address(r) for r in self.recipients))
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise ValidationError("occurred_at must be timezone-aware")
        object.__setattr__(self, "fields", cleaned)
        object.__setattr__(self, "recipients", recipients)

    @property
    def occurred_at_iso(self) -> str:
        return self.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def to_dict(self) -> dict[str, Any]:
        """The webhook payload. Recipients are left out: receivers need no one's address."""
        return {
            "schema": "strongroom.notification/1",
            "kind": self.kind,
            "priority": self.priority,
            "subject": self.subject,
            "occurred_at": self.occurred_at_iso,
            "fields": dict(self.fields),
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces), so a signature covers one exact text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, kw_only=True)
class DeliveryOutcome:
    """What one delivery to one target came to. ``error`` is short and carries no secret."""

    channel: str
    target: str
    ok: bool
    attempts: int
    status: str
    error: str | None = None
    delivered_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "target": self.target,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
            "delivered_at": None if self.delivered_at is None else self.delivered_at.isoformat(),
        }


class Notifier(Protocol):
    """A way to reach people. May raise: the :class:`Dispatcher` turns that into an outcome."""

    async def deliver(self, n: Notification) -> list[DeliveryOutcome]: ...


class LogNotifier:
    """One structured log line per notification: kind, priority, subject, field names and the
    identifying fields on the log allowlist. Always on, so a notification is never lost."""

    channel = "log"

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._clock = clock

    async def deliver(self, n: Notification) -> list[DeliveryOutcome]:
        ids = {
            key: n.fields[key]
            for key in ("name", "version", "actor", "revocation_id", "severity")
            if isinstance(n.fields.get(key), str | int)
        }
        if "name" not in ids and isinstance(n.fields.get("secret_name"), str):
            ids["name"] = n.fields["secret_name"]
        logger = log.warning if n.priority == "critical" else log.info
        logger(
            "notification",
            kind=n.kind,
            priority=n.priority,
            subject=n.subject,
            field_names=sorted(n.fields),
            count=len(n.recipients),
            **ids,
        )
        return [
            DeliveryOutcome(
                channel="log", target="log", ok=True, attempts=1, status="logged",
                delivered_at=self._clock(),
            )
        ]  # fmt: skip


class Dispatcher:
    """Delivers a notification through every notifier at once and NEVER raises.

    That is the contract: emergency revocation calls ``send`` after it has acted, and a mail
    server that is down or a webhook that hangs must neither block nor undo it. A notifier that
    raises or outlives ``timeout`` becomes a failed outcome. Cancelling ``send`` still cancels.
    """

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        metrics: Metrics | None = None,
        timeout: float = 60.0,
        clock: Clock = system_clock,
    ) -> None:
        if timeout <= 0:
            raise ValidationError("the dispatcher timeout must be positive")
        self.notifiers = tuple(notifiers)
        self._metrics = metrics
        self._timeout = timeout
        self._clock = clock
        self._background: set[asyncio.Task[list[DeliveryOutcome]]] = set()

    async def send(self, n: Notification) -> list[DeliveryOutcome]:
        results = await asyncio.gather(*(self._one(notifier, n) for notifier in self.notifiers))
        outcomes = [outcome for result in results for outcome in result]
        for outcome in outcomes:
            if self._metrics is not None:
                self._metrics.inc(
                    "notifications_total",
                    channel=outcome.channel,
                    result="ok" if outcome.ok else "failed",
                )
            if not outcome.ok:
                log.warning(
                    "notification not delivered",
                    kind=n.kind,
                    channel=outcome.channel,
                    target=outcome.target,
                    status=outcome.status,
                    error=outcome.error,
                    attempts=outcome.attempts,
                )
        return outcomes

    def send_later(self, n: Notification) -> asyncio.Task[list[DeliveryOutcome]]:
        """Start ``send`` in the background (for callers that must not wait at all); the task
        is kept referenced until done, and :meth:`drain` waits for the ones still running."""
        task = asyncio.get_running_loop().create_task(self.send(n))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Wait for background sends (at shutdown, so nothing is cut off mid-delivery)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _one(self, notifier: Notifier, n: Notification) -> list[DeliveryOutcome]:
        channel = str(getattr(notifier, "channel", type(notifier).__name__))
        try:
            async with asyncio.timeout(self._timeout):
                outcomes = list(await notifier.deliver(n))
            if not all(isinstance(o, DeliveryOutcome) for o in outcomes):
                raise TypeError("a notifier must return DeliveryOutcome objects")
            return outcomes
        except TimeoutError:
            status, error = "timeout", f"no answer within {self._timeout:g} s"
        # The contract above: whatever a notifier raises becomes an outcome, never the caller's
        # problem. Only the exception's type is kept: its message might quote a target.
        except Exception as exc:
            status, error = type(exc).__name__, "the notifier raised"
        return [
            DeliveryOutcome(
                channel=channel, target=type(notifier).__name__, ok=False, attempts=1,
                status=status, error=error,
            )
        ]  # fmt: skip
