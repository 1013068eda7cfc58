"""Who may call the HTTP service: bearer tokens bound to identities, and their policies.

A token is ``srt_<id>_<secret>``: 256 random bits of secret, shown once at creation and stored
only as HMAC-SHA256 under a key derived from the master key, so the database alone cannot
confirm a guessed token. The id finds the record; the hash is compared in constant time.
Verified tokens are cached for ``STRONGROOM_AUTH_CACHE_SECONDS``, and only while no token,
policy or binding changed anywhere in the deployment (:mod:`.invalidation`): a revocation takes
effect in every process at once.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from strongroom.core.actor import current_actor
from strongroom.core.audit import AuditAction
from strongroom.core.deadline import within
from strongroom.core.errors import (
    AccessObjectNotFoundError,
    AuthenticationError,
    PermissionDeniedError,
    StoreUnavailableError,
    ValidationError,
)
from strongroom.core.logging import get_logger
from strongroom.core.policy import (
    Action,
    Policy,
    allowed,
    builtin_policies,
    revocation_grant,
    validate_identity,
)
from strongroom.core.validation import validate_text
from strongroom.db.access_store import AccessStore, TokenRecord
from strongroom.services.access.invalidation import AccessInvalidation
from strongroom.services.access.policies import PolicyAdministration

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = ["AccessControl", "IssuedToken", "Principal"]

log = get_logger("strongroom.access")

TOKEN_PREFIX = "srt"  # noqa: S105 (a prefix, not a secret)
_TOKEN = re.compile(r"srt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
MAX_TTL = timedelta(days=3650)


#: Decisions one principal remembers before it starts over (see :meth:`Principal.may`).
MAX_DECISIONS = 512


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the identity its token is bound to, and that identity's policies."""

    identity: str
    token_id: str
    policies: tuple[Policy, ...]
    #: How the caller authenticated, for the audit trail: method, role, token accessor, JWT
    #: sub and iss. Never the credential itself.
    auth: dict[str, str] = field(default_factory=dict)
    _decided: dict[tuple[Action, str | None], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def may(self, action: Action, name: str | None) -> bool:
        """Whether the policies allow ``action`` on ``name``. Remembered per action and name:
        the policies of a principal never change (a policy change makes new principals), and
        a cached caller asks the same question on every request."""
        decided = self._decided.get((action, name))
        if decided is None:
            decided = allowed(self.policies, action, name)
            if len(self._decided) >= MAX_DECISIONS:
                self._decided.clear()
            self._decided[(action, name)] = decided
        return decided

    def holds(self, action: Action) -> bool:
        """True if some grant allows ``action`` on some pattern (listings are then filtered)."""
        return any(
            action in g.actions or Action.ADMIN in g.actions
            for p in self.policies
            for g in p.grants
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: ``token`` is shown once and never stored."""

    token: str
    record: TokenRecord

    def __repr__(self) -> str:
        return f"IssuedToken(id={self.record.id!r}, identity={self.record.identity!r})"


def _principal(record: TokenRecord, policies: list[Policy]) -> Principal:
    meta = record.meta or {}
    auth = {"method": str(meta.get("method", "token")), "accessor": record.id}
    for key in ("mount", "role", "sub", "iss", "fingerprint"):
        if isinstance(meta.get(key), str):
            auth[key] = meta[key]
    return Principal(
        identity=record.identity, token_id=record.id, policies=tuple(policies), auth=auth
    )


def _digest(keyed: crypto_hmac.HMAC, secret: str) -> bytes:
    """The keyed hash of a token's secret, from a copy of the keyed state (keying is most of
    an HMAC's cost on a token this short, and every request hashes one)."""
    mac = keyed.copy()
    mac.update(secret.encode("ascii"))
    return mac.finalize()


class AccessControl(PolicyAdministration):
    """Tokens, policies and bindings over an :class:`AccessStore`; every change is audited."""

    def __init__(
        self,
        app: Strongroom,
        store: AccessStore,
        key: bytes,
        cache_seconds: float,
        invalidation: AccessInvalidation | None = None,
    ) -> None:
        self._app = app
        self.store = store
        self._key = key
        self._keyed = crypto_hmac.HMAC(key, hashes.SHA256())  # never finalized: copied per use
        self._cache_seconds = cache_seconds
        #: token id -> (monotonic expiry, digest, principal, the epoch it was filled under)
        self._cache: dict[str, tuple[float, bytes, Principal, object]] = {}
        self._builtin = builtin_policies()
        self.invalidation = invalidation or AccessInvalidation()

    # -- authentication -----------------------------------------------------------------

    async def authenticate(self, token: str | None) -> Principal:
        """The principal ``token`` proves; AuthenticationError for anything else."""
        match = _TOKEN.fullmatch(token) if token else None
        if match is None:
            raise AuthenticationError("a valid bearer token is required")
        token_id, secret = match.groups()
        digest = _digest(self._keyed, secret)
        now = time.monotonic()
        cached = self._cache.get(token_id)
        # Read before the lookup: a change committed meanwhile leaves the entry stale at once.
        epoch = await self.invalidation.epoch()
        if (
            cached is not None
            and cached[0] > now
            and cached[3] == epoch
            and hmac.compare_digest(cached[1], digest)
        ):
            return cached[2]
        try:
            # Every request authenticates: a token store that stops answering fails the
            # request within the audit timeout (the two share a database), never holds it.
            record, policies = await within(
                self._app.settings.audit_timeout_seconds, self._lookup(token_id)
            )
        except TimeoutError as exc:
            raise StoreUnavailableError("the token store did not answer in time") from exc
        if record is None or policies is None or not hmac.compare_digest(record.digest, digest):
            raise AuthenticationError("the bearer token is not valid")
        if record.revoked_at is not None:
            raise AuthenticationError("the bearer token was revoked")
        clock_now = self._app.clock()
        if record.expires_at is not None and record.expires_at <= clock_now:
            raise AuthenticationError("the bearer token has expired")
        principal = _principal(record, policies)
        ttl = self._cache_seconds
        if record.expires_at is not None:
            ttl = min(ttl, (record.expires_at - clock_now).total_seconds())
        if ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token_id] = (now + ttl, digest, principal, epoch)
        return principal

    async def _lookup(self, token_id: str) -> tuple[TokenRecord | None, list[Policy] | None]:
        record = await self.store.get_token(token_id)
        if record is None:
            return None, None
        extra = (record.meta or {}).get("policies")
        return record, await self._load_policies(record.identity, extra)

    async def resume_token(self, token_id: str) -> Principal:
        """The principal of a token already proven once (a console session made from it):
        refused if the token was revoked or expired since; policies as they are now."""
        try:
            record, policies = await within(
                self._app.settings.audit_timeout_seconds, self._lookup(token_id)
            )
        except TimeoutError as exc:
            raise StoreUnavailableError("the token store did not answer in time") from exc
        if record is None or policies is None or record.revoked_at is not None:
            raise AuthenticationError("the token this session was made from was revoked")
        if record.expires_at is not None and record.expires_at <= self._app.clock():
            raise AuthenticationError("the token this session was made from has expired")
        return _principal(record, policies)

    async def _load_policies(self, identity: str, extra: list[str] | None = None) -> list[Policy]:
        """The policies bound to ``identity``, plus ``extra`` (a login token's role policies)."""
        found = []
        names = await self.store.policies_of(identity)
        for name in [*names, *(n for n in extra or [] if n not in names)]:
            if name in self._builtin:
                found.append(self._builtin[name])
                continue
            record = await self.store.get_policy(name)
            if record is not None:  # a binding to a deleted policy grants nothing
                found.append(Policy.build(record.name, record.grants, record.description))
        return found

    async def policies_for(self, identity: str, extra: list[str]) -> list[Policy]:
        """The policies ``identity`` holds, plus ``extra`` (a certificate rule's)."""
        return await self._load_policies(identity, extra)

    def invalidate(self) -> None:
        """Forget this process's cached principals."""
        self._cache.clear()

    async def _revoke(self, token_ids: list[str], now: datetime) -> None:
        """Revoke tokens and bump the access generation in one transaction: no process can
        see the revocation committed and its cached principal still current, and a failed
        bump leaves the tokens as they were."""
        bump = self.invalidation.shared_key
        await self.store.revoke_tokens(token_ids, current_actor().id, now, bump=bump)
        self._cache.clear()
        if bump is None:
            await self.invalidation.changed()
        else:
            self.invalidation.committed()

    async def _changed(self) -> None:
        """After a committed change to tokens, policies or bindings: every process's cached
        principals are stale from now on."""
        self._cache.clear()
        await self.invalidation.changed()

    # -- tokens ---------------------------------------------------------------------------

    async def create_token(
        self,
        identity: str,
        *,
        policies: list[str] | None = None,
        description: str = "",
        ttl: timedelta | None = None,
        meta: dict[str, Any] | None = None,
        max_ttl: timedelta | None = None,
    ) -> IssuedToken:
        """A new token for ``identity`` (attaching ``policies`` to it first, if given). A login
        passes ``meta`` (its provenance and role policies, which bind to this token only) and
        ``max_ttl``, how far renewals may extend it."""
        validate_identity(identity)
        validate_text(description, "a token description", 256)
        if ttl is not None and not (timedelta(0) < ttl <= MAX_TTL):
            raise ValidationError("a token's time to live is between 1 second and 10 years")
        for name in policies or []:
            await self._require_policy(name)
        now = self._app.clock()
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            id=token_id,
            identity=identity,
            digest=_digest(self._keyed, secret),
            description=description,
            created_by=current_actor().id,
            created_at=now,
            expires_at=now + ttl if ttl is not None else None,
            revoked_at=None,
            revoked_by=None,
            meta=meta,
            max_expires_at=now + max_ttl if max_ttl is not None else None,
        )
        async with self._app.audit.operation(
            AuditAction.ACCESS_CHANGE, None, operation="token.create", identity=identity,
            token_id=token_id, policies=list(policies or []),
            auth_method=(meta or {}).get("method", "token"),
        ):  # fmt: skip
            for name in policies or []:
                await self.store.attach(identity, name)
            await self.store.add_token(record)
        if policies:  # new bindings; a new token alone is in nobody's cache
            await self._changed()
        log.info("token created", token_id=token_id, identity=identity)
        return IssuedToken(token=f"{TOKEN_PREFIX}_{token_id}_{secret}", record=record)

    async def list_tokens(self, identity: str | None = None) -> list[TokenRecord]:
        if identity is not None:
            validate_identity(identity)
        return await self.store.list_tokens(identity)

    async def get_token(self, token_id: str) -> TokenRecord:
        record = await self.store.get_token(_token_id(token_id))
        if record is None:
            raise AccessObjectNotFoundError(f"no token with id {token_id!r}")
        return record

    async def revoke_token(self, token_id: str) -> TokenRecord:
        """Revoke a token at once (idempotent: revoking a revoked token changes nothing)."""
        token_id = _token_id(token_id)
        async with self._app.audit.operation(
            AuditAction.ACCESS_CHANGE, None, operation="token.revoke", token_id=token_id
        ) as op:
            record = await self.get_token(token_id)
            op.details["identity"] = record.identity
            await self._revoke([token_id], self._app.clock())  # at once, not after the audit
        log.info("token revoked", token_id=token_id)
        return await self.get_token(token_id)

    async def revoke_identity(self, identity: str) -> list[str]:
        """Revoke every live token of ``identity`` at once (one audited change); the ids."""
        validate_identity(identity)
        now = self._app.clock()
        async with self._app.audit.operation(
            AuditAction.ACCESS_CHANGE, None, operation="identity.revoke", identity=identity
        ) as op:
            live = [t.id for t in await self.store.list_tokens(identity) if t.revoked_at is None]
            await self._revoke(live, now)
            op.details["count"] = len(live)
        log.info("identity revoked", identity=identity, tokens=len(live))
        return live

    async def renew_token(self, token_id: str) -> TokenRecord:
        """Extend a login token by its role's TTL, never past its max TTL (audited). A token
        made by hand has no renewal: it is refused with ValidationError."""
        token_id = _token_id(token_id)
        async with self._app.audit.operation(
            AuditAction.ACCESS_CHANGE, None, operation="token.renew", token_id=token_id
        ) as op:
            record = await self.get_token(token_id)
            op.details["identity"] = record.identity
            ttl = (record.meta or {}).get("ttl_seconds")
            if record.max_expires_at is None or not isinstance(ttl, int):
                raise ValidationError("only tokens issued by a login can be renewed")
            now = self._app.clock()
            if record.revoked_at is not None or (
                record.expires_at is not None and record.expires_at <= now
            ):
                raise AuthenticationError("the token was revoked or has expired")
            expires = min(now + timedelta(seconds=ttl), record.max_expires_at)
            await self.store.renew_token(token_id, expires)
        self.invalidate()  # a later expiry: other caches refill when theirs ends
        return await self.get_token(token_id)

    # -- authorization --------------------------------------------------------------------

    async def require_revocation(
        self, principal: Principal, secret_name: str, *, immediate: bool
    ) -> None:
        """Raise PermissionDeniedError (audited) unless ``principal`` may ask to revoke
        ``secret_name``: ``revoke-request``, or ``revoke-break-glass`` when ``immediate``."""
        await self.require(principal, revocation_grant(immediate=immediate), secret_name)

    async def require(self, principal: Principal, action: Action, name: str | None) -> None:
        """Raise PermissionDeniedError (audited as a failure) unless ``principal`` may act."""
        if principal.may(action, name):
            return
        held = tuple(p.name for p in principal.policies)
        refused_by = (
            f"no grant of its policies ({', '.join(held)}) allows it"
            if held
            else "it holds no policy"
        )
        error = PermissionDeniedError(
            f"identity {principal.identity!r} may not {action.value} "
            + (f"secret {name!r}" if name is not None else "every secret")
            + f": {refused_by}",
            policies=held,
        )
        audit_action = _AUDIT_ACTION.get(action, AuditAction.ACCESS_CHANGE)
        try:
            async with self._app.audit.operation(
                audit_action, name, denied_action=action.value, token_id=principal.token_id,
                policies=list(held),
            ):  # fmt: skip
                raise error
        except PermissionDeniedError:
            pass
        self._app.metrics.inc("unauthorized_attempts_total", reason="forbidden")
        raise error


def _token_id(text: str) -> str:
    """A token id, or the id inside a whole token (so a pasted token can be revoked)."""
    match = _TOKEN.fullmatch(text)
    if match is not None:
        return match.group(1)
    if not isinstance(text, str) or not re.fullmatch(r"[0-9a-f]{16}", text):
        raise ValidationError("a token id is 16 hexadecimal characters")
    return text


_AUDIT_ACTION = {
    Action.READ: AuditAction.READ,
    Action.LIST: AuditAction.LIST,
    Action.WRITE: AuditAction.UPDATE,
    Action.DELETE: AuditAction.DELETE,
    Action.ROTATE: AuditAction.ROTATE,
    Action.REVOKE_REQUEST: AuditAction.REVOKE,
    Action.REVOKE_APPROVE: AuditAction.REVOKE,
    Action.REVOKE_BREAK_GLASS: AuditAction.REVOKE,
    Action.AUDIT_READ: AuditAction.DESCRIBE,
}
