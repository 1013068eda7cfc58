"""JWT/OIDC login: a workload's platform token (Kubernetes, Azure, GitHub Actions, any OIDC
issuer) exchanged for a short-lived strongroom token.

PyJWT verifies: the signature with the issuer's keys (:mod:`.jwks`), only the asymmetric
algorithms the role allows, ``exp``/``nbf``/``iat`` with the method's leeway, ``iss`` and
``aud``; only then are the claims matched against the role (a pure function of the config).
The header is read before verification for one reason only, to pick the key by ``kid``.

Every refusal is audited as a failed AUTHENTICATE with its code and never the token; failures
are rate-limited per address and per role, and a valid token is never held back by them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jwt
from jwt import exceptions as jwt_errors

from strongroom.core.actor import acting_as, current_actor
from strongroom.core.audit import AuditAction
from strongroom.core.authconfig import AuthConfig, JwtMethod, JwtRole, claims_match, identity_for
from strongroom.core.errors import LoginRefusedError, RateLimitedError
from strongroom.core.logging import get_logger
from strongroom.core.ratelimit import RateLimiter
from strongroom.services.access.control import AccessControl, IssuedToken
from strongroom.services.access.jwks import JwksCache

if TYPE_CHECKING:
    import httpx

    from strongroom.services.audit.log import AuditLog

__all__ = ["JwtLogin", "verify_jwt"]

log = get_logger("strongroom.access.jwt")

# PyJWT's errors, most specific first, as the codes a refusal carries.
_CODES: list[tuple[type[Exception], str, str]] = [
    (jwt_errors.ExpiredSignatureError, "jwt_expired", "the token has expired"),
    (jwt_errors.ImmatureSignatureError, "jwt_not_yet_valid", "the token is not valid yet"),
    (jwt_errors.InvalidAudienceError, "jwt_audience", "the token is for another audience"),
    (jwt_errors.InvalidIssuerError, "jwt_issuer", "the token is from another issuer"),
    (jwt_errors.MissingRequiredClaimError, "jwt_claims", "the token lacks a required claim"),
    (jwt_errors.InvalidAlgorithmError, "jwt_algorithm", "the token's algorithm is not allowed"),
    (jwt_errors.InvalidKeyError, "jwt_algorithm", "the token's algorithm does not fit the key"),
    (jwt_errors.InvalidSignatureError, "jwt_signature", "the token's signature does not verify"),
    (jwt_errors.DecodeError, "jwt_malformed", "the token is not a well-formed JWT"),
    (jwt_errors.InvalidTokenError, "jwt_invalid", "the token is not valid"),
]


def _refusal(exc: Exception) -> LoginRefusedError:
    for kind, code, message in _CODES:
        if isinstance(exc, kind):
            return LoginRefusedError(code, message)
    return LoginRefusedError("jwt_invalid", "the token is not valid")


async def verify_jwt(
    token: str, method: JwtMethod, role: JwtRole, keys: JwksCache
) -> dict[str, Any]:
    """The claims of ``token`` once every check passed; LoginRefusedError otherwise."""
    if not isinstance(token, str) or len(token.encode("utf-8", "replace")) > method.max_token_bytes:
        raise LoginRefusedError("jwt_too_large", f"a JWT is at most {method.max_token_bytes} bytes")
    try:
        header = jwt.get_unverified_header(token)  # only to choose the key and refuse early
    except jwt_errors.PyJWTError as exc:
        raise LoginRefusedError("jwt_malformed", "the token is not a well-formed JWT") from exc
    if header.get("alg") not in role.algorithms:
        raise LoginRefusedError("jwt_algorithm", "the token's algorithm is not allowed")
    kid = header.get("kid")
    candidates = await keys.keys_for(kid if isinstance(kid, str) else None)
    failure: Exception | None = None
    for key in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(role.algorithms),
                audience=list(method.audiences),
                issuer=method.issuer,
                leeway=method.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt_errors.InvalidSignatureError as exc:
            failure = exc  # another of the candidate keys may have signed it
            continue
        except jwt_errors.PyJWTError as exc:
            raise _refusal(exc) from exc
        return claims
    raise _refusal(failure or jwt_errors.InvalidSignatureError())


class JwtLogin:
    """The configured JWT methods, their key caches and the failed-login limits."""

    def __init__(
        self,
        access: AccessControl,
        audit: AuditLog,
        config: AuthConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        failure_limit: tuple[float, int] = (1.0, 10),
    ) -> None:
        """``failure_limit``: failed logins per second, and the burst, per address and role."""
        self._access = access
        self._audit = audit
        self.config = config
        self.keys = {n: JwksCache(m, transport=transport) for n, m in config.jwt.items()}
        self.failures_by_address = RateLimiter(*failure_limit)
        self.failures_by_role = RateLimiter(*failure_limit)

    def _method(self, name: str | None) -> JwtMethod:
        methods = self.config.jwt
        if name is None and len(methods) == 1:
            return next(iter(methods.values()))
        if name is None or name not in methods:
            raise LoginRefusedError("unknown_method", "no such JWT auth method is configured")
        return methods[name]

    async def login(self, token: str, *, role: str, method: str | None = None) -> IssuedToken:
        """A strongroom token for the workload ``token`` proves (audited either way)."""
        caller = current_actor()
        details: dict[str, Any] = {"auth_method": "jwt", "mount": method, "role": role}
        try:
            chosen = self._method(method)
            details["mount"] = chosen.name
            bound = chosen.roles.get(role)
            if bound is None:
                raise LoginRefusedError("unknown_role", "no such role in this auth method")
            claims = await verify_jwt(token, chosen, bound, self.keys[chosen.name])
            identity = identity_for(bound, claims) if claims_match(bound, claims) else None
            if identity is None:
                raise LoginRefusedError("role_mismatch", "the token's claims do not match the role")
        except LoginRefusedError as exc:
            await self.refuse(exc, details, caller.ip, caller.user_agent)
            raise
        meta = {
            "method": "jwt", "mount": chosen.name, "role": bound.name,
            "sub": _claim_text(claims, "sub"), "iss": _claim_text(claims, "iss"),
            "policies": list(bound.policies), "ttl_seconds": bound.ttl_seconds,
        }  # fmt: skip
        with acting_as(identity, ip=caller.ip, user_agent=caller.user_agent):
            issued = await self._access.create_token(
                identity,
                description=f"jwt login {chosen.name}/{bound.name}"[:256],
                ttl=timedelta(seconds=bound.ttl_seconds),
                meta=meta,
                max_ttl=timedelta(seconds=bound.max_ttl_seconds),
            )
            async with self._audit.operation(
                AuditAction.AUTHENTICATE, None, **details, token_id=issued.record.id,
                sub=meta["sub"], iss=meta["iss"],
            ):  # fmt: skip
                pass
        log.info("jwt login", mount=chosen.name, role=bound.name, identity=identity)
        return issued

    async def refuse(
        self, exc: LoginRefusedError, details: Mapping[str, Any], ip: str | None, ua: str | None
    ) -> None:
        """A refused login (JWT or certificate): count the failure; beyond the limits answer
        429 without an audit row each (so nobody can flood the audit log), else audit it."""
        now = time.monotonic()
        role_key = f"{details.get('mount')}/{details.get('role')}"[:200]
        waits = (
            self.failures_by_address.take(f"ip:{ip}", now),
            self.failures_by_role.take(role_key, now),
        )
        if max(waits) > 0:
            raise RateLimitedError(
                "too many failed logins; retry later", retry_after=max(waits)
            ) from exc
        with acting_as("anonymous", ip=ip, user_agent=ua):
            try:
                async with self._audit.operation(AuditAction.AUTHENTICATE, None, **details):
                    raise exc
            except LoginRefusedError:
                pass


def _claim_text(claims: Mapping[str, Any], key: str) -> str | None:
    value = claims.get(key)
    return value[:256] if isinstance(value, str) else None
