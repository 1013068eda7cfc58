"""Logins that exchange a proof for a token (JWT, client certificate) before any token exists:
one unauthenticated POST to the server, answered with a short-lived token or a typed error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from strongroom.client.errors import error_from_response
from strongroom.client.transport import RemoteConfig, tls_context
from strongroom.core.errors import ConfigurationError, StoreUnavailableError

__all__ = ["exchange"]


async def exchange(
    config: RemoteConfig,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    user_agent: str = "strongroom-remote",
) -> dict[str, Any]:
    """POST ``body`` to ``path`` (over the client certificate, if given); the issued token's
    record (with ``token``)."""
    context = tls_context(config.cacert)
    if client_cert is not None:
        try:
            context.load_cert_chain(client_cert, client_key)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot load the client certificate: {exc}") from exc
    async with httpx.AsyncClient(
        base_url=config.addr, verify=context, timeout=config.timeout, trust_env=False,
        follow_redirects=False,
    ) as http:  # fmt: skip
        try:
            response = await http.post(path, json=body or {}, headers={"User-Agent": user_agent})
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(
                f"the strongroom server at {config.addr} refused or dropped the login "
                f"({type(exc).__name__}; a client certificate it does not trust ends the "
                "handshake)"
            ) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code >= 400 or not isinstance(answer, dict):
        raise error_from_response(config.addr, path, response.status_code, answer,
                                  response.headers) from None  # fmt: skip
    return answer
