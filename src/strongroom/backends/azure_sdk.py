"""What crosses the Azure SDK's edge: credentials, Key Vault properties as strongroom's, and
Key Vault errors as strongroom errors (never Key Vault's message: nothing it echoes can reach a
log or a caller)."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
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
from strongroom.core.models import DeletedSecret, SecretType, VersionProperties

__all__ = [
    "MAX_USER_TAGS",
    "ORIGIN_TAG",
    "PLACEHOLDER_TAG",
    "RESERVED_TAGS",
    "REVOKED_TAG",
    "TYPE_TAG",
    "StaticTokenCredential",
    "credential_from",
    "deleted_of",
    "mapped_error",
    "properties_of",
    "secret_client",
    "user_tags",
]

log = get_logger("strongroom.azure")

TYPE_TAG = "strongroom-type"
REVOKED_TAG = "strongroom-revoked-at"
#: On a secondary vault's copy: the primary's version id (the one callers know), and a mark on a
#: copy made without its value (a version the primary would not hand out: disabled, revoked).
ORIGIN_TAG = "strongroom-origin-version"
PLACEHOLDER_TAG = "strongroom-placeholder"
RESERVED_TAGS = frozenset({TYPE_TAG, REVOKED_TAG, ORIGIN_TAG, PLACEHOLDER_TAG})
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


def secret_client(
    url: str, credential: Any, options: dict[str, Any], ca_bundle: Path | None
) -> tuple[Any, Any]:
    """The SDK's async SecretClient for ``url``, and the HTTP session to close with it."""
    from azure.keyvault.secrets.aio import SecretClient  # noqa: PLC0415

    options, session = dict(options), None
    if ca_bundle is not None:
        # One TLS context for every request: given a CA path, azure-core builds a new context
        # per request, and aiohttp then opens a new connection (a TLS handshake) for each.
        import aiohttp  # noqa: PLC0415
        from azure.core.pipeline.transport import AioHttpTransport  # noqa: PLC0415

        context = ssl.create_default_context(cafile=str(ca_bundle))
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        options["transport"] = AioHttpTransport(session=session)
    return SecretClient(url, credential, **options), session


def deleted_of(deleted: Any) -> DeletedSecret:
    """DeletedSecret from the SDK's DeletedSecret."""
    props = properties_of(deleted.properties, name=deleted.name)
    deleted_at = deleted.deleted_date or datetime.now(UTC)
    purge_at = deleted.scheduled_purge_date or deleted_at
    return DeletedSecret(properties=props, deleted_at=deleted_at, scheduled_purge_at=purge_at)


def user_tags(tags: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (tags or {}).items() if k not in RESERVED_TAGS}


def properties_of(item: Any, *, current: bool = True, name: str | None = None) -> VersionProperties:
    """VersionProperties from the SDK's SecretProperties (a secondary vault's copy carries the
    primary's version id, which is the one callers know)."""
    tags: dict[str, str] = dict(item.tags or {})
    try:
        kind = SecretType(tags.get(TYPE_TAG, SecretType.GENERIC.value))
    except ValueError:
        kind = SecretType.GENERIC
    revoked = tags.get(REVOKED_TAG)
    created = item.created_on or datetime.now(UTC)
    return VersionProperties(
        name=name or item.name,
        version=tags.get(ORIGIN_TAG) or item.version or "",
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
