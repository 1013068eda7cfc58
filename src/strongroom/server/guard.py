"""The one ASGI middleware in front of every route: what must happen before any handler runs.

In order: security headers on every answer; the client's address (from the socket, or from
``X-Forwarded-For`` only when the socket peer is a trusted proxy); a request-body limit (413
before anything parses the body); bearer-token authentication (401, audited, with Key Vault's
challenge on its paths); a per-identity rate limit (429 with Retry-After); then the acting
identity is set for the handler, and one access-log line is written without values or tokens.

A pure ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: it runs on every request,
so it must not add a task or a body copy per call.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from strongroom.core.actor import acting_as
from strongroom.core.audit import AuditAction
from strongroom.core.errors import AuthenticationError, StrongroomError
from strongroom.core.logging import get_logger
from strongroom.core.ratelimit import RateLimiter
from strongroom.server import onbehalf
from strongroom.server.errors import (
    RETRY_AFTER_SECONDS,
    error_body,
    is_keyvault_path,
    is_store_fault,
    status_for,
)
from strongroom.server.protocol import PEER_CERT_KEY
from strongroom.services.access.control import Principal
from strongroom.services.wiring import Strongroom

__all__ = ["CLIENT_KEY", "PRINCIPAL_KEY", "UI_PREFIX", "Guard", "GuardConfig"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PRINCIPAL_KEY = "strongroom.principal"
#: The console authenticates with its own session cookie; the guard gives it the client here.
CLIENT_KEY = "strongroom.client"
UI_PREFIX = "/ui"
#: Login answers callers who hold no token yet; it verifies, limits and audits by itself.
LOGIN_PATHS = frozenset({"/v1/auth/jwt/login", "/v1/auth/cert/login"})
#: Seal status and unseal answer without a token: the shares are the credential.
CUSTODY_PATHS = frozenset({"/v1/sys/seal-status", "/v1/sys/unseal"})
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", *LOGIN_PATHS, *CUSTODY_PATHS})
#: What a sealed service answers (everything else: 503 ``sealed``).
SEALED_PATHS = frozenset({"/healthz", "/readyz", *CUSTODY_PATHS})
ANONYMOUS = "anonymous"

log = get_logger("strongroom.http")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
#: The console's pages: its own scripts, styles and images only; nothing inline, no frames.
_UI_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    b"object-src 'none'"
)
# Referrer same-origin (not no-referrer): a browser then sends the page's Origin with its own
# form posts, which the console checks; nothing leaves for other sites.
_UI_REPLACED = {b"content-security-policy": _UI_CSP, b"referrer-policy": b"same-origin"}
_UI_HEADERS = [(k, _UI_REPLACED.get(k, v)) for k, v in _SECURITY_HEADERS]


class BodyTooLarge(HTTPException):
    """Raised into the app when a streamed body passes the limit (an HTTPException, so the
    framework's body parsing passes it on as a 413 rather than a generic 400)."""

    def __init__(self) -> None:
        super().__init__(413)


@dataclass(frozen=True, slots=True)
class GuardConfig:
    max_body_bytes: int
    trusted_proxies: tuple[Network, ...]
    kv_authority: str
    kv_resource: str | None
    metrics_public: bool = False

    @staticmethod
    def parse_proxies(
        text: str | None,
    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        if not text:
            return ()
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p)


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        config: GuardConfig,
        limiter: RateLimiter,
        failures: RateLimiter,
    ) -> None:
        self.app = app
        self.config = config
        self.limiter = limiter
        self.failures = failures  # failed authentications per client address

    # One function on purpose: it runs on every request, and each helper call costs.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0915
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        found = scope["app"].state.services  # None while sealed (server.seal_gate)
        wiring: Strongroom | None = None if found is None else found.app
        path: str = scope["path"]
        tls = scope.get("scheme") == "https"
        status_box = [0]
        console = path == UI_PREFIX or path.startswith(UI_PREFIX + "/")
        security = _UI_HEADERS if console else _SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.extend(security)
                if tls:
                    headers.append(_HSTS)
                message["headers"] = headers
            await send(message)

        headers = _headers(scope)
        ip = self._client_ip(scope, headers)
        user_agent = onbehalf.with_note(headers.get("user-agent"), headers.get(onbehalf.HEADER))
        identity = ANONYMOUS
        try:
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await self._reject(send_with_headers, path, 413, "request_too_large",
                                   f"the request body exceeds {self.max_body} bytes")  # fmt: skip
                return
            if wiring is None:
                await self._sealed(scope, receive, send_with_headers, (ip, user_agent))
                return
            public = path in PUBLIC_PATHS or (path == "/metrics" and self.config.metrics_public)
            if public or console:
                identity = await self._without_token(
                    scope, receive, send_with_headers, (ip, user_agent), console=console
                )
                return
            principal = await self._authenticate(
                wiring, scope, headers, ip, user_agent, send_with_headers
            )
            if principal is None:
                return
            identity = principal.identity
            wait = self.limiter.take(identity, time.monotonic())
            if wait > 0:
                wiring.metrics.inc("rate_limited_total")
                await self._reject(send_with_headers, path, 429, "throttled",
                                   "too many requests; retry later", retry_after=wait)  # fmt: skip
                return
            scope[PRINCIPAL_KEY] = principal
            with acting_as(identity, ip=ip, user_agent=user_agent, auth=principal.auth):
                await self.app(scope, self._limited(receive), send_with_headers)
        except BodyTooLarge:
            if status_box[0] == 0:
                await self._reject(send_with_headers, path, 413, "request_too_large",
                                   f"the request body exceeds {self.max_body} bytes")  # fmt: skip
        except ClientDisconnect:
            pass  # the client left (or its body timed out): nobody to answer
        except Exception as exc:  # the last line: no error leaves as a traceback or a detail
            await self._fault(send_with_headers, path, exc, answered=status_box[0] != 0)
        finally:
            if log.enabled("info"):
                log.info(
                    "request",
                    method=scope["method"],
                    path=path,
                    status=status_box[0],
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    identity=identity,
                    ip=ip,
                )

    async def _fault(self, send: Send, path: str, exc: Exception, *, answered: bool) -> None:
        """An error no handler mapped: a store's (driver or OS) is an outage, 503 with
        Retry-After; anything else a bare 500. Only the type is logged: a driver's message
        may quote a parameter, and a parameter may be a value."""
        if isinstance(exc, StrongroomError):  # raised before any route (authentication)
            status = status_for(exc)
            log.error("request failed", path=path, code=exc.code)
            wait = RETRY_AFTER_SECONDS if status == 503 else None
            if not answered:
                await self._reject(send, path, status, exc.code, str(exc), retry_after=wait)
            return
        outage = is_store_fault(exc)
        log.error("store failed" if outage else "unhandled error", path=path,
                  error=type(exc).__name__)  # fmt: skip
        if answered:
            return  # the answer has begun: the server closes the connection
        if outage:
            await self._reject(send, path, 503, "store_unavailable",
                               "a store is unavailable; retry later",
                               retry_after=RETRY_AFTER_SECONDS)  # fmt: skip
        else:
            await self._reject(send, path, 500, "internal", "internal error")

    async def _sealed(
        self, scope: Scope, receive: Receive, send: Send, client: tuple[str | None, str | None]
    ) -> None:
        """While sealed only health, readiness, seal status and unseal answer."""
        path = scope["path"]
        if path in SEALED_PATHS:
            await self._without_token(scope, receive, send, client, console=False)
            return
        await self._reject(send, path, 503, "sealed",
                           "the service is sealed: a quorum of key holders must unseal it",
                           retry_after=RETRY_AFTER_SECONDS)  # fmt: skip

    async def _without_token(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        client: tuple[str | None, str | None],
        *,
        console: bool,
    ) -> str:
        """A public path, or the console, which signs people in with its own session cookie
        inside its routes; the identity the console signed in (for the access log), else
        anonymous."""
        scope[CLIENT_KEY] = client  # the console and unseal record who came
        with acting_as(ANONYMOUS, ip=client[0], user_agent=client[1]):
            await self.app(scope, self._limited(receive), send)
        signed_in = scope.get(PRINCIPAL_KEY)
        return signed_in.identity if isinstance(signed_in, Principal) else ANONYMOUS

    @property
    def max_body(self) -> int:
        return self.config.max_body_bytes

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that stops a streamed body at the limit (no Content-Length to trust)."""
        seen = 0
        limit = self.max_body

        async def guarded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        return guarded

    def _client_ip(self, scope: Scope, headers: dict[str, str]) -> str | None:
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        if peer is None or not self.config.trusted_proxies:
            return peer
        forwarded = headers.get("x-forwarded-for")
        if not forwarded or not self._trusted(peer):
            return peer
        # Walk from the nearest hop: the first address not of a trusted proxy is the client.
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop[:64]
        return hops[0][:64] if hops else peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.config.trusted_proxies)

    async def _authenticate(
        self,
        wiring: Strongroom,
        scope: Scope,
        headers: dict[str, str],
        ip: str | None,
        user_agent: str | None,
        send: Send,
    ) -> Principal | None:
        path = scope["path"]
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        peer = scope.get(PEER_CERT_KEY)
        try:
            if not authorization and peer is not None and wiring.certs.enabled:
                # A client certificate the TLS layer chained (its dates unchecked there), and
                # no token: the certificate rules verify it in full and decide (a token, when
                # sent, always speaks for the caller instead).
                return await wiring.certs.authenticate(peer)
            if scheme.lower() != "bearer":
                raise AuthenticationError("a bearer token is required")
            return await wiring.access.authenticate(token.strip())
        except AuthenticationError as exc:
            extra = [(b"www-authenticate", self._challenge(path, headers).encode("latin-1"))]
            if not authorization and is_keyvault_path(path):
                # A Key Vault SDK sends its first request without credentials on purpose, to
                # learn the challenge: that is no failed login (neither limited nor audited).
                wiring.metrics.inc("unauthorized_attempts_total", reason="challenge")
                await self._reject(send, path, 401, "unauthorized", str(exc), extra=extra)
                return None
            # Valid tokens are never held back; failures beyond a burst per address are
            # answered 429 without an audit row each, so nobody can flood the audit log.
            wait = self.failures.take(f"ip:{ip}", time.monotonic())
            if wait > 0:
                wiring.metrics.inc("rate_limited_total")
                await self._reject(send, path, 429, "throttled",
                                   "too many failed authentications; retry later",
                                   retry_after=wait)  # fmt: skip
                return None
            wiring.metrics.inc(
                "unauthorized_attempts_total", reason="no_token" if not token else "bad_token"
            )
            await _audit_refusal(wiring, scope, ip, user_agent, exc)
            await self._reject(send, path, 401, exc.code, str(exc), extra=extra)
            return None

    def _challenge(self, path: str, headers: dict[str, str]) -> str:
        if not is_keyvault_path(path):
            return 'Bearer realm="strongroom"'
        resource = self.config.kv_resource or _resource_for(headers.get("host", "localhost"))
        authority = self.config.kv_authority
        return f'Bearer authorization="{authority}", resource="{resource}"'

    async def _reject(
        self,
        send: Send,
        path: str,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps(error_body(path, status, code, message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(extra or []),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _audit_refusal(
    wiring: Strongroom,
    scope: Scope,
    ip: str | None,
    user_agent: str | None,
    error: AuthenticationError,
) -> None:
    """One FAILURE event for a refused authentication, as the anonymous caller at ``ip``."""
    with acting_as(ANONYMOUS, ip=ip, user_agent=user_agent):
        try:
            async with wiring.audit.operation(
                AuditAction.AUTHENTICATE, None, method=scope["method"], path=scope["path"][:256]
            ):
                raise error
        except AuthenticationError:
            pass


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (the last one wins; latin-1 as HTTP defines)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _resource_for(host: str) -> str:
    """Key Vault's resource for a vault host: the host minus its first label (as
    ``myvault.vault.azure.net`` -> ``vault.azure.net``), so the SDK's check that the vault host
    ends with the resource's host passes; a one-label host is its own resource."""
    name, sep, port = host.rpartition(":")
    if not sep or not port.isdigit() or name.endswith("]"):
        name, port = host, ""
    labels = name.split(".")
    if len(labels) >= 2 and not name.replace(".", "").isdigit():
        name = ".".join(labels[1:])
    text = f"https://{name}{':' + port if port else ''}"
    return text.replace(",", "").replace('"', "")
