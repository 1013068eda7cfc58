"""Who is acting: a context variable every operation reads and every audit event carries."""

from __future__ import annotations

import contextvars
import getpass
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from strongroom.core.errors import ValidationError

__all__ = ["Actor", "acting_as", "claimed_actor", "current_actor", "default_actor"]


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    ip: str | None = None
    user_agent: str | None = None
    #: How the server verified this caller (method, role, token accessor, JWT sub/iss), which
    #: every audit event records; never the credential. None in local mode.
    auth: Mapping[str, str] | None = None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _clean(text: str | None, limit: int) -> str | None:
    """As audit rows store text: NUL (refused by PostgreSQL) and lone surrogates become
    U+FFFD; cut at ``limit``."""
    if text is None:
        return None
    text = str(text)
    if not text.isascii() or "\x00" in text:  # the scan only where it can find something
        text = _UNSTORABLE.sub("\ufffd", text)
    return text[:limit]


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
            id=_clean(actor_id, 256) or actor_id,
            ip=_clean(ip, 64),
            user_agent=_clean(user_agent, 512),
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
