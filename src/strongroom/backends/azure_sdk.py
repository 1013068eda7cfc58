"""What crosses the Azure SDK's edge: credentials, Key Vault properties as strongroom's, and
Key Vault errors as strongroom errors (never Key Vault's message: nothing it echoes can reach a
log or a caller)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from strongroom.core.config import Settings
from strongroom.core.errors import (
    ConfigurationError,
    DeletedSecretConflictError,
    PermissionDeniedError,
    RateLimitedError,
    SecretAlreadyExistsError,
    SecretDisabledError,
    SecretExpiredError,
    SecretNotFoundError,
    SecretNotYetValidError,
    SecretRevokedError,
    StoreUnavailableError,
    StrongroomError,
    ValidationError,
)
from strongroom.core.logging import get_logger
from strongroom.core.models import SecretType, VersionProperties

__all__ = [
    "MAX_USER_TAGS",
    "RESERVED_TAGS",
    "REVOKED_TAG",
    "TYPE_TAG",
    "StaticTokenCredential",
    "credential_from",
    "mapped_error",
    "properties_of",
    "user_tags",
]

log = get_logger("strongroom.azure")

TYPE_TAG = "strongroom-type"
REVOKED_TAG = "strongroom-revoked-at"
RESERVED_TAGS = frozenset({TYPE_TAG, REVOKED_TAG})
MAX_USER_TAGS = 14


class StaticTokenCredential:
    """An ``AsyncTokenCredential`` handing out one fixed bearer token (for a Key
    Vault-compatible endpoint such as strongroom's own, whose tokens do not expire by time)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken  # noqa: PLC0415

        return AccessToken(self._token, 4_102_444_800)  # 2100-01-01: refreshed never

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenCredential(<token>)"


def credential_from(settings: Settings) -> Any:
    """The credential the settings name: a static token, a client secret, a certificate, else
    ``DefaultAzureCredential`` (managed identity in Azure, developer logins locally)."""
    if settings.azure_static_token is not None:
        return StaticTokenCredential(settings.azure_static_token.get_secret_value())
    tenant, client = settings.azure_tenant_id, settings.azure_client_id
    if settings.azure_client_secret is not None or settings.azure_client_certificate_path:
        if not tenant or not client:
            raise ConfigurationError(
                "AZURE_CLIENT_SECRET / AZURE_CLIENT_CERTIFICATE_PATH need AZURE_TENANT_ID and "
                "AZURE_CLIENT_ID"
            )
        from azure.identity.aio import (  # noqa: PLC0415
            CertificateCredential,
            ClientSecretCredential,
        )

        if settings.azure_client_secret is not None:
            secret = settings.azure_client_secret.get_secret_value()
            return ClientSecretCredential(tenant, client, secret)
        return CertificateCredential(
            tenant, client, certificate_path=str(settings.azure_client_certificate_path)
        )
    from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415

    return DefaultAzureCredential()


def user_tags(tags: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (tags or {}).items() if k not in RESERVED_TAGS}


def properties_of(item: Any, *, current: bool = True, name: str | None = None) -> VersionProperties:
    """VersionProperties from the SDK's SecretProperties."""
    tags: dict[str, str] = dict(item.tags or {})
    try:
        kind = SecretType(tags.get(TYPE_TAG, SecretType.GENERIC.value))
    except ValueError:
        kind = SecretType.GENERIC
    revoked = tags.get(REVOKED_TAG)
    created = item.created_on or datetime.now(UTC)
    return VersionProperties(
        name=name or item.name,
        version=item.version or "",
        secret_type=kind,
        content_type=item.content_type,
        tags=user_tags(tags),
        enabled=bool(item.enabled) if item.enabled is not None else True,
        created_at=created,
        updated_at=item.updated_on or created,
        expires_at=item.expires_on,
        not_before=item.not_before,
        current=current,
        revoked_at=datetime.fromisoformat(revoked) if revoked else None,
    )


def _inner_code(exc: Any) -> str | None:
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    code = inner.get("code") if isinstance(inner, dict) else None
    return code if isinstance(code, str) else None


def _retry_after(exc: Any) -> float:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return max(1.0, float(headers.get("Retry-After", "1")))
    except (TypeError, ValueError):
        return 1.0


def mapped_error(exc: Exception, name: str | None, version: str | None) -> StrongroomError:
    """A strongroom error for an SDK failure; never Key Vault's message."""
    from azure.core import exceptions as az  # noqa: PLC0415

    what = f"secret {name!r}" if name else "the vault"
    if version:
        what += f" version {version!r}"
    status = getattr(exc, "status_code", None)
    inner = _inner_code(exc)
    if isinstance(exc, az.ResourceNotFoundError) or status == 404:
        return SecretNotFoundError(f"{what} not found in Azure Key Vault")
    if isinstance(exc, az.ResourceExistsError) or status == 409:
        if inner == "ObjectIsDeletedButRecoverable":
            return DeletedSecretConflictError(f"{what}: the name is held by a deleted secret")
        return SecretAlreadyExistsError(f"{what}: conflict in Azure Key Vault")
    if isinstance(exc, az.ClientAuthenticationError) or status == 401:
        return StoreUnavailableError("Azure Key Vault refused the credentials (401)")
    if status == 403:
        if inner == "SecretDisabled":
            return SecretDisabledError(f"{what} is disabled")
        if inner == "SecretExpired":
            return SecretExpiredError(f"{what} has expired")
        if inner == "SecretNotYetValid":
            return SecretNotYetValidError(f"{what} is not valid yet")
        if inner == "SecretRevoked":
            return SecretRevokedError(f"{what} was revoked")
        return PermissionDeniedError(f"Azure Key Vault forbids this operation on {what}")
    if status == 429:
        return RateLimitedError("Azure Key Vault is throttling requests", _retry_after(exc))
    if status == 400:
        return ValidationError(f"Azure Key Vault refused the request for {what} (bad parameter)")
    log.warning("azure key vault unavailable", error=type(exc).__name__, name=name)
    return StoreUnavailableError(f"Azure Key Vault is unavailable ({type(exc).__name__})")
