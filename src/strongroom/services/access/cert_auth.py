"""Client certificates (mTLS) for terminals and consoles: a certificate presented to
``strongroom serve --tls-client-ca`` is mapped here to an identity and policies.

The TLS handshake proves the client holds the certificate's key and that it chains to the
bundle (another CA's certificate fails there); it leaves the dates to this module, so that an
expired certificate is a 401 with an audit event rather than an untraced TLS alert. Nothing is
trusted before a full chain verification here, with ``cryptography.x509.verification`` at the
service's clock: the leaf's validity window (401 ``cert_expired``), then for each rule a client
verifier whose only trust anchor is that rule's CA, which must have issued the certificate
directly (so a bundle of several CAs cannot let one CA's certificates pass another's rule); the
anchor's own dates, key usage for client authentication and the CA's constraints are checked
with it. No rule's CA verifying the chain is a 401 ``cert_untrusted``. Then the subject CN and
SANs against the rule's globs: the first rule that holds decides; none is a 401
``cert_mismatch``. Principals are cached per certificate fingerprint, under the same access
generation as tokens, so a policy change reaches certificate callers at once too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from strongroom.core.actor import acting_as, current_actor
from strongroom.core.audit import AuditAction
from strongroom.core.authconfig import AuthConfig, CertRule, claims_match, identity_for
from strongroom.core.errors import ConfigurationError, LoginRefusedError
from strongroom.core.logging import get_logger
from strongroom.services.access.control import AccessControl, IssuedToken, Principal

if TYPE_CHECKING:
    from strongroom.core.clock import Clock
    from strongroom.services.access.jwt_login import JwtLogin
    from strongroom.services.audit.log import AuditLog

__all__ = ["CertAuth", "certificate_fields"]

log = get_logger("strongroom.access.cert")
_MAX_CACHED = 10_000


def certificate_fields(cert: x509.Certificate) -> dict[str, Any]:
    """What rules match on: the subject's CN and the SANs (DNS names, URIs, e-mail addresses)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    fields: dict[str, Any] = {"cn": str(cns[0].value) if cns else None}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    fields["dns"] = san.get_values_for_type(x509.DNSName) if san else []
    fields["uri"] = san.get_values_for_type(x509.UniformResourceIdentifier) if san else []
    fields["email"] = san.get_values_for_type(x509.RFC822Name) if san else []
    return fields


def _for_client_auth(_policy: Policy, _cert: x509.Certificate, eku: Any) -> None:
    """A certificate that names its uses must name client authentication (or any use)."""
    if eku is not None and not {
        ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    } & set(eku):  # fmt: skip
        raise ValueError("the certificate is not for client authentication")


#: The Web PKI's rules for the CA, and for the device's certificate all but three a device CA
#: commonly leaves out or marks otherwise: an authority key identifier, a SAN (the rules match
#: the CN too) and the criticality of the extended key usage (still checked, above).
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()
_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _for_client_auth)
)


class CertAuth:
    """The configured certificate rules and their CAs (read when the service starts)."""

    def __init__(
        self,
        access: AccessControl,
        audit: AuditLog,
        config: AuthConfig,
        *,
        clock: Clock,
        logins: Callable[[], JwtLogin],
    ) -> None:
        self._access = access
        self._audit = audit
        self._clock = clock
        self._logins = logins
        self.rules = config.cert
        self._cas: dict[str, Store] = {}
        for name, rule in self.rules.items():
            try:
                ca = x509.load_pem_x509_certificate(rule.ca_file.read_bytes())
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"cert rule {name!r}: cannot load its CA: {exc}") from exc
            self._cas[name] = Store([ca])
        #: fingerprint -> (access epoch, principal, not valid before, not valid after)
        self._cache: dict[bytes, tuple[object, Principal, datetime, datetime]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    async def authenticate(self, der: bytes) -> Principal:
        """The principal a verified client certificate stands for; LoginRefusedError if none."""
        fingerprint = _fingerprint(der)
        epoch = await self._access.invalidation.epoch()
        cached = self._cache.get(fingerprint)
        if cached is not None and cached[0] == epoch and cached[2] <= self._clock() < cached[3]:
            return cached[1]
        rule, identity, cert = self._match(der)
        policies = await self._access.policies_for(identity, list(rule.policies))
        principal = Principal(
            identity=identity,
            token_id=f"cert-{fingerprint.hex()[:16]}",
            policies=tuple(policies),
            auth={"method": "cert", "role": rule.name, "fingerprint": fingerprint.hex()},
        )
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[fingerprint] = (
            epoch, principal, cert.not_valid_before_utc, cert.not_valid_after_utc,
        )  # fmt: skip
        return principal

    def _match(self, der: bytes) -> tuple[CertRule, str, x509.Certificate]:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            message = "the client certificate is malformed"
            raise LoginRefusedError("cert_malformed", message) from exc
        now = self._clock()
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise LoginRefusedError("cert_expired", "the client certificate is not valid now")
        fields = certificate_fields(cert)
        chained = False
        for name, rule in self.rules.items():
            if not self._chains(name, cert, now):
                continue  # another CA's certificate, or one this CA may not issue: not this rule's
            chained = True
            identity = identity_for(rule, fields) if claims_match(rule, fields) else None
            if identity is not None:
                return rule, identity, cert
        if not chained:
            raise LoginRefusedError(
                "cert_untrusted", "the client certificate does not verify against any rule's CA"
            )
        raise LoginRefusedError("cert_mismatch", "the client certificate matches no rule")

    def _chains(self, rule: str, cert: x509.Certificate, now: datetime) -> bool:
        """True if ``rule``'s CA verifies ``cert`` at ``now`` (issued directly, whole chain)."""
        verifier = (
            PolicyBuilder()
            .store(self._cas[rule])
            .time(now)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
            .build_client_verifier()
        )
        try:
            verifier.verify(cert, [])
        except VerificationError:
            return False
        return True

    async def login(self, der: bytes | None) -> IssuedToken:
        """A short-lived token for the certificate's identity (for clients that keep a token,
        such as ``strongroom login --method cert``); refusals audited and limited."""
        caller = current_actor()
        details: dict[str, Any] = {"auth_method": "cert"}
        try:
            if der is None:
                raise LoginRefusedError("cert_required", "no client certificate was presented")
            rule, identity, _ = self._match(der)
        except LoginRefusedError as exc:
            await self._logins().refuse(exc, details, caller.ip, caller.user_agent)
            raise
        fingerprint = _fingerprint(der).hex()
        meta = {"method": "cert", "role": rule.name, "fingerprint": fingerprint,
                "policies": list(rule.policies), "ttl_seconds": rule.ttl_seconds}  # fmt: skip
        with acting_as(identity, ip=caller.ip, user_agent=caller.user_agent):
            issued = await self._access.create_token(
                identity,
                description=f"certificate login {rule.name}",
                ttl=timedelta(seconds=rule.ttl_seconds),
                meta=meta,
                max_ttl=timedelta(seconds=rule.max_ttl_seconds),
            )
            async with self._audit.operation(
                AuditAction.AUTHENTICATE, None, auth_method="cert", role=rule.name,
                token_id=issued.record.id,
            ):  # fmt: skip
                pass
        log.info("certificate login", role=rule.name, identity=identity)
        return issued


def _fingerprint(der: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize()
