"""The HTTP connection: uvicorn's httptools protocol with the limits a secrets service needs.

uvicorn closes a keep-alive connection that stays idle after an answer, but it sets no limit on
how long a client may take to send a request's headers or its body, nor on how many connections
one address may hold: a client that trickles bytes (or sends nothing) holds a connection, and
its memory, for as long as it likes. This protocol adds, per connection:

- a header timeout: a request's headers must be complete within it, counted from the
  connection's start for the first request and from the request's first byte afterwards (a
  connection that never sends anything is closed by it too);
- a body timeout: the whole body within it, counted from the end of the headers;
- the keep-alive timeout between requests (uvicorn's own timer, set from the same settings);
- a cap on open connections per client address (not for ``STRONGROOM_TRUSTED_PROXIES``, whose
  connections carry many clients): one over it is answered 429 with Retry-After and closed.

A request cut by a timeout gets ``408`` (unless its answer has begun) and the connection is
closed; the application sees the client leave. The limits come from the app that
:func:`strongroom.server.app.create_app` built (``app.state.connection_limits``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import ssl
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from strongroom.core.config import Settings
from strongroom.core.logging import get_logger

__all__ = [
    "PEER_CERT_KEY",
    "PROTOCOL",
    "ConnectionLimits",
    "GuardedHttpProtocol",
    "uvicorn_options",
]

log = get_logger("strongroom.http")

#: What uvicorn is told to use (a dotted path, so worker processes import it by name).
PROTOCOL = "strongroom.server.protocol:GuardedHttpProtocol"
#: The one endpoint whose answer streams until the client leaves (the change feed).
STREAM_PATH = "/v1/events/feed"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Phase = Literal["headers", "body"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection limits (seconds; ``max_per_address`` 0 turns the cap off)."""

    header_timeout: float = 10.0
    body_timeout: float = 20.0
    keep_alive_timeout: float = 5.0
    max_per_address: int = 100
    exempt: tuple[Network, ...] = ()

    @classmethod
    def from_settings(
        cls, settings: Settings, exempt: tuple[Network, ...] = ()
    ) -> ConnectionLimits:
        return cls(
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            keep_alive_timeout=settings.http_keep_alive_seconds,
            max_per_address=settings.http_max_connections_per_address,
            exempt=exempt,
        )

    def capped(self, address: str) -> bool:
        """Whether connections from ``address`` count against the per-address cap."""
        if self.max_per_address <= 0:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return True
        return not any(ip in net for net in self.exempt)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn options every strongroom server runs with (``strongroom serve`` and the
    tests' real servers alike)."""
    return {
        "http": PROTOCOL,
        "timeout_keep_alive": _whole_seconds(settings.http_keep_alive_seconds),
        "access_log": False,  # strongroom writes its own access log, without tokens or queries
        "proxy_headers": False,  # X-Forwarded-For is strongroom's to judge (trusted proxies)
        "server_header": False,
    }


def _whole_seconds(seconds: float) -> int:
    """uvicorn counts its keep-alive timeout in whole seconds (at least one)."""
    return max(1, math.ceil(seconds))


# Open connections per client address, per server (weakly held: a stopped server's go away).
_OPEN: weakref.WeakKeyDictionary[Any, Counter[str]] = weakref.WeakKeyDictionary()
_TOO_MANY = json.dumps(
    {"error": {"code": "too_many_connections", "message": "too many connections from this "
                                                          "address; retry later"}}
).encode()  # fmt: skip


def _limits_of(app: Any) -> ConnectionLimits:
    """The limits of the strongroom app under uvicorn's wrappers (defaults for another app)."""
    for _ in range(5):
        limits = getattr(getattr(app, "state", None), "connection_limits", None)
        if isinstance(limits, ConnectionLimits):
            return limits
        app = getattr(app, "app", None)
        if app is None:
            break
    return ConnectionLimits()


#: The scope key under which a client certificate (DER) reaches the app (mTLS): the handshake
#: proved the client holds its key and that it chains to the client CA bundle; its dates are
#: the application's to check (see :func:`client_certificate_context`).
PEER_CERT_KEY = "strongroom.peer_cert"
#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME (the ssl module passes verify flags through unchanged).
NO_CHECK_TIME = 0x200000


def client_certificate_context(
    config: Any, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """uvicorn's SSL context, asking for client certificates, but leaving their dates to the
    application: an expired or not-yet-valid certificate from a configured CA then gets a 401
    ``cert_expired`` with an audit event, where a TLS alert would leave no trace. Nothing is
    trusted for it: the certificate rules verify the whole chain again, dates included, at the
    service's clock (:mod:`strongroom.services.access.cert_auth`). A certificate from another
    CA still fails the handshake: the ssl module has no verify callback to let it through."""
    context = default()
    context.verify_flags |= NO_CHECK_TIME
    return context


class CoalescedWrites:
    """A transport whose writes in one turn of the event loop leave together.

    uvicorn writes an answer's status line and headers, then its body, as two writes: over TLS
    that is two records and two socket sends, and the client wakes twice. Here they are joined
    and sent once, at the end of the loop turn that wrote them (a stream's later writes leave
    at the end of theirs). Closing sends what is pending first; aborting drops it.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body timeouts and a per-address cap; it
    hands the client certificate the TLS handshake verified to the app (uvicorn does not)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer_cert: bytes | None = None
        self.limits = _limits_of(self.app)
        self.timeout_keep_alive = _whole_seconds(self.limits.keep_alive_timeout)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Phase | None = None
        #: While the parser runs, the timer a phase wants waits for it to return: a request
        #: that arrived whole (most do) begins and ends its phases without ever arming one.
        self._parsing = False
        self._wanted: tuple[Phase, float] | None = None
        self._counted: str | None = None

    # -- the connection ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """A graceful shutdown waits for answers in progress; a change-feed stream never ends
        by itself, so its connection is closed (the client resumes elsewhere by event id)."""
        cycle = self.cycle
        streaming = cycle is not None and not cycle.response_complete
        if streaming and cycle is not None and cycle.scope.get("path") == STREAM_PATH:
            self.transport.abort()  # the stream sees its client leave; the client resumes
            return
        super().shutdown()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:  # the handshake is done: the chain checked, not the dates
            self._peer_cert = ssl_object.getpeercert(binary_form=True)
        address = self.client[0] if self.client else None
        if address is not None and self.limits.capped(address):
            counts = _OPEN.setdefault(self.server_state, Counter())
            if counts[address] >= self.limits.max_per_address:
                log.warning("connection refused", reason="too_many_connections", ip=address)
                self._answer(429, _TOO_MANY, retry_after=True)
                return
            counts[address] += 1
            self._counted = address
        self._arm("headers", self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted is not None:
            counts = _OPEN.get(self.server_state)
            if counts is not None:
                counts[self._counted] -= 1
                if counts[self._counted] <= 0:
                    del counts[self._counted]
            self._counted = None
        super().connection_lost(exc)

    # -- the request's phases (httptools parser callbacks) -----------------------------------

    def data_received(self, data: bytes) -> None:
        self._parsing = True
        try:
            super().data_received(data)
        finally:
            self._parsing = False
        wanted, self._wanted = self._wanted, None
        if wanted is not None and self._deadline is None and not self.transport.is_closing():
            self._arm(*wanted)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._peer_cert is not None:
            self.scope[PEER_CERT_KEY] = self._peer_cert  # type: ignore[literal-required]
        if self._phase is None:  # the first request's clock started with the connection
            self._arm("headers", self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._arm("body", self.limits.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # -- timers ------------------------------------------------------------------------------

    def _arm(self, phase: Phase, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        if self._parsing:
            self._wanted = (phase, seconds)
        else:
            self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase, self._wanted = None, None, None

    def _expired(self, phase: Phase) -> None:
        self._deadline, self._phase = None, None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        log.info("connection closed", reason=f"{phase}_timeout",
                 ip=self.client[0] if self.client else None)  # fmt: skip
        if cycle is not None and not cycle.response_complete:
            # The application sees the client leave; anything it sends now is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if not answering:
            body = json.dumps(
                {
                    "error": {
                        "code": "request_timeout",
                        "message": f"the request's {phase} took too long",
                    }
                }
            )
            self._answer(408, body.encode())  # fmt: skip
        else:
            self.transport.close()

    def _answer(self, status: int, body: bytes, *, retry_after: bool = False) -> None:
        """Write a complete answer straight to the socket and close it."""
        reason = {408: b"Request Timeout", 429: b"Too Many Requests"}[status]
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-content-type-options: nosniff\r\n",
            b"cache-control: no-store\r\n",
            b"connection: close\r\n",
        ]
        if retry_after:
            head.append(b"retry-after: 1\r\n")
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()
