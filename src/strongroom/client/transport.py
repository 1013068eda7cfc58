"""One HTTPS client per process for the remote profile: pool, timeouts, retries, errors.

Idempotent calls (GET, PUT, DELETE, or a call marked idempotent) are retried with exponential
back-off and jitter when the server cannot be reached or answers 503; a POST that may have
reached the server is never sent twice. The token travels only in the Authorization header,
never in a URL, a log line, a ``repr`` or an exception.

The requests go through aiohttp, calls and the change feed's stream alike: a sequential read
costs the client about a fifth of the CPU that httpx's async stack took (measured over loopback
TLS with keep-alive), and a remote read is mostly client and server CPU. No proxy is taken from
the environment (a proxy would see every value), cookies are neither kept nor sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from strongroom.client import credentials
from strongroom.client.errors import error_from_response
from strongroom.client.stream import TRANSPORT_ERRORS as _TRANSPORT_ERRORS
from strongroom.client.stream import StreamAnswer
from strongroom.core.actor import claimed_actor
from strongroom.core.config import Settings
from strongroom.core.errors import (
    AuthenticationError,
    ConfigurationError,
    StoreUnavailableError,
    StrongroomError,
)
from strongroom.core.logging import get_logger

__all__ = [
    "ON_BEHALF_OF_HEADER",
    "RemoteClient",
    "RemoteConfig",
    "StreamAnswer",
    "check_addr",
    "segment",
    "tls_context",
]

log = get_logger("strongroom.client")

#: A name the caller claims (``acting_as``/``--as``): recorded by the server, never trusted.
ON_BEHALF_OF_HEADER = "X-Strongroom-On-Behalf-Of"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 2.0
#: Idle connections are dropped before the server's own keep-alive timer (5 s by default)
#: would close them under a request that is being sent.
_KEEP_ALIVE = 4.0


def segment(text: str) -> str:
    """One path segment, escaped (names are validated by the server; this keeps a bad one
    from reaching another route)."""
    return quote(text, safe="")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_addr(addr: str) -> str:
    """``https://host[:port]``; plain http only to this host (loopback), where nothing can
    listen in. Returns the address without a trailing slash."""
    addr = credentials.normalize_addr(addr)
    parts = urlsplit(addr)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError("STRONGROOM_ADDR must look like https://host:port")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError("STRONGROOM_ADDR is a server address: scheme, host and port")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            "STRONGROOM_ADDR must use https:// (http:// is allowed for loopback addresses only)"
        )
    return addr


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    """Where the server is, how to trust it and the token to present (hidden from ``repr``)."""

    addr: str
    token: str | None
    cacert: Path | None = None
    timeout: float = 10.0
    retries: int = 3
    #: The in-process value cache (seconds; 0: no cache) and its size.
    cache_ttl: float = 0.0
    cache_max_entries: int = 10_000

    def __repr__(self) -> str:
        return f"RemoteConfig(addr={self.addr!r}, cacert={self.cacert!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteConfig:
        """STRONGROOM_ADDR, STRONGROOM_TOKEN (else the credential file, if it was issued by
        this address) and STRONGROOM_CACERT."""
        if settings.addr is None:
            raise ConfigurationError("the remote profile needs STRONGROOM_ADDR")
        addr = check_addr(settings.addr)
        token = settings.token.get_secret_value() if settings.token is not None else None
        if token is None:
            stored = credentials.load()
            if stored is not None and stored.addr == addr:
                token = stored.token
        if settings.cacert is not None and not settings.cacert.is_file():
            raise ConfigurationError(f"STRONGROOM_CACERT names {settings.cacert}, not a file")
        return cls(
            addr=addr,
            token=token,
            cacert=settings.cacert,
            timeout=settings.remote_timeout_seconds,
            retries=settings.remote_retries,
            cache_ttl=settings.cache_ttl_seconds,
            cache_max_entries=settings.cache_max_entries,
        )


def tls_context(cacert: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cacert) if cacert is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _backoff(attempt: int) -> float:
    """Exponential back-off with full jitter (CSPRNG-drawn, as everything random here)."""
    ceiling: float = min(_BACKOFF_CAP, _BACKOFF_BASE * 2.0**attempt)
    return ceiling * (0.5 + secrets.randbelow(1000) / 2000)


def _tls_failure(exc: BaseException) -> bool:
    """Did the TLS handshake fail (a certificate that does not verify, a server that speaks
    no TLS)? Judged by type, never by message: aiohttp's messages name the SSL context."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiohttp.ClientSSLError | ssl.SSLError):
            return True
        if isinstance(getattr(seen, "os_error", None), ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _query(params: dict[str, Any] | None) -> list[tuple[str, str]] | None:
    """Query parameters as text: None is left out, a list repeats its key, a flag is
    ``true``/``false``."""
    if not params:
        return None
    query: list[tuple[str, str]] = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else (value,):
            if item is None:
                continue
            query.append(
                (key, ("true" if item else "false") if isinstance(item, bool) else str(item))
            )
    return query or None


def _decoded(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


class RemoteClient:
    """The process's connection to one server: keep-alive pool, retries, error mapping.

    The pool opens on the first call, in the event loop that makes it (aiohttp binds a session
    to its loop), and lives until :meth:`close`."""

    def __init__(self, config: RemoteConfig, *, user_agent: str = "strongroom-remote") -> None:
        self.config = config
        self.addr = config.addr
        self._user_agent = user_agent
        self._tls = tls_context(config.cacert) if config.addr.startswith("https:") else False
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(config.timeout, 5.0), sock_read=config.timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self.closed = False

    def _pool(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            if self.closed:
                raise StoreUnavailableError(f"the client of {self.addr} is closed")
            connector = aiohttp.TCPConnector(ssl=self._tls, limit=64, keepalive_timeout=_KEEP_ALIVE)
            # The bearer token goes with every call, so it is a header of the session: a call
            # then merges no headers of its own (on-behalf-of notes and streams aside).
            headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
            if self.config.token is not None:
                headers["Authorization"] = f"Bearer {self.config.token}"
            session = self._session = aiohttp.ClientSession(
                base_url=self.addr,
                connector=connector,
                timeout=self._timeout,
                trust_env=False,  # a proxy from the environment would see every value
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=headers,
            )
            # aiohttp sends a GET, PUT or DELETE once more when a kept-alive connection drops;
            # a PUT or DELETE this client marks as sent-once (a new version, a delete) must
            # not be, so every retry is decided here. The switch is private (aiohttp >= 3.11).
            session._retry_connection = False
        return session

    async def reset_connections(self) -> None:
        """Drop every kept-alive connection: after a cut link they may be dead without knowing
        it, and a request sent on one waits for the kernel's slow retransmissions."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __repr__(self) -> str:
        return f"RemoteClient(addr={self.addr!r})"

    @property
    def has_token(self) -> bool:
        return self.config.token is not None

    def _request_headers(self, *, stream: bool = False) -> dict[str, str] | None:
        """The headers a call adds to the session's (None: none); the token is the session's."""
        if self.config.token is None:
            raise AuthenticationError(
                f"no token for {self.addr}: set STRONGROOM_TOKEN or run `strongroom login`"
            )
        claimed = claimed_actor()
        if claimed is None and not stream:
            return None
        headers: dict[str, str] = {}
        if claimed is not None:
            headers[ON_BEHALF_OF_HEADER] = quote(claimed.id, safe="@.-_:")
        if stream:
            headers["Accept"] = "text/event-stream"
        return headers

    def _unreachable(self, exc: BaseException) -> StrongroomError:
        if isinstance(exc, aiohttp.ClientConnectorError) and _tls_failure(exc):
            return ConfigurationError(
                f"TLS verification of {self.addr} failed; set STRONGROOM_CACERT to the PEM "
                "bundle of the CA that signed the server's certificate"
            )
        return StoreUnavailableError(
            f"the strongroom server at {self.addr} cannot be reached ({type(exc).__name__})"
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool | None = None,
        long_poll: float = 0.0,
    ) -> Any:
        """Send one call; the decoded JSON answer (None for 204), or the typed error.
        ``long_poll``: seconds the server may hold the answer, added to the timeout."""
        retry = method.upper() in _IDEMPOTENT if idempotent is None else idempotent
        timeout = self._timeout
        if long_poll:
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=timeout.sock_connect,
                sock_read=self.config.timeout + long_poll,
            )
        status, content, headers = await self._send(
            method, path, json=json, params=params, retry=retry, limits=timeout
        )
        return self._answer(path, status, content, headers)

    async def request_bytes(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """GET a document that is not JSON (a signed report, a PEM key): its bytes, or the
        typed error (retried like any GET)."""
        status, content, headers = await self._send(
            "GET", path, json=None, params=params, retry=True, limits=self._timeout
        )
        if status >= 400:
            self._answer(path, status, content, headers)
        return content

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: dict[str, Any] | None,
        retry: bool,
        limits: aiohttp.ClientTimeout,
    ) -> tuple[int, bytes, Any]:
        """The status, body and headers of one call, tried again (when ``retry``) while the
        server cannot be reached or answers 503."""
        headers = self._request_headers()
        query = _query(params)
        attempts = 1 + (self.config.retries if retry else 0)
        for attempt in range(attempts):
            try:
                async with self._pool().request(
                    method, path, json=json, params=query, headers=headers, timeout=limits
                ) as response:
                    status = response.status
                    if status != 503 or attempt + 1 >= attempts:
                        return status, await response.read(), response.headers
            except _TRANSPORT_ERRORS as exc:
                error = self._unreachable(exc)
                if isinstance(error, ConfigurationError) or attempt + 1 >= attempts:
                    raise error from None
                log.info("server unreachable, retrying", addr=self.addr, attempt=attempt + 1)
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, path: str, status: int, content: bytes, headers: Any) -> Any:
        if status == 204:
            return None
        body = _decoded(content)
        if status >= 400:
            raise error_from_response(self.addr, path, status, body, headers) from None
        return body

    def raise_for(self, response: StreamAnswer, path: str) -> None:
        """Raise the typed error of a stream's error answer (read in full with ``aread``)."""
        self._answer(path, response.status_code, response.content, response.headers)

    def stream(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        connect_timeout: float | None = None,
    ) -> contextlib.AbstractAsyncContextManager[StreamAnswer]:
        """A streaming GET (the change feed); the caller enters it as a context manager. It
        never times out once connected; ``connect_timeout`` bounds reaching the server (a cut
        link drops the attempt's packets, and the kernel would retry it for minutes)."""
        sent = self._request_headers(stream=True) or {}
        sent.update(headers or {})
        return self._streaming(path, _query(params), sent, connect_timeout)

    @contextlib.asynccontextmanager
    async def _streaming(
        self,
        path: str,
        query: list[tuple[str, str]] | None,
        headers: dict[str, str],
        connect_timeout: float | None,
    ) -> AsyncIterator[StreamAnswer]:
        """A stream whose failure to open is a typed error, as a request's (a certificate
        that does not verify is a ConfigurationError naming TLS)."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=None
        )
        try:
            response = await self._pool().get(path, params=query, headers=headers, timeout=timeout)
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        try:
            yield StreamAnswer(response, self.addr)
        finally:
            response.close()  # an endless body: the connection goes, never back to the pool

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.reset_connections()

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
