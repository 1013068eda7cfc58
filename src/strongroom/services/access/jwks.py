"""An issuer's signing keys: fetched over HTTPS (OIDC discovery or a JWKS URL), cached, and
trusted only until their max age.

An unknown ``kid`` refetches the set, at most once per ``jwks_refresh_seconds`` (so a flood of
forged kids cannot turn into a flood of requests to the issuer). Keys older than half their max
age are refreshed on use; if the issuer is down they keep working until the max age, then
every login fails closed. Only public keys (RSA, EC, OKP) are taken from a set: a symmetric
``oct`` key there is ignored.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from strongroom.core.authconfig import JwtMethod
from strongroom.core.errors import LoginRefusedError
from strongroom.core.logging import get_logger

__all__ = ["JwksCache", "KeySource"]

log = get_logger("strongroom.access.jwks")

_MAX_DOCUMENT_BYTES = 512 * 1024
_PUBLIC_KTY = frozenset({"RSA", "EC", "OKP"})
KeySource = Callable[[str | None], Any]


def _unavailable(why: str) -> LoginRefusedError:
    message = f"the issuer's signing keys are unavailable: {why}"
    return LoginRefusedError("jwks_unavailable", message)


class JwksCache:
    """The keys of one JWT method; ``keys_for(kid)`` answers the candidate verification keys."""

    def __init__(
        self,
        method: JwtMethod,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.method = method
        self._monotonic = monotonic
        self._transport = transport
        self._keys: dict[str | None, Any] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._static = [load_pem_public_key(pem.encode()) for pem in method.public_keys]
        #: Fetches made (tests and metrics read it).
        self.fetches = 0

    def _fresh(self, now: float) -> bool:
        at = self._fetched_at
        return at is not None and now - at < self.method.jwks_max_age_seconds

    def _may_attempt(self, now: float) -> bool:
        at = self._attempted_at
        return at is None or now - at >= self.method.jwks_refresh_seconds

    async def keys_for(self, kid: str | None) -> list[Any]:
        """Keys that may have signed a token with this ``kid`` (LoginRefusedError if none)."""
        if self._static:
            return list(self._static)
        now = self._monotonic()
        half_life = self._fetched_at is not None and (
            now - self._fetched_at >= self.method.jwks_max_age_seconds / 2
        )
        if (kid not in self._keys or half_life or not self._fresh(now)) and self._may_attempt(now):
            async with self._lock:
                if self._may_attempt(self._monotonic()):
                    await self._refresh()
        now = self._monotonic()
        if not self._fresh(now):
            raise _unavailable("none fetched within their max age")
        if kid is not None and kid in self._keys:
            return [self._keys[kid]]
        if kid is None and self._keys:
            return list(self._keys.values())
        raise LoginRefusedError("jwt_unknown_kid", "the token's key id is not among the issuer's")

    async def _refresh(self) -> None:
        self._attempted_at = self._monotonic()
        self.fetches += 1
        try:
            keys = await self._fetch()
        except LoginRefusedError as exc:
            log.warning("jwks refresh failed", method=self.method.name, code=exc.code)
            return  # the keys held stay usable until their max age
        self._keys = keys
        self._fetched_at = self._monotonic()
        log.info("jwks refreshed", method=self.method.name, keys=len(keys))

    def _client(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = True
        if self.method.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(self.method.ca_file))
        return httpx.AsyncClient(
            timeout=self.method.http_timeout_seconds,
            verify=verify,
            transport=self._transport,
            follow_redirects=False,
            trust_env=False,
        )

    async def _fetch(self) -> dict[str | None, Any]:
        async with self._client() as client:
            url = self.method.jwks_url
            if self.method.discovery:
                document = await _get_json(client, self._discovery_url())
                if document.get("issuer") != self.method.issuer:
                    raise _unavailable("the discovery document names another issuer")
                url = document.get("jwks_uri")
                if not isinstance(url, str) or not url.startswith("https://"):
                    raise _unavailable("the discovery document has no https jwks_uri")
            if url is None:  # config: exactly one source, and not static here
                raise _unavailable("no key source is configured")
            jwks = await _get_json(client, url)
        found: dict[str | None, Any] = {}
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise _unavailable("the key set is not a JWKS")
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") not in _PUBLIC_KTY:
                continue
            if "d" in entry:  # a private key published by mistake: refuse to use it at all
                continue
            try:
                found[entry.get("kid")] = PyJWK.from_dict(entry).key
            except PyJWKError:
                continue
        if not found:
            raise _unavailable("the key set holds no usable public key")
        return found

    def _discovery_url(self) -> str:
        return self.method.issuer.rstrip("/") + "/.well-known/openid-configuration"


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as answer:
            if answer.status_code != 200:
                raise _unavailable(f"the issuer answered {answer.status_code}")
            body = bytearray()
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > _MAX_DOCUMENT_BYTES:
                    raise _unavailable("the issuer's document is too large")
    except httpx.HTTPError as exc:
        raise _unavailable(f"cannot reach the issuer ({type(exc).__name__})") from exc
    try:
        document = json.loads(bytes(body))
    except ValueError as exc:
        raise _unavailable("the issuer's document is not JSON") from exc
    if not isinstance(document, dict):
        raise _unavailable("the issuer's document is not a JSON object")
    return document
