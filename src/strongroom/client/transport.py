"""One HTTPS client per process for the remote profile: pool, timeouts, retries, errors.

Idempotent calls (GET, PUT, DELETE, or a call marked idempotent) are retried with exponential
back-off and jitter when the server cannot be reached or answers 503; a POST that may have
reached the server is never sent twice. The token travels only in the Authorization header,
never in a URL, a log line, a ``repr`` or an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from strongroom.client import credentials
from strongroom.client.errors import error_from_response
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
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc)


class RemoteClient:
    """The process's connection to one server: keep-alive pool, retries, error mapping."""

    def __init__(self, config: RemoteConfig, *, user_agent: str = "strongroom-remote") -> None:
        self.config = config
        self.addr = config.addr
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self._http = self._pool()
        self.closed = False

    def _pool(self) -> httpx.AsyncClient:
        config = self.config
        return httpx.AsyncClient(
            base_url=config.addr,
            verify=tls_context(config.cacert),
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 5.0)),
            limits=httpx.Limits(max_keepalive_connections=32, max_connections=64),
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would see every value
        )

    async def reset_connections(self) -> None:
        """Drop every kept-alive connection: after a cut link they may be dead without knowing
        it, and a request sent on one waits for the kernel's slow retransmissions."""
        if not self.closed:
            old, self._http = self._http, self._pool()
            await old.aclose()

    def __repr__(self) -> str:
        return f"RemoteClient(addr={self.addr!r})"

    @property
    def has_token(self) -> bool:
        return self.config.token is not None

    def _request_headers(self, *, stream: bool = False) -> dict[str, str]:
        if self.config.token is None:
            raise AuthenticationError(
                f"no token for {self.addr}: set STRONGROOM_TOKEN or run `strongroom login`"
            )
        headers = dict(self._headers)
        headers["Authorization"] = f"Bearer {self.config.token}"
        claimed = claimed_actor()
        if claimed is not None:
            headers[ON_BEHALF_OF_HEADER] = quote(claimed.id, safe="@.-_:")
        if stream:
            headers["Accept"] = "text/event-stream"
        return headers

    def _unreachable(self, exc: httpx.HTTPError) -> StrongroomError:
        if isinstance(exc, httpx.ConnectError) and _tls_failure(exc):
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
        headers = self._request_headers()
        retry = method.upper() in _IDEMPOTENT if idempotent is None else idempotent
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempts = 1 + (self.config.retries if retry else 0)
        for attempt in range(attempts):
            try:
                response = await self._http.request(
                    method, path, json=json, params=query or None, headers=headers,
                    timeout=httpx.USE_CLIENT_DEFAULT
                    if not long_poll
                    else self.config.timeout + long_poll,
                )  # fmt: skip
            except httpx.HTTPError as exc:
                error = self._unreachable(exc)
                if isinstance(error, ConfigurationError) or attempt + 1 >= attempts:
                    raise error from None
                log.info("server unreachable, retrying", addr=self.addr, attempt=attempt + 1)
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code == 503 and attempt + 1 < attempts:
                await response.aclose()
                await asyncio.sleep(_backoff(attempt))
                continue
            return self._answer(path, response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def request_bytes(self, path: str, params: dict[str, Any] | None = None) -> bytes:
        """GET a document that is not JSON (a signed report, a PEM key): its bytes, or the
        typed error (retried like any GET)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        headers = self._request_headers()
        for attempt in range(1 + self.config.retries):
            try:
                response = await self._http.get(path, params=query or None, headers=headers)
            except httpx.HTTPError as exc:
                error = self._unreachable(exc)
                if isinstance(error, ConfigurationError) or attempt >= self.config.retries:
                    raise error from None
                await asyncio.sleep(_backoff(attempt))
                continue
            if response.status_code >= 400:
                self._answer(path, response)
            return response.content
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, path: str, response: httpx.Response) -> Any:
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise error_from_response(
                self.addr, path, response.status_code, body, response.headers
            ) from None
        return body

    def raise_for(self, response: httpx.Response, path: str) -> None:
        """Raise the typed error of an error answer that was read in full (a stream's)."""
        self._answer(path, response)

    def stream(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        connect_timeout: float | None = None,
    ) -> Any:
        """A streaming GET (the change feed); the caller enters it as a context manager. It
        never times out once connected; ``connect_timeout`` bounds reaching the server (a cut
        link drops the attempt's packets, and the kernel would retry it for minutes)."""
        sent = self._request_headers(stream=True)
        sent.update(headers or {})
        timeout = httpx.Timeout(None, connect=connect_timeout)
        return self._typed(
            self._http.stream("GET", path, params=params, headers=sent, timeout=timeout)
        )

    @contextlib.asynccontextmanager
    async def _typed(self, opening: Any) -> AsyncIterator[httpx.Response]:
        """A stream whose failure to open is a typed error, as a request's (a certificate
        that does not verify is a ConfigurationError naming TLS)."""
        try:
            response = await opening.__aenter__()
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        try:
            yield response
        finally:
            await opening.__aexit__(None, None, None)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._http.aclose()

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
