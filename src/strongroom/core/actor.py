"""Who is acting: a context variable every operation reads and every audit event carries."""

from __future__ import annotations

import contextvars
import getpass
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from strongroom.core.errors import ValidationError

__all__ = ["Actor", "acting_as", "current_actor", "default_actor"]


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    ip: str | None = None
    user_agent: str | None = None


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


@contextmanager
def acting_as(
    actor_id: str, *, ip: str | None = None, user_agent: str | None = None
) -> Iterator[Actor]:
    """Run the block as ``actor_id`` (from ``ip`` with ``user_agent``).

    Works across ``await`` in the block, and tasks started inside inherit it.
    """
    if not isinstance(actor_id, str) or not actor_id:
        raise ValidationError("actor id must be a non-empty string")
    actor = Actor(id=actor_id, ip=ip, user_agent=user_agent)
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)
