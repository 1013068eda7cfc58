"""Auth methods beyond static tokens, as configured in a TOML file (``STRONGROOM_AUTH_CONFIG``).

A JWT method names an issuer, where its keys come from (OIDC discovery, a JWKS URL or static
public keys) and the audiences it must name; each of its roles binds claims (exact or glob) to
an identity and policies, with a token lifetime. Everything is checked here, when the file is
read: a role that could never match, an unknown algorithm or a symmetric one is a
ConfigurationError at start-up, never a surprise at login. Matching claims is a pure function.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.core.errors import ConfigurationError
from strongroom.core.policy import validate_identity, validate_policy_name

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "CERT_FIELDS",
    "AuthConfig",
    "CertRule",
    "JwtMethod",
    "JwtRole",
    "claim_value",
    "claims_match",
    "identity_for",
    "load_auth_config",
]

#: The only algorithms a role may allow: signatures a public key verifies. No ``none``, no HMAC
#: (an HS256 token "signed" with the issuer's public key must never verify).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_NAME = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
_TEMPLATE_FIELD = re.compile(r"\{([^{}]{1,128})\}")
DEFAULT_TTL = 3600
DEFAULT_MAX_TTL = 86400


@dataclass(frozen=True, slots=True)
class JwtRole:
    """Which tokens a role accepts (every claim rule must hold) and what a login gets."""

    name: str
    #: claim path -> accepted values (glob patterns); a list claim matches if any item does.
    claims: Mapping[str, tuple[str, ...]]
    #: The identity name; ``{claim}`` fields are filled from the verified claims.
    identity: str
    policies: tuple[str, ...]
    ttl_seconds: int = DEFAULT_TTL
    max_ttl_seconds: int = DEFAULT_MAX_TTL
    algorithms: tuple[str, ...] = ("RS256", "ES256")


@dataclass(frozen=True, slots=True)
class JwtMethod:
    """One trusted issuer and its roles."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    roles: Mapping[str, JwtRole]
    discovery: bool = False
    jwks_url: str | None = None
    public_keys: tuple[str, ...] = ()
    ca_file: Path | None = None
    leeway_seconds: int = 30
    #: An unknown ``kid`` refetches the keys at most once per this interval.
    jwks_refresh_seconds: float = 30.0
    #: Keys fetched longer ago than this are no longer trusted (login fails closed).
    jwks_max_age_seconds: float = 3600.0
    http_timeout_seconds: float = 5.0
    max_token_bytes: int = 16 * 1024


@dataclass(frozen=True, slots=True)
class CertRule:
    """Client certificates (mTLS) issued by ``ca_file`` whose subject and SANs match (every
    listed rule must hold; values are exact or globs) get ``identity`` and ``policies``."""

    name: str
    ca_file: Path
    #: field -> accepted values (globs): ``cn``, ``dns``, ``uri``, ``email`` (SANs: any matches)
    match: Mapping[str, tuple[str, ...]]
    identity: str
    policies: tuple[str, ...]
    ttl_seconds: int = DEFAULT_TTL
    max_ttl_seconds: int = DEFAULT_MAX_TTL


@dataclass(frozen=True, slots=True)
class AuthConfig:
    jwt: Mapping[str, JwtMethod] = field(default_factory=dict)
    cert: Mapping[str, CertRule] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> AuthConfig:
        return cls()


def load_auth_config(path: Path | None) -> AuthConfig:
    """The configuration in ``path`` (TOML); no path, no extra methods."""
    if path is None:
        return AuthConfig.empty()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the auth configuration {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"the auth configuration {path} is not TOML: {exc}") from exc
    return parse_auth_config(data)


def parse_auth_config(data: Mapping[str, Any]) -> AuthConfig:
    unknown = set(data) - {"jwt", "cert"}
    if unknown:
        raise ConfigurationError(f"unknown auth configuration sections: {sorted(unknown)}")
    methods = {name: _method(name, body) for name, body in _table(data, "jwt").items()}
    rules = {name: _cert_rule(name, body) for name, body in _table(data, "cert").items()}
    return AuthConfig(jwt=methods, cert=rules)


CERT_FIELDS = frozenset({"cn", "dns", "uri", "email"})
_CERT_KEYS = {"ca_file", "match", "identity", "policies", "ttl_seconds", "max_ttl_seconds"}


