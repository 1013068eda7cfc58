"""Signed webhook deliveries, and the check a receiver runs on them.

Each POST carries ``X-Strongroom-Signature: sha256=<hex>``, an HMAC-SHA256 over
``"<timestamp>.<body>"`` with a shared key, and ``X-Strongroom-Timestamp``, so a receiver can
refuse forged and replayed bodies (:func:`verify_signature`). ``X-Strongroom-Delivery`` stays
the same across retries of one delivery, so a receiver can drop duplicates: a retry after a
lost answer may deliver twice. Redirects are failures, never followed: a redirect to an
internal address would walk around the URL policy. Each attempt resolves the host once, checks
every address (:meth:`UrlPolicy.resolve`) and connects to a checked address, keeping the name in
the Host header and for TLS, so a DNS answer that changes after the check reaches nobody.
"""

from __future__ import annotations

import asyncio
import email.utils
import secrets
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from strongroom.core.clock import Clock, system_clock
from strongroom.core.errors import ValidationError
from strongroom.services.notify.base import DeliveryOutcome, Notification, NotificationTargetError
from strongroom.services.notify.urls import CheckedTarget, UrlPolicy, display_url

__all__ = ["MIN_SIGNING_KEY_BYTES", "WebhookNotifier", "sign_payload", "verify_signature"]

MIN_SIGNING_KEY_BYTES = 32
USER_AGENT = "strongroom-webhook/1"
_jitter = secrets.SystemRandom()


