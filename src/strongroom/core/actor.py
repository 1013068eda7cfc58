"""Who is acting: a context variable every operation reads and every audit event carries."""

from __future__ import annotations

import contextvars
import getpass
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    return _UNSTORABLE.sub("\ufffd", str(text))[:limit]


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


@contextmanager
def acting_as(
    actor_id: str,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    auth: Mapping[str, str] | None = None,
) -> Iterator[Actor]:
    """Run the block as ``actor_id`` (from ``ip`` with ``user_agent``).

    Works across ``await`` in the block, and tasks started inside inherit it.
    """
    if not isinstance(actor_id, str) or not actor_id:
        raise ValidationError("actor id must be a non-empty string")
    actor = Actor(
        id=_clean(actor_id, 256) or actor_id,
        ip=_clean(ip, 64),
        user_agent=_clean(user_agent, 512),
        auth=auth,
    )
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)
