"""Console sign-in and sessions: methods plug in, sessions live in the database.

A sign-in method proves who someone is once (a bearer token today; OIDC/JWT or a client
certificate can be added as further :class:`SignInMethod` objects) and names a *subject* it can
check again later (the token's id). The session row keeps the identity, the method and the
subject; every request resumes the principal through the method, so a revoked token or a
changed policy takes effect on the next click. The cookie holds 256 random bits; only their
SHA-256 is stored. Sessions end after ``STRONGROOM_UI_IDLE_MINUTES`` without a request, after
``STRONGROOM_UI_SESSION_HOURS`` in all, or at sign-out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from strongroom.core.errors import AuthenticationError, TamperedError
from strongroom.db.session_store import SessionRecord

if TYPE_CHECKING:
    from strongroom.services.access.control import Principal
    from strongroom.services.wiring import Strongroom

__all__ = [
    "COOKIE",
    "METHODS",
    "Session",
    "SignInMethod",
    "TokenSignIn",
    "end_session",
    "resume_session",
    "start_session",
]

COOKIE = "__Host-strongroom-session"
#: Write last_seen at most this often (a write per click would cost every page a commit).
_TOUCH_EVERY = timedelta(seconds=30)


class SignInMethod(Protocol):
    """One way to sign in to the console."""

    name: str

    async def sign_in(self, app: Strongroom, form: dict[str, str]) -> Principal:
        """The principal the form's credential proves; AuthenticationError otherwise."""
        ...

    async def resume(self, app: Strongroom, subject: str) -> Principal:
        """The principal of an existing session, checked again now."""
        ...

    def subject(self, principal: Principal) -> str:
        """What :meth:`resume` needs to check the session again."""
        ...


class TokenSignIn:
    """Sign in with a strongroom bearer token (``srt_...``); never stored, only its id."""

    name = "token"

    async def sign_in(self, app: Strongroom, form: dict[str, str]) -> Principal:
        return await app.access.authenticate(form.get("token", "").strip())

    async def resume(self, app: Strongroom, subject: str) -> Principal:
        return await app.access.resume_token(subject)

    def subject(self, principal: Principal) -> str:
        return principal.token_id


#: The methods the console offers, by name. Another method registers itself here.
METHODS: dict[str, SignInMethod] = {"token": TokenSignIn()}


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf: str
    method: str
    record: SessionRecord

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("ascii", "replace")).digest()


async def start_session(app: Strongroom, method: SignInMethod, principal: Principal) -> str:
    """A new session for ``principal``; returns the cookie value (shown to the browser only)."""
    now = app.clock()
    session_id = secrets.token_urlsafe(32)
    record = SessionRecord(
        id_hash=_hash(session_id),
        identity=principal.identity,
        method=method.name,
        subject=method.subject(principal),
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        last_seen=now,
        expires_at=now + timedelta(hours=app.settings.ui_session_hours),
    )
    await app.sessions.add(record, now)
    return session_id


async def resume_session(app: Strongroom, session_id: str | None) -> Session:
    """The live session of a cookie, its principal checked again; AuthenticationError when
    there is none, it went idle or expired, or its credential no longer holds."""
    if not session_id or len(session_id) > 128:
        raise AuthenticationError("sign in to use the console")
    key = _hash(session_id)
    try:
        record = await app.sessions.get(key)
    except TamperedError:  # already alerted and audited by the integrity hook
        raise AuthenticationError("sign in to use the console") from None
    now = app.clock()
    if record is None:
        raise AuthenticationError("sign in to use the console")
    idle = timedelta(minutes=app.settings.ui_idle_minutes)
    if record.expires_at <= now or record.last_seen + idle <= now:
        await app.sessions.delete(key)
        raise AuthenticationError("the console session ended; sign in again")
    method = METHODS.get(record.method)
    if method is None:
        raise AuthenticationError("this sign-in method is no longer offered; sign in again")
    principal = await method.resume(app, record.subject)
    if principal.identity != record.identity:
        raise AuthenticationError("sign in again")
    if now - record.last_seen >= _TOUCH_EVERY:
        await app.sessions.touch(key, now)
    return Session(principal=principal, csrf=record.csrf, method=record.method, record=record)


async def end_session(app: Strongroom, session_id: str | None) -> None:
    if session_id and len(session_id) <= 128:
        await app.sessions.delete(_hash(session_id))
