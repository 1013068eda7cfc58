"""Request and response bodies of the native ``/v1`` API (they make its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import Path
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from strongroom.core.models import SecretType
from strongroom.core.validation import bad_text

__all__ = [
    "AuditVerifyOut",
    "DeletedSecretOut",
    "ErrorOut",
    "JwtLoginIn",
    "PolicyIn",
    "PolicyOut",
    "PropertiesOut",
    "PropertiesPatch",
    "RevocationIn",
    "RotationConfigIn",
    "SecretCreate",
    "SecretOut",
    "SecretUpdate",
    "Text",
    "TokenCreate",
    "TokenIssued",
    "TokenOut",
    "VersionChoice",
    "WorkerClaimIn",
    "WorkerCompleteIn",
    "WorkerFailIn",
    "WorkerIn",
    "WorkerRenewIn",
]


def _storable(text: str) -> str:
    if bad_text(text):
        raise ValueError("must be valid Unicode text without NUL characters")
    return text


#: Free text: refused (400, the field named) if it holds NUL or a lone surrogate, which no
#: store can keep as given, so bad text is the same clear error on every store.
Text = Annotated[str, AfterValidator(_storable)]
SecretName = Field(pattern=r"^[0-9a-zA-Z-]{1,127}$")
NamePath = Annotated[str, Path(pattern=r"^[0-9a-zA-Z-]{1,127}$")]
# A version id, or a unique prefix of at least 8 characters (what the CLI prints).
VERSION_PATTERN = r"^[0-9a-f]{8,32}$"
VersionPath = Annotated[str, Path(pattern=VERSION_PATTERN)]
# Bounded so a body cannot carry more than a value's 25,000 bytes of text as JSON.
# Text up to Key Vault's 25,000 bytes (checked in bytes by the manager), or JSON.
Value = Annotated[str, StringConstraints(max_length=25_000)] | dict[str, Any] | list[Any]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
TagText = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00]*$")]
Metadata = Annotated[dict[TagKey, TagText], Field(max_length=15)]
ContentType = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
]
RevocationReasonName = Literal[
    "security_incident", "unauthorized_access", "key_compromise", "employee_departure",
    "policy_violation", "rotation_failure", "other",
]  # fmt: skip
#: Every core.policy.Action (a test keeps the two lists equal).
ActionName = Literal[
    "read", "list", "write", "delete", "rotate", "revoke-request", "revoke-approve",
    "revoke-break-glass", "audit-read", "edge-sync", "admin",
]  # fmt: skip


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    policies: list[str] | None = Field(
        default=None, description="on 403: the caller's policies, none of which allowed it"
    )


class ErrorOut(BaseModel):
    error: ErrorDetail


class PropertiesOut(BaseModel):
    name: str
    version: str
    secret_type: SecretType
    content_type: str | None
    metadata: dict[str, str]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    not_before: datetime | None
    current: bool
    revoked: bool
    revoked_at: datetime | None


class SecretOut(PropertiesOut):
    value: Value


class DeletedSecretOut(PropertiesOut):
    deleted_at: datetime
    scheduled_purge_at: datetime
    recoverable_days: int


class SecretCreate(Strict):
    name: str = SecretName
    value: Value
    secret_type: SecretType = SecretType.GENERIC
    metadata: Metadata | None = None
    content_type: ContentType | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=36500)
    expires_at: AwareDatetime | None = None
    not_before: AwareDatetime | None = None
    enabled: bool = True


class SecretUpdate(Strict):
    value: Value
    secret_type: SecretType | None = None
    metadata: Metadata | None = None
    content_type: ContentType | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=36500)
    expires_at: AwareDatetime | None = None
    not_before: AwareDatetime | None = None
    enabled: bool = True


class VersionChoice(Strict):
    """The version an enable or disable acts on (the current one when absent)."""

    version: str | None = Field(default=None, pattern=VERSION_PATTERN)


class PropertiesPatch(Strict):
    """Only the fields present change; ``null`` clears expiry, not-before or content type."""

    version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    enabled: bool | None = None
    expires_at: AwareDatetime | None = None
    not_before: AwareDatetime | None = None
    metadata: Metadata | None = None
    content_type: ContentType | None = None


class DeleteOut(BaseModel):
    name: str
    deleted: bool = True
    purged: bool
    scheduled_purge_at: datetime | None = None
    recoverable_days: int | None = None


class RotationConfigIn(Strict):
    rotation_days: int = Field(default=90, ge=1, le=3650)
    rotation_hours_before_expiry: int = Field(default=24, ge=0, le=8760)
    enabled: bool = True
    description: Text = Field(default="", max_length=1000)
    generator: Literal["password", "api_key", "jwt_secret", "raw_key"] | None = None
    generator_options: dict[Text, int | bool | Text] = Field(default_factory=dict)
    rotator: Text | None = Field(default=None, max_length=128)
    use_registered_callback: bool = Field(
        default=False,
        description="rotate with the callback the serving process registered for this secret "
        "(callbacks are code, registered with SecretsRotation.register_callback)",
    )
    grace_period_hours: int = Field(default=24, ge=0, le=8760)
    secret_type: SecretType | None = None
    worker: bool = Field(
        default=False,
        description="rotation workers make the new values (their callbacks, or the generator "
        "on their host); the server's scheduler leaves this schedule to them",
    )


WorkerId = Field(
    pattern=r"^[0-9a-f]{16,64}$",
    description="the worker process's own random id (hex): its leases are its and its "
    "identity's only",
)


class WorkerIn(Strict):
    worker: str = WorkerId


class WorkerClaimIn(WorkerIn):
    names: list[Annotated[str, SecretName]] | None = Field(
        default=None, max_length=1000, description="only these secrets (a callback worker's)"
    )
    name_glob: str | None = Field(default=None, pattern=r"^[0-9a-zA-Z*?-]{1,127}$")
    secret_type: SecretType | None = None
    generated: bool = Field(default=False, description="only schedules with a generator")
    limit: int = Field(default=10, ge=1, le=100)
    lease_seconds: int = Field(default=60, ge=2, le=3600)
    wait_seconds: float = Field(
        default=0, ge=0, le=8, description="long-poll this long (under common 10 s timeouts)"
    )


class WorkerRenewIn(WorkerIn):
    lease_seconds: int = Field(default=60, ge=2, le=3600)


class WorkerCompleteIn(WorkerIn):
    value: Value


class WorkerFailIn(WorkerIn):
    message: Text = Field(default="", max_length=500)


class RevocationIn(Strict):
    secret_name: str = SecretName
    reason: RevocationReasonName
    severity: Literal["low", "medium", "high", "critical"] = "high"
    description: Text = Field(default="", max_length=4000)
    notify_recipients: list[Text] = Field(default_factory=list, max_length=50)
    immediate: bool = False
    rotate_after: bool = False
    soft_delete: bool = False


class RejectIn(Strict):
    reason: Text = Field(default="", max_length=1000)


class AcknowledgeIn(Strict):
    """What the reviewer checked: the acknowledgement of a break-glass use is on record."""

    note: Text = Field(min_length=1, max_length=2000)


class TokenCreate(Strict):
    identity: str = Field(pattern=r"^[0-9A-Za-z._@:-]{1,128}$")
    policies: list[str] = Field(default_factory=list, max_length=20)
    description: Text = Field(default="", max_length=256)
    ttl_seconds: int | None = Field(default=None, ge=1, le=315_360_000)


class TokenOut(BaseModel):
    id: str
    identity: str
    description: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    auth_method: str = Field(default="token", description="token (made by hand) or jwt")
    role: str | None = None
    max_expires_at: datetime | None = Field(
        default=None, description="how far renewals may extend a login token"
    )


class JwtLoginIn(Strict):
    jwt: str = Field(description="the workload's JWT (at most 16 KB)")
    role: str = Field(pattern=r"^[0-9A-Za-z._-]{1,64}$")
    method: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Za-z._-]{1,64}$",
        description="the JWT auth method (needed when more than one is configured)",
    )


class TokenIssued(TokenOut):
    token: str = Field(description="the bearer token; shown once, never stored")


class GrantModel(Strict):
    actions: list[ActionName] = Field(min_length=1, max_length=len(get_args(ActionName)))
    pattern: str = Field(pattern=r"^[0-9A-Za-z*?-]{1,127}$")


class PolicyIn(Strict):
    description: Text = Field(default="", max_length=512)
    grants: list[GrantModel] = Field(min_length=1, max_length=100)


class PolicyOut(BaseModel):
    name: str
    description: str
    grants: list[GrantModel]


class IdentityOut(BaseModel):
    identity: str
    policies: list[str]
    tokens: int


class WhoAmI(BaseModel):
    identity: str
    token_id: str
    policies: list[str]


class AuditVerifyOut(BaseModel):
    valid: bool
    checked: int
    first_id: int | None
    last_id: int | None
    broken_at: int | None
    reason: str | None
    #: How many processes checked the events' links (worker processes for a long log).
    processes: int = 1
    checkpoints: dict[str, Any] | None = None
    #: Per edge site whose journal was shipped here: its chain's continuity.
    edge_chains: dict[str, Any] | None = None