def _entry(what: str, kind: str, name: str, body: object, keys: set[str]) -> Mapping[str, Any]:
    """A named table of the file, with only the keys its kind knows."""
    if not _NAME.fullmatch(name) or not isinstance(body, Mapping):
        raise ConfigurationError(f"{what}: a {kind} is a table named by letters, digits . _ -")
    if unknown := set(body) - keys:
        raise ConfigurationError(f"{what}: unknown keys {sorted(unknown)}")
    return body


def _cert_rule(name: str, body: object) -> CertRule:
    what = f"cert rule {name!r}"
    body = _entry(what, "rule", name, body, _CERT_KEYS)
    ca_file = body.get("ca_file")
    if not isinstance(ca_file, str) or not ca_file:
        raise ConfigurationError(f"{what}: ca_file (the CA that issues these certificates)")
    match = {k: _strings(v, f"{what}: match {k!r}") for k, v in _table(body, "match").items()}
    if not match or set(match) - CERT_FIELDS or any(not v for v in match.values()):
        raise ConfigurationError(
            f'{what}: match at least one of {sorted(CERT_FIELDS)} (e.g. dns = "*.fleet")'
        )
    identity = body.get("identity")
    if not isinstance(identity, str):
        raise ConfigurationError(f"{what}: identity is required")
    validate_identity(_TEMPLATE_FIELD.sub("x", identity))
    policies = _strings(body.get("policies", ()), f"{what}: policies")
    for policy in policies:
        validate_policy_name(policy)
    ttl = int(_positive(body, "ttl_seconds", DEFAULT_TTL, what))
    max_ttl = int(_positive(body, "max_ttl_seconds", max(DEFAULT_MAX_TTL, ttl), what))
    if ttl > max_ttl:
        raise ConfigurationError(f"{what}: ttl_seconds exceeds max_ttl_seconds")
    return CertRule(
        name=name, ca_file=Path(ca_file), match=match, identity=identity, policies=policies,
        ttl_seconds=ttl, max_ttl_seconds=max_ttl,
    )  # fmt: skip


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key} must be a table")
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{what} must be a string or a list of strings")
    return tuple(value)


def _positive(body: Mapping[str, Any], key: str, default: float, what: str) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(f"{what}: {key} must be a positive number")
    return float(value)


_METHOD_KEYS = {
    "issuer", "audiences", "roles", "discovery", "jwks_url", "public_keys", "ca_file",
    "leeway_seconds", "jwks_refresh_seconds", "jwks_max_age_seconds", "http_timeout_seconds",
}  # fmt: skip


def _method(name: str, body: object) -> JwtMethod:
    what = f"jwt method {name!r}"
    body = _entry(what, "method", name, body, _METHOD_KEYS)
    issuer = body.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise ConfigurationError(f"{what}: issuer is required")
    audiences = _strings(body.get("audiences", ()), f"{what}: audiences")
    if not audiences:
        raise ConfigurationError(f"{what}: at least one audience is required")
    discovery = body.get("discovery", False) is True
    jwks_url = body.get("jwks_url")
    public_keys = _strings(body.get("public_keys", ()), f"{what}: public_keys")
    sources = int(discovery) + int(jwks_url is not None) + int(bool(public_keys))
    if sources != 1:
        raise ConfigurationError(
            f"{what}: keys come from exactly one of discovery = true, jwks_url or public_keys"
        )
    for url in (issuer if discovery else None, jwks_url):
        if url is not None and not (isinstance(url, str) and url.startswith("https://")):
            raise ConfigurationError(f"{what}: keys are fetched over https:// only")
    ca_file = body.get("ca_file")
    roles = {rn: _role(f"{what}, role {rn!r}", rn, rb) for rn, rb in _table(body, "roles").items()}
    if not roles:
        raise ConfigurationError(f"{what}: at least one role is required")
    leeway = body.get("leeway_seconds", 30)
    if isinstance(leeway, bool) or not isinstance(leeway, int) or not 0 <= leeway <= 300:
        raise ConfigurationError(f"{what}: leeway_seconds is 0-300")
    return JwtMethod(
        name=name,
        issuer=issuer,
        audiences=audiences,
        roles=roles,
        discovery=discovery,
        jwks_url=jwks_url,
        public_keys=public_keys,
        ca_file=Path(ca_file) if isinstance(ca_file, str) else None,
        leeway_seconds=leeway,
        jwks_refresh_seconds=_positive(body, "jwks_refresh_seconds", 30.0, what),
        jwks_max_age_seconds=_positive(body, "jwks_max_age_seconds", 3600.0, what),
        http_timeout_seconds=_positive(body, "http_timeout_seconds", 5.0, what),
    )


