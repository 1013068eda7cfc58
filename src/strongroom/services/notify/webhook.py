"""Signed webhook deliveries, and the checks a receiver runs on them.

Each POST carries ``X-Strongroom-Timestamp``, ``X-Strongroom-Delivery`` (an id that stays the
same across retries of one delivery) and ``X-Strongroom-Signature: v2=<hex>``, an HMAC-SHA256
with a shared key over ``"<timestamp>.<delivery id>.<body>"``. The id is signed with the body:
a captured delivery replayed within the timestamp window keeps its id (or fails the
signature), so a receiver that remembers the ids it accepted during that window drops every
replay and every duplicate retry (:func:`verify_signature`, then :class:`ReplayGuard`).
Redirects are failures, never followed: a redirect to an internal address would walk around
the URL policy. Each attempt resolves the host once, checks every address
(:meth:`UrlPolicy.resolve`) and connects to a checked address, keeping the name in the Host
header and for TLS, so a DNS answer that changes after the check reaches nobody.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
from collections import OrderedDict
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

__all__ = [
    "MIN_SIGNING_KEY_BYTES",
    "ReplayGuard",
    "WebhookNotifier",
    "sign_payload",
    "verify_signature",
]

MIN_SIGNING_KEY_BYTES = 32
USER_AGENT = "strongroom-webhook/1"
SCHEME = "v2"
_DELIVERY_ID = re.compile(r"[0-9a-f]{32}")
_jitter = secrets.SystemRandom()


def _mac(body: bytes, timestamp: str, delivery_id: str, key: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(timestamp.encode("ascii") + b"." + delivery_id.encode("ascii") + b"." + body)
    return mac


def sign_payload(body: bytes, timestamp: int | str, key: bytes, *, delivery_id: str) -> str:
    """The ``X-Strongroom-Signature`` value for ``body`` sent at ``timestamp`` as delivery
    ``delivery_id``."""
    return f"{SCHEME}=" + _mac(body, str(timestamp), delivery_id, key).finalize().hex()


def verify_signature(
    body: bytes,
    timestamp: str,
    header: str,
    key: bytes,
    *,
    delivery_id: str,
    tolerance_seconds: float = 300,
    now: datetime | None = None,
) -> bool:
    """True if ``header`` signs ``body``, ``timestamp`` and ``delivery_id`` (the
    ``X-Strongroom-Delivery`` header) with ``key`` and the timestamp is within
    ``tolerance_seconds`` of ``now``. The comparison is constant-time; several comma-separated
    signatures are accepted, for key rotation. Then drop duplicates with :class:`ReplayGuard`."""
    if not key or not isinstance(body, bytes) or not isinstance(header, str):
        return False
    if not isinstance(timestamp, str) or not timestamp.isdigit() or len(timestamp) > 15:
        return False
    if not isinstance(delivery_id, str) or not _DELIVERY_ID.fullmatch(delivery_id):
        return False
    current = (now or datetime.now(UTC)).timestamp()
    if abs(current - int(timestamp)) > tolerance_seconds:
        return False
    for part in header.split(","):
        scheme, _, digest = part.strip().partition("=")
        if scheme != SCHEME or len(digest) != 64:
            continue
        try:
            expected = bytes.fromhex(digest)
        except ValueError:
            continue
        try:
            _mac(body, timestamp, delivery_id, key).verify(expected)
        except InvalidSignature:
            continue
        return True
    return False


class ReplayGuard:
    """A receiver's memory of the deliveries it accepted, as long as a replay could pass the
    timestamp check (``tolerance_seconds``; use the same as :func:`verify_signature`).

    ``first_time(delivery_id, timestamp)`` is True once per id: call it after the signature
    verified and act only then. Retries of one delivery carry the same id (and are dropped
    too), so a receiver acts on each delivery once. One process's memory: receivers that run
    several processes keep the ids in their shared database instead, with the same rule."""

    def __init__(self, tolerance_seconds: float = 300, max_entries: int = 100_000) -> None:
        self._tolerance = tolerance_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, delivery_id: str, timestamp: str, *, now: datetime | None = None) -> bool:
        current = (now or datetime.now(UTC)).timestamp()
        horizon = current - 2 * self._tolerance
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        if delivery_id in self._seen:
            return False
        if len(self._seen) >= self._max:
            self._seen.popitem(last=False)
        self._seen[delivery_id] = max(current, float(timestamp) if timestamp.isdigit() else 0)
        return True


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
                "X-Strongroom-Signature": sign_payload(
                    body, timestamp, self._key, delivery_id=delivery_id
                ),
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
            # Imported here: the email package costs every process that wires a store a few
            # ms, and only a Retry-After given as a date needs its parser.
            import email.utils  # noqa: PLC0415

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