def _mac(body: bytes, timestamp: str, key: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(timestamp.encode("ascii") + b"." + body)
    return mac


def sign_payload(body: bytes, timestamp: int | str, key: bytes) -> str:
    """The ``X-Strongroom-Signature`` header value for ``body`` sent at ``timestamp``."""
    return "sha256=" + _mac(body, str(timestamp), key).finalize().hex()


def verify_signature(
    body: bytes,
    timestamp: str,
    header: str,
    key: bytes,
    *,
    tolerance_seconds: float = 300,
    now: datetime | None = None,
) -> bool:
    """True if ``header`` signs ``body`` at ``timestamp`` with ``key`` and the timestamp is
    within ``tolerance_seconds`` of ``now`` (replay defence). The comparison is constant-time;
    several comma-separated signatures are accepted, for key rotation."""
    if not key or not isinstance(body, bytes) or not isinstance(header, str):
        return False
    if not isinstance(timestamp, str) or not timestamp.isdigit() or len(timestamp) > 15:
        return False
    current = (now or datetime.now(UTC)).timestamp()
    if abs(current - int(timestamp)) > tolerance_seconds:
        return False
    for part in header.split(","):
        scheme, _, digest = part.strip().partition("=")
        if scheme != "sha256" or len(digest) != 64:
            continue
        try:
            expected = bytes.fromhex(digest)
        except ValueError:
            continue
        try:
            _mac(body, timestamp, key).verify(expected)
        except InvalidSignature:
            continue
        return True
    return False


class WebhookNotifier:
    """POSTs each notification, signed, to every URL; retries what may pass on a retry.

    ``retries`` counts attempts after the first. Connect errors, timeouts, 429 and 5xx are
    retried with exponential backoff (``Retry-After`` honoured up to ``retry_after_cap``);
    other 4xx and every 3xx fail at once. URLs pass ``url_policy`` when the notifier is built
    (no DNS) and again, with DNS, before every attempt; :meth:`check_targets` runs the DNS
    check at registration.
    """

    channel = "webhook"

    def __init__(
        self,
        urls: Sequence[str],
        *,
        signing_key: bytes,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        url_policy: UrlPolicy | None = None,
        retry_after_cap: float = 10.0,
        clock: Clock = system_clock,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if isinstance(urls, str):
            raise ValidationError("urls is a list of URLs, not one string")
        if not isinstance(signing_key, bytes) or len(signing_key) < MIN_SIGNING_KEY_BYTES:
            raise ValidationError(
                f"the webhook signing key must be at least {MIN_SIGNING_KEY_BYTES} bytes"
            )
        if timeout <= 0 or retries < 0 or backoff < 0 or retry_after_cap < 0:
            raise ValidationError("webhook timeout must be positive; retries and delays >= 0")
        self._policy = url_policy or UrlPolicy()
        for url in urls:
            self._policy.check_static(url)
        self.urls = tuple(dict.fromkeys(urls))
        self._key = signing_key
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._retry_after_cap = retry_after_cap
        self._clock = clock
        self._verify = verify  # the trust for https targets (an internal CA's context)

    def __repr__(self) -> str:
        return f"WebhookNotifier(urls={[display_url(u) for u in self.urls]!r})"

    async def check_targets(self) -> None:
        """Check every URL with DNS now (at registration); raises NotificationTargetError."""
        for url in self.urls:
            await self._policy.check(url)

    async def deliver(self, n: Notification) -> list[DeliveryOutcome]:
        import httpx  # noqa: PLC0415 (loaded on first use: start-up cost)

        body = n.to_json().encode("utf-8")
        async with httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(self._timeout),
            # Proxies from the environment would hide the real destination from the policy.
            trust_env=False,
            verify=self._verify,
        ) as client:
            return list(
                await asyncio.gather(*(self._post(client, url, body, n.kind) for url in self.urls))
            )

    async def _post(
        self, client: httpx.AsyncClient, url: str, body: bytes, kind: str
    ) -> DeliveryOutcome:
        import httpx  # noqa: PLC0415 (loaded on first use: start-up cost)

        target = display_url(url)
        delivery_id = secrets.token_hex(16)
        status, error, attempt = "", "", 0
        for attempt in range(1, self._retries + 2):
            delay = self._backoff * 2 ** (attempt - 1) * (1 + _jitter.random() / 4)
            try:
                checked = await self._policy.resolve(url)
            except NotificationTargetError as exc:
                status, error = "bad_target", str(exc)
                if exc.transient and attempt <= self._retries:
                    await asyncio.sleep(delay)
                    continue
                break
            timestamp = str(int(self._clock().timestamp()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Strongroom-Event": kind,
                "X-Strongroom-Timestamp": timestamp,
                "X-Strongroom-Signature": sign_payload(body, timestamp, self._key),
                "X-Strongroom-Delivery": delivery_id,
            }
            try:
                code, retry_after = await _send_pinned(client, checked, body, headers)
            except httpx.TimeoutException:
                status, error = "timeout", f"no answer within {self._timeout:g} s"
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                status, error = type(exc).__name__, "connection failed"
            except httpx.HTTPError as exc:
                status, error = type(exc).__name__, "request failed"
                break
            else:
                if 200 <= code < 300:
                    return DeliveryOutcome(
                        channel="webhook", target=target, ok=True, attempts=attempt,
                        status=str(code), delivered_at=self._clock(),
                    )  # fmt: skip
                status, error = str(code), f"HTTP {code}"
                if 300 <= code < 400:
                    error = f"HTTP {code}: redirects are not followed"
                    break
                if code != 429 and code < 500:
                    break
                waited = self._retry_after(retry_after)
                if waited is not None:
                    delay = waited
            if attempt > self._retries:
                break
            await asyncio.sleep(delay)
        return DeliveryOutcome(
            channel="webhook", target=target, ok=False, attempts=attempt, status=status,
            error=error,
        )  # fmt: skip

    def _retry_after(self, header: str | None) -> float | None:
        """Seconds to wait from a Retry-After header (seconds or HTTP date), capped."""
        if not header:
            return None
        header = header.strip()
        if header.isdigit():
            seconds = float(header)
        else:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                return None
            seconds = (when - self._clock()).total_seconds()
        return min(max(seconds, 0.0), self._retry_after_cap)


async def _send_pinned(
    client: httpx.AsyncClient, target: CheckedTarget, body: bytes, headers: dict[str, str]
) -> tuple[int, str | None]:
    """POST to one of the checked addresses of ``target`` (the next one if a connection is
    refused), with the URL's name as Host and, over TLS, as SNI and the certificate's name.
    The answer's body is never read (stream), so a receiver cannot flood memory."""
    import httpx  # noqa: PLC0415 (loaded on first use: start-up cost)

    host = target.host
    extensions: dict[str, str] = {}
    if target.url.scheme == "https" and ":" not in host and not host.replace(".", "").isdigit():
        extensions["sni_hostname"] = host
    pinned_headers = {**headers, "Host": target.url.netloc.decode("ascii")}
    for index, address in enumerate(target.addresses):
        url = target.url.copy_with(host=str(address))
        try:
            async with client.stream(
                "POST", url, content=body, headers=pinned_headers, extensions=extensions
            ) as response:
                return response.status_code, response.headers.get("retry-after")
        except httpx.ConnectError:
            if index == len(target.addresses) - 1:
                raise
    raise httpx.ConnectError("no address to connect to")  # unreachable: addresses is not empty