_ROLE_KEYS = {"claims", "identity", "policies", "ttl_seconds", "max_ttl_seconds", "algorithms"}


def _role(what: str, name: str, body: object) -> JwtRole:
    body = _entry(what, "role", name, body, _ROLE_KEYS)
    claims = {k: _strings(v, f"{what}: claim {k!r}") for k, v in _table(body, "claims").items()}
    if not claims or any(not v for v in claims.values()):
        # A role with no claim rule would admit every token the issuer ever signed.
        raise ConfigurationError(f"{what}: bind at least one claim (e.g. sub) to a value")
    identity = body.get("identity")
    if not isinstance(identity, str):
        raise ConfigurationError(f"{what}: identity is required")
    validate_identity(_TEMPLATE_FIELD.sub("x", identity))
    policies = _strings(body.get("policies", ()), f"{what}: policies")
    for policy in policies:
        validate_policy_name(policy)
    algorithms = _strings(body.get("algorithms", ["RS256", "ES256"]), f"{what}: algorithms")
    if not algorithms or set(algorithms) - ASYMMETRIC_ALGORITHMS:
        raise ConfigurationError(
            f"{what}: algorithms are among {sorted(ASYMMETRIC_ALGORITHMS)} (no none, no HMAC)"
        )
    ttl = int(_positive(body, "ttl_seconds", DEFAULT_TTL, what))
    max_ttl = int(_positive(body, "max_ttl_seconds", max(DEFAULT_MAX_TTL, ttl), what))
    if ttl > max_ttl:
        raise ConfigurationError(f"{what}: ttl_seconds exceeds max_ttl_seconds")
    return JwtRole(
        name=name, claims=claims, identity=identity, policies=policies, ttl_seconds=ttl,
        max_ttl_seconds=max_ttl, algorithms=algorithms,
    )  # fmt: skip


_MISSING = object()


def claim_value(claims: Mapping[str, Any], path: str) -> object:
    """A claim by name, else by ``/``-separated path into nested objects (Kubernetes puts
    ``kubernetes.io/serviceaccount/name`` at ``{"kubernetes.io": {"serviceaccount": ...}}``)."""
    if path in claims:
        return claims[path]
    node: object = claims
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _matches(value: object, patterns: tuple[str, ...]) -> bool:
    if isinstance(value, list):
        return any(_matches(item, patterns) for item in value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    text = str(value)
    # fnmatchcase: no case folding (a subject is case-sensitive); [ and ] are not special here.
    return any(fnmatch.fnmatchcase(text, p.replace("[", "[[]")) for p in patterns)


def claims_match(role: JwtRole | CertRule, claims: Mapping[str, Any]) -> bool:
    """True when every rule of ``role`` holds for ``claims`` (already verified): a JWT's
    claims, or a certificate's fields (``cn``, and lists ``dns``, ``uri``, ``email``)."""
    rules = role.claims if isinstance(role, JwtRole) else role.match
    return all(_matches(claim_value(claims, path), pats) for path, pats in rules.items())


def identity_for(role: JwtRole | CertRule, claims: Mapping[str, Any]) -> str | None:
    """The role's identity with ``{claim}`` fields filled in; None if a field is missing or
    would make an invalid identity (so a crafted claim cannot forge another name's shape)."""

    def fill(match: re.Match[str]) -> str:
        value = claim_value(claims, match.group(1))
        if isinstance(value, list) and len(value) == 1:
            value = value[0]  # a certificate's one DNS name, say
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise KeyError(match.group(1))
        return str(value)

    try:
        name = _TEMPLATE_FIELD.sub(fill, role.identity)
        return validate_identity(name)
    except (KeyError, ValueError):
        return None
