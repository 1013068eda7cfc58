"""Who is acting: a context variable every operation reads and every audit event carries."""

from __future__ import annotations

import contextvars
import getpass
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from strongroom.core.errors import ValidationError
from strongroom.core.storable import clean_text

__all__ = ["Actor", "acting_as", "claimed_actor", "current_actor", "default_actor"]


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    ip: str | None = None
    user_agent: str | None = None
    #: How the server verified this caller (method, role, token accessor, JWT sub/iss), which
    #: every audit event records; never the credential. None in local mode.
    auth: Mapping[str, str] | None = None


@cache
def default_actor() -> Actor:
    """The OS user at this host, e.g. ``alice@dispatch-01``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(id=f"{user}@{socket.gethostname()}", ip=None, user_agent="strongroom-library")


_current: contextvars.ContextVar[Actor | None] = contextvars.ContextVar(
    "strongroom_actor", default=None
)


def current_actor() -> Actor:
    return _current.get() or default_actor()


def claimed_actor() -> Actor | None:
    """The actor a caller named with :func:`acting_as`, or None when nobody was named."""
    return _current.get()


class acting_as:
    """Run the block as ``actor_id`` (from ``ip`` with ``user_agent``):
    ``with acting_as("ciso") as actor: ...``.

    Works across ``await`` in the block, and tasks started inside inherit it. A class, not a
    generator: the server enters one for every request.
    """

    __slots__ = ("_actor", "_token")

    def __init__(
        self,
        actor_id: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        auth: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(actor_id, str) or not actor_id:
            raise ValidationError("actor id must be a non-empty string")
        self._actor = Actor(
            id=clean_text(actor_id, 256) or actor_id,
            ip=clean_text(ip, 64),
            user_agent=clean_text(user_agent, 512),
            auth=auth,
        )
        self._token: contextvars.Token[Actor | None] | None = None

    def __enter__(self) -> Actor:
        if self._token is not None:
            raise RuntimeError("acting_as is entered once per with block")
        self._token = _current.set(self._actor)
        return self._actor

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
