"""What an edge asks its upstream before anything changes locally: which names it holds."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from strongroom.backends.base import name_key
from strongroom.client.transport import RemoteClient
from strongroom.core.errors import AccessError, ConfigurationError, StrongroomError
from strongroom.core.logging import get_logger

__all__ = ["in_scope", "probe_upstream"]

log = get_logger("strongroom.edge")


def in_scope(name: str, scopes: Sequence[str]) -> bool:
    """Names compare case-insensitively (as in Key Vault), globs too."""
    key = name_key(name)
    return any(fnmatch.fnmatchcase(key, name_key(scope)) for scope in scopes)


async def probe_upstream(client: RemoteClient, scopes: Sequence[str]) -> list[str] | None:
    """The names in scope the site's credential may list upstream, before anything changes
    locally. A refusal (credential, certificate) or a scope that matches nothing raises; an
    unreachable upstream answers None (the edge starts offline, within its bound)."""
    try:
        listed = await client.request("GET", "/v1/secrets")
    except (AccessError, ConfigurationError):
        raise
    except StrongroomError as exc:
        log.warning("upstream unreachable at start", error=exc.code)
        return None
    names = [d["name"] for d in listed if in_scope(str(d.get("name", "")), scopes)]
    if not names:
        raise ConfigurationError(
            f"the scope {', '.join(scopes)} matches no secret the site's credential may list "
            "at the upstream"
        )
    return names
