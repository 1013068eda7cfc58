"""Notifications by email, through an SMTP relay (aiosmtplib).

One message per notification, to all its recipients; a plain-text body listing the fields.
Addresses are checked to one plain ``local@domain`` form and the subject is one printable
line, and the message is built with the standard library's ``EmailMessage`` (which refuses
CR/LF in a header as well), so nothing in a notification can add a header or a recipient.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from strongroom.core.clock import Clock, system_clock
from strongroom.core.envsettings import SecretStr
from strongroom.core.errors import ConfigurationError
from strongroom.services.notify.base import (
    DeliveryOutcome,
    FieldValue,
    Notification,
    validate_email_address,
)

__all__ = ["EmailNotifier", "render_email"]

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_PRIORITY_HEADERS = {"critical": "1", "high": "2"}


def _text(value: FieldValue) -> str:
    """One field as one line: controls (CR/LF included) are shown escaped, never obeyed."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def render_email(n: Notification, *, sender: str, clock: Clock = system_clock) -> EmailMessage:
    """The message :class:`EmailNotifier` sends for ``n`` (public so it can be previewed)."""
    sender = validate_email_address(sender)
    recipients = [validate_email_address(r) for r in n.recipients]
    msg = EmailMessage()
    prefix = f"[{n.priority.upper()}] " if n.priority in _PRIORITY_HEADERS else ""
    msg["Subject"] = prefix + n.subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(clock())
    msg["Message-ID"] = make_msgid(domain=sender.split("@", 1)[1])
    # RFC 3834: out-of-office robots should not answer an alert.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Strongroom-Event"] = n.kind
    if n.priority in _PRIORITY_HEADERS:
        msg["X-Priority"] = _PRIORITY_HEADERS[n.priority]
        msg["Importance"] = "high"
    lines = [
        n.subject,
        "",
        f"event: {n.kind}",
        f"priority: {n.priority}",
        f"occurred_at: {n.occurred_at_iso}",
        "",
        *(f"{key}: {_text(value)}" for key, value in n.fields.items()),
        "",
        "-- ",
        "Sent by strongroom. Notifications never carry a secret's value.",
    ]
    msg.set_content("\n".join(lines) + "\n", charset="utf-8")
    return msg


class EmailNotifier:
    """Sends each notification with recipients as one email; one outcome per recipient."""

    channel = "email"

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        use_tls: bool = False,
        start_tls: bool = False,
        username: str | None = None,
        password: SecretStr | None = None,
        sender: str = "strongroom@localhost",
        timeout: float = 10.0,
        clock: Clock = system_clock,
    ) -> None:
        if not host or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in host):
            raise ConfigurationError("the SMTP host must be a host name or address")
        if not 1 <= port <= 65535:
            raise ConfigurationError("the SMTP port must be between 1 and 65535")
        if use_tls and start_tls:
            raise ConfigurationError("choose implicit TLS or STARTTLS for SMTP, not both")
        if (username is None) != (password is None):
            raise ConfigurationError("SMTP authentication needs both a user name and a password")
        if username is not None and not (use_tls or start_tls) and host not in _LOCAL_HOSTS:
            raise ConfigurationError("SMTP credentials are only sent over TLS or to localhost")
        if timeout <= 0:
            raise ConfigurationError("the SMTP timeout must be positive")
        self.host, self.port, self.sender = host, port, validate_email_address(sender)
        self._use_tls, self._start_tls = use_tls, start_tls
        self._username, self._password = username, password
        self._timeout = timeout
        self._clock = clock

    def __repr__(self) -> str:
        return f"EmailNotifier(host={self.host!r}, port={self.port}, sender={self.sender!r})"

    async def deliver(self, n: Notification) -> list[DeliveryOutcome]:
        import aiosmtplib  # noqa: PLC0415 (loaded on first use: start-up cost)

        if not n.recipients:
            return []
        msg = render_email(n, sender=self.sender, clock=self._clock)
        recipients = list(n.recipients)
        try:
            refused, _reply = await aiosmtplib.send(
                msg,
                sender=self.sender,
                recipients=recipients,
                hostname=self.host,
                port=self.port,
                use_tls=self._use_tls,
                start_tls=self._start_tls,
                username=self._username,
                password=None if self._password is None else self._password.get_secret_value(),
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = {r.recipient: str(r.code) for r in exc.recipients}
            return [
                self._failed(r, codes.get(r, "refused"), "recipient refused") for r in recipients
            ]
        except aiosmtplib.SMTPResponseException as exc:
            return self._all_failed(recipients, str(exc.code), f"SMTP {exc.code}")
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            return self._all_failed(recipients, "timeout", "the mail server did not answer")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return self._all_failed(recipients, type(exc).__name__, "cannot reach the mail server")
        now = self._clock()
        return [
            self._failed(r, str(refused[r].code), "recipient refused")
            if r in refused
            else DeliveryOutcome(
                channel="email", target=r, ok=True, attempts=1, status="250", delivered_at=now
            )
            for r in recipients
        ]

    def _all_failed(
        self, recipients: Iterable[str], status: str, error: str
    ) -> list[DeliveryOutcome]:
        return [self._failed(r, status, error) for r in recipients]

    @staticmethod
    def _failed(recipient: str, status: str, error: str) -> DeliveryOutcome:
        return DeliveryOutcome(
            channel="email", target=recipient, ok=False, attempts=1, status=status, error=error
        )
