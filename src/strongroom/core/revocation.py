"""Emergency revocation as a state machine and a risk score: pure functions, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from strongroom.core.errors import RevocationStateError, ValidationError
from strongroom.core.models import SecretType
from strongroom.core.validation import validate_name, validate_text

__all__ = [
    "RevocationEvent",
    "RevocationReason",
    "RevocationRequest",
    "RevocationStatus",
    "Severity",
    "assess_risk",
    "transition",
]


class RevocationReason(enum.StrEnum):
    SECURITY_INCIDENT = "security_incident"
    UNAUTHORIZED_ACCESS = "unauthorized_access"
    KEY_COMPROMISE = "key_compromise"
    EMPLOYEE_DEPARTURE = "employee_departure"
    POLICY_VIOLATION = "policy_violation"
    ROTATION_FAILURE = "rotation_failure"
    OTHER = "other"


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class RevocationStatus(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"

    @property
    def closed(self) -> bool:
        return self in (self.COMPLETED, self.FAILED, self.REJECTED, self.CANCELLED)


class RevocationEvent(enum.StrEnum):
    APPROVE = "approve"  # the last approval needed arrived (or break-glass)
    REJECT = "reject"
    CANCEL = "cancel"
    START = "start"
    COMPLETE = "complete"
    FAIL = "fail"


_MOVES: Mapping[tuple[RevocationStatus, RevocationEvent], RevocationStatus] = {
    (RevocationStatus.PENDING, RevocationEvent.APPROVE): RevocationStatus.APPROVED,
    (RevocationStatus.PENDING, RevocationEvent.REJECT): RevocationStatus.REJECTED,
    (RevocationStatus.PENDING, RevocationEvent.CANCEL): RevocationStatus.CANCELLED,
    (RevocationStatus.APPROVED, RevocationEvent.START): RevocationStatus.IN_PROGRESS,
    (RevocationStatus.APPROVED, RevocationEvent.CANCEL): RevocationStatus.CANCELLED,
    (RevocationStatus.IN_PROGRESS, RevocationEvent.COMPLETE): RevocationStatus.COMPLETED,
    (RevocationStatus.IN_PROGRESS, RevocationEvent.FAIL): RevocationStatus.FAILED,
}


def transition(status: RevocationStatus, event: RevocationEvent) -> RevocationStatus:
    """The next state, or RevocationStateError: a closed request never changes."""
    try:
        return _MOVES[(status, event)]
    except KeyError:
        raise RevocationStateError(
            f"a {status.value} request cannot {event.value}"
            + (" (it is closed)" if status.closed else "")
        ) from None


def parse_severity(value: object) -> Severity:
    if isinstance(value, Severity):
        return value
    if isinstance(value, str):
        try:
            return Severity(value.lower())
        except ValueError:
            pass
    raise ValidationError("severity must be low, medium, high or critical")


def parse_reason(value: object) -> RevocationReason:
    if isinstance(value, RevocationReason):
        return value
    if isinstance(value, str):
        try:
            return RevocationReason(value.lower())
        except ValueError:
            pass
    allowed = ", ".join(r.value for r in RevocationReason)
    raise ValidationError(f"reason must be one of {allowed}")


@dataclass(slots=True)
class RevocationRequest:
    """The seed's request. ``immediate=True`` is break-glass: executed at once, no approval."""

    secret_name: str
    reason: RevocationReason | str
    requested_by: str
    severity: Severity | str = Severity.HIGH
    description: str = ""
    notify_recipients: list[str] = field(default_factory=list)
    immediate: bool = False
    rotate_after: bool = False
    soft_delete: bool = False

    def validated(self) -> RevocationRequest:
        validate_name(self.secret_name)
        if not isinstance(self.requested_by, str) or not 1 <= len(self.requested_by) <= 256:
            raise ValidationError("requested_by must name who asks (1-256 characters)")
        validate_text(self.description, "description", 4000)
        validate_text(self.requested_by, "requested_by", 256)
        recipients = list(self.notify_recipients or [])
        for address in recipients:
            if (
                not isinstance(address, str)
                or address.count("@") != 1
                or any(c in address for c in "\r\n\x00 ,<>")
                or len(address) > 254
            ):
                raise ValidationError("notify_recipients must be plain e-mail addresses")
        for flag in ("immediate", "rotate_after", "soft_delete"):
            if not isinstance(getattr(self, flag), bool):
                raise ValidationError(f"{flag} must be True or False")
        return RevocationRequest(
            secret_name=self.secret_name,
            reason=parse_reason(self.reason),
            requested_by=self.requested_by,
            severity=parse_severity(self.severity),
            description=self.description,
            notify_recipients=recipients,
            immediate=self.immediate,
            rotate_after=self.rotate_after,
            soft_delete=self.soft_delete,
        )


_SEVERITY_POINTS = {Severity.LOW: 10, Severity.MEDIUM: 25, Severity.HIGH: 40, Severity.CRITICAL: 55}
_TYPE_POINTS = {
    SecretType.DATABASE_CREDENTIAL: 15,
    SecretType.ENCRYPTION_KEY: 15,
    SecretType.CERTIFICATE: 12,
    SecretType.JWT_SECRET: 12,
    SecretType.API_KEY: 10,
    SecretType.THIRD_PARTY_CREDENTIAL: 10,
    SecretType.GENERIC: 5,
}


_LEVELS = ((80, "critical"), (60, "high"), (35, "medium"), (0, "low"))


@dataclass(frozen=True, slots=True)
class Risk:
    score: int
    level: str
    factors: dict[str, int]


def assess_risk(
    severity: Severity, secret_type: SecretType, recent_readers: int, reads_last_hour: int
) -> Risk:
    """0-100 from the severity, what the secret opens, how many actors read it recently and
    whether it is still being read (a secret in use breaks consumers when revoked, and a
    compromised one still in use is being exploited or relied on)."""
    factors = {
        "severity": _SEVERITY_POINTS[severity],
        "secret_type": _TYPE_POINTS.get(secret_type, 5),
        "readers": min(15, recent_readers * 3),
        "in_use": 15 if reads_last_hour > 0 else 0,
    }
    score = min(100, sum(factors.values()))
    level = (
        "critical" if score >= 80 else "high" if score >= 60 else "medium" if score >= 35 else "low"
    )
    return Risk(score, level, factors)


def required_approvals(severity: Severity, policy: Mapping[Severity, int] | None = None) -> int:
    """Approvals a request of this severity needs (default one for every severity)."""
    count = (policy or {}).get(severity, 1)
    return max(1, int(count))
