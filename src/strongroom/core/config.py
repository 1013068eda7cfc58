"""Settings from the environment (read when asked for, never at import time)."""

from __future__ import annotations

import enum
import hashlib
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from strongroom.core.errors import ConfigurationError

__all__ = ["Backend", "Settings"]


class Backend(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"
    MEMORY = "memory"
    AZURE = "azure"


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "strongroom"


class Settings(BaseSettings):
    """One configuration; the profile follows from what is set (DESIGN.md, profiles)."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", populate_by_name=False
    )

    azure_key_vault_url: str | None = Field(default=None, alias="AZURE_KEY_VAULT_URL")
    database_url: SecretStr | None = Field(default=None, alias="DATABASE_URL")
    # Unset, each program picks its own: a library stays quiet (WARNING), `strongroom serve`
    # logs requests (INFO), the CLI shows errors only unless -v.
    log_level: str | None = Field(default=None, alias="LOG_LEVEL")
    debug: bool = Field(default=False, alias="DEBUG")
    home: Path = Field(default_factory=_default_home, alias="STRONGROOM_HOME")
    master_key: SecretStr | None = Field(default=None, alias="STRONGROOM_MASTER_KEY")
    master_key_file: Path | None = Field(default=None, alias="STRONGROOM_MASTER_KEY_FILE")
    # Custody of the master key: "key" (the key file or STRONGROOM_MASTER_KEY), "shamir" (the
    # service starts sealed until a quorum of key holders unseals it), or "pkcs11" (the key is
    # stored wrapped by a key in an HSM, which unwraps it at start), or "azurekeyvault" (the
    # same, by a Key Vault key: STRONGROOM_AZURE_SEAL_KEY_ID): docs/custody.md.
    seal: Literal["key", "shamir", "pkcs11", "azurekeyvault"] = Field(
        default="key", alias="STRONGROOM_SEAL"
    )
    azure_seal_key_id: str | None = Field(default=None, alias="STRONGROOM_AZURE_SEAL_KEY_ID")
    pkcs11_library: Path | None = Field(default=None, alias="STRONGROOM_PKCS11_LIBRARY")
    pkcs11_token_label: str | None = Field(default=None, alias="STRONGROOM_PKCS11_TOKEN_LABEL")
    pkcs11_pin: SecretStr | None = Field(default=None, alias="STRONGROOM_PKCS11_PIN")
    pkcs11_key_label: str = Field(
        default="strongroom-master-wrap", alias="STRONGROOM_PKCS11_KEY_LABEL"
    )
    unseal_timeout_seconds: float = Field(
        default=600.0, gt=0, le=86400, alias="STRONGROOM_UNSEAL_TIMEOUT_SECONDS"
    )  # a partial unseal is forgotten after this long without a new share
    backend_name: Backend | None = Field(default=None, alias="STRONGROOM_BACKEND")
    recovery_days: int = Field(default=90, ge=7, le=90, alias="STRONGROOM_RECOVERY_DAYS")
    audit_database_url: SecretStr | None = Field(
        default=None, alias="STRONGROOM_AUDIT_DATABASE_URL"
    )
    audit_timeout_seconds: float = Field(
        default=5.0, gt=0, le=300, alias="STRONGROOM_AUDIT_TIMEOUT_SECONDS"
    )
    audit_fsync: bool = Field(default=True, alias="STRONGROOM_AUDIT_FSYNC")
    audit_fail_open: bool = Field(default=False, alias="STRONGROOM_AUDIT_FAIL_OPEN")
    # Signed audit checkpoints, kept outside the audit database (0 seconds: none written).
    audit_checkpoint_dir: Path | None = Field(default=None, alias="STRONGROOM_AUDIT_CHECKPOINT_DIR")
    audit_checkpoint_seconds: float = Field(
        default=60.0, ge=0, le=86400, alias="STRONGROOM_AUDIT_CHECKPOINT_SECONDS"
    )
    business_hours: str | None = Field(default=None, alias="STRONGROOM_BUSINESS_HOURS")
    business_timezone: str = Field(default="UTC", alias="STRONGROOM_BUSINESS_TIMEZONE")
    pg_schema: str = Field(
        default="strongroom", pattern=r"^[a-z_][a-z0-9_]{0,62}$", alias="STRONGROOM_PG_SCHEMA"
    )
    pg_pool_min: int = Field(default=2, ge=1, alias="STRONGROOM_PG_POOL_MIN")
    pg_pool_max: int = Field(default=16, ge=1, alias="STRONGROOM_PG_POOL_MAX")
    # Approvals a revocation needs per severity, e.g. "critical=2,high=2" (default one each).
    revocation_approvals: str | None = Field(default=None, alias="STRONGROOM_REVOCATION_APPROVALS")
    # Break-glass reviews: a second identity acknowledges each use within this window; overdue
    # reviews are notified again every remind interval, from the second notice on also to
    # the escalation addresses (comma-separated); checked every check interval (0: off).
    break_glass_review_hours: float = Field(
        default=24.0, gt=0, le=720, alias="STRONGROOM_BREAK_GLASS_REVIEW_HOURS"
    )
    break_glass_remind_minutes: float = Field(
        default=60.0, gt=0, le=10080, alias="STRONGROOM_BREAK_GLASS_REMIND_MINUTES"
    )
    break_glass_escalate_to: str | None = Field(
        default=None, alias="STRONGROOM_BREAK_GLASS_ESCALATE_TO"
    )
    break_glass_check_seconds: float = Field(
        default=60.0, ge=0, le=86400, alias="STRONGROOM_BREAK_GLASS_CHECK_SECONDS"
    )
    expiry_warning_days: int = Field(
        default=30, ge=1, le=365, alias="STRONGROOM_EXPIRY_WARNING_DAYS"
    )
    # Notifications (services.notify.build_dispatcher); an empty SMTP host means no email.
    smtp_host: str | None = Field(default=None, alias="STRONGROOM_SMTP_HOST")
    smtp_port: int = Field(default=25, ge=1, le=65535, alias="STRONGROOM_SMTP_PORT")
    smtp_tls: Literal["none", "starttls", "tls"] = Field(
        default="none", alias="STRONGROOM_SMTP_TLS"
    )
    smtp_username: str | None = Field(default=None, alias="STRONGROOM_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, alias="STRONGROOM_SMTP_PASSWORD")
    smtp_from: str = Field(default="strongroom@localhost", alias="STRONGROOM_SMTP_FROM")
    webhook_urls: str | None = Field(default=None, alias="STRONGROOM_WEBHOOK_URLS")  # a,b,c
    webhook_signing_key: SecretStr | None = Field(
        default=None, alias="STRONGROOM_WEBHOOK_SIGNING_KEY"
    )  # base64
    webhook_allow_private: bool = Field(default=False, alias="STRONGROOM_WEBHOOK_ALLOW_PRIVATE")
    webhook_allow_loopback: bool = Field(default=False, alias="STRONGROOM_WEBHOOK_ALLOW_LOOPBACK")
    notify_timeout_seconds: float = Field(
        default=5.0, gt=0, le=300, alias="STRONGROOM_NOTIFY_TIMEOUT_SECONDS"
    )
    # Auth methods beyond static tokens (JWT/OIDC issuers and their roles): a TOML file.
    auth_config: Path | None = Field(default=None, alias="STRONGROOM_AUTH_CONFIG")
    # mTLS: the CA bundle client certificates are verified against (strongroom serve asks for
    # one, optional, when this is set); [cert.*] rules map them to identities.
    tls_client_ca: Path | None = Field(default=None, alias="STRONGROOM_TLS_CLIENT_CA")
    # Failed logins allowed per client address and per role: a burst, then so many per second.
    login_failures_per_second: float = Field(
        default=1.0, gt=0, le=1000, alias="STRONGROOM_LOGIN_FAILURES_PER_SECOND"
    )
    login_failure_burst: int = Field(
        default=10, ge=1, le=100_000, alias="STRONGROOM_LOGIN_FAILURE_BURST"
    )
    # The HTTP service (strongroom serve).
    auth_cache_seconds: float = Field(
        default=1.0, ge=0, le=60, alias="STRONGROOM_AUTH_CACHE_SECONDS"
    )
    rate_limit_per_second: float = Field(
        default=500.0, ge=0, alias="STRONGROOM_RATE_LIMIT_PER_SECOND"
    )  # per identity (per client IP before authentication); 0 turns the limit off
    rate_limit_burst: int = Field(default=1000, ge=1, alias="STRONGROOM_RATE_LIMIT_BURST")
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, le=64 * 1024 * 1024, alias="STRONGROOM_MAX_BODY_BYTES"
    )
    trusted_proxies: str | None = Field(default=None, alias="STRONGROOM_TRUSTED_PROXIES")
    # Slow clients (strongroom.server.protocol): a request's headers and body must arrive within
    # these; an idle keep-alive connection closes; one address holds at most so many connections.
    http_header_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, alias="STRONGROOM_HTTP_HEADER_TIMEOUT_SECONDS"
    )
    http_body_timeout_seconds: float = Field(
        default=20.0, gt=0, le=300, alias="STRONGROOM_HTTP_BODY_TIMEOUT_SECONDS"
    )
    http_keep_alive_seconds: float = Field(
        default=5.0, gt=0, le=300, alias="STRONGROOM_HTTP_KEEP_ALIVE_SECONDS"
    )
    http_max_connections_per_address: int = Field(
        default=100, ge=0, le=100_000, alias="STRONGROOM_HTTP_MAX_CONNECTIONS_PER_ADDRESS"
    )
    metrics_public: bool = Field(default=False, alias="STRONGROOM_METRICS_PUBLIC")
    cors_origins: str | None = Field(default=None, alias="STRONGROOM_CORS_ORIGINS")
    kv_authority: str = Field(
        default="https://login.strongroom.invalid/strongroom", alias="STRONGROOM_KV_AUTHORITY"
    )  # sent in Key Vault's 401 challenge; Key Vault clients read the tenant from it
    kv_resource: str | None = Field(default=None, alias="STRONGROOM_KV_RESOURCE")
    rotation_check_seconds: float = Field(
        default=60.0, gt=0, alias="STRONGROOM_ROTATION_CHECK_SECONDS"
    )
    # The service's threat detection schedule (0: off); each threat is alerted once.
    threat_check_seconds: float = Field(
        default=300.0, ge=0, le=86400, alias="STRONGROOM_THREAT_CHECK_SECONDS"
    )
    # The Azure profile (AZURE_KEY_VAULT_URL): credentials as azure-identity reads them, else
    # DefaultAzureCredential; a fixed token for a Key Vault-compatible endpoint (strongroom's).
    azure_tenant_id: str | None = Field(default=None, alias="AZURE_TENANT_ID")
    azure_client_id: str | None = Field(default=None, alias="AZURE_CLIENT_ID")
    azure_client_secret: SecretStr | None = Field(default=None, alias="AZURE_CLIENT_SECRET")
    azure_client_certificate_path: Path | None = Field(
        default=None, alias="AZURE_CLIENT_CERTIFICATE_PATH"
    )
    azure_static_token: SecretStr | None = Field(
        default=None, alias="STRONGROOM_AZURE_STATIC_TOKEN"
    )
    azure_ca_bundle: Path | None = Field(default=None, alias="STRONGROOM_AZURE_CA_BUNDLE")
    azure_verify_challenge_resource: bool = Field(
        default=True, alias="STRONGROOM_AZURE_VERIFY_CHALLENGE_RESOURCE"
    )
    azure_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, alias="STRONGROOM_AZURE_TIMEOUT_SECONDS"
    )
    azure_retries: int = Field(default=4, ge=0, le=20, alias="STRONGROOM_AZURE_RETRIES")
    # Secondary vaults (comma-separated https:// URLs, in failover order): reads fail over to
    # them, writes reach them through the durable outbox (backends.azure_regions).
    azure_secondary_urls: str | None = Field(default=None, alias="AZURE_KEY_VAULT_SECONDARY_URLS")
    azure_failover_cooldown_seconds: float = Field(
        default=30.0, gt=0, le=3600, alias="STRONGROOM_AZURE_FAILOVER_COOLDOWN_SECONDS"
    )
    azure_replication_seconds: float = Field(
        default=1.0, gt=0, le=3600, alias="STRONGROOM_AZURE_REPLICATION_SECONDS"
    )
    # Read-through cache in front of a remote store (the azure profile); a TTL of 0 turns it off.
    cache_ttl_seconds: float = Field(
        default=60.0, ge=0, le=86400, alias="STRONGROOM_CACHE_TTL_SECONDS"
    )
    cache_max_entries: int = Field(
        default=10_000, ge=1, le=1_000_000, alias="STRONGROOM_CACHE_MAX_ENTRIES"
    )
    cache_stale_seconds: float = Field(
        default=0.0, ge=0, le=86400, alias="STRONGROOM_CACHE_STALE_SECONDS"
    )

    # The remote profile: a server's address and a token (else the credential file of
    # `strongroom login`); the PEM bundle that verifies the server's certificate.
    addr: str | None = Field(default=None, alias="STRONGROOM_ADDR")
    token: SecretStr | None = Field(default=None, alias="STRONGROOM_TOKEN")
    cacert: Path | None = Field(default=None, alias="STRONGROOM_CACERT")
    remote_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, alias="STRONGROOM_REMOTE_TIMEOUT_SECONDS"
    )
    remote_retries: int = Field(default=3, ge=0, le=20, alias="STRONGROOM_REMOTE_RETRIES")

    # An edge replica (strongroom edge): how long it serves while cut off from its upstream
    # (seconds, monotonic), the site's own credential for the upstream and the CA bundle that
    # verifies the upstream's certificate.
    edge_max_offline_seconds: float = Field(
        default=86400.0, gt=0, le=90 * 86400, alias="STRONGROOM_EDGE_MAX_OFFLINE"
    )
    edge_max_offline_by_type: str | None = Field(
        default=None, alias="STRONGROOM_EDGE_MAX_OFFLINE_BY_TYPE"
    )
    edge_token: SecretStr | None = Field(default=None, alias="STRONGROOM_EDGE_TOKEN")
    #: Silence on the upstream's change feed after which an edge counts its link as cut (a cut
    #: link may never close the connection); keep it about three of the centre's heartbeats.
    edge_idle_timeout_seconds: float = Field(
        default=45.0, gt=0, le=3600, alias="STRONGROOM_EDGE_IDLE_TIMEOUT"
    )
    #: Seconds between the change feed's keep-alives (what edges and proxies hear when idle).
    feed_heartbeat_seconds: float = Field(
        default=15.0, gt=0, le=300, alias="STRONGROOM_FEED_HEARTBEAT_SECONDS"
    )
    edge_cacert: Path | None = Field(default=None, alias="STRONGROOM_EDGE_CACERT")

    # The console (/ui): idle and absolute session lifetimes; the Key Vault price per 10,000
    # operations its cost estimate uses (USD, Azure's standard tier list price by default).
    ui_idle_minutes: float = Field(default=15.0, gt=0, le=1440, alias="STRONGROOM_UI_IDLE_MINUTES")
    ui_session_hours: float = Field(default=12.0, gt=0, le=168, alias="STRONGROOM_UI_SESSION_HOURS")
    kv_price_per_10k: float = Field(
        default=0.03, ge=0, le=1000, alias="STRONGROOM_KV_PRICE_PER_10K"
    )

    @field_validator(
        "azure_key_vault_url",
        "addr",
        "token",
        "cacert",
        "edge_token",
        "edge_cacert",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # The seed: "When AZURE_KEY_VAULT_URL is not set or empty" -> not Azure (and an empty
        # STRONGROOM_ADDR is no server).
        return None if value == "" else value

    @field_validator("kv_authority", "kv_resource")
    @classmethod
    def _challenge_value(cls, value: str | None) -> str | None:
        # Sent inside Key Vault's 401 challenge, which clients split on "," and "=" and strip
        # of quotes: such characters (or spaces) would break every client's sign-in.
        if value is None:
            return None
        if not value.startswith("https://") or any(c in value for c in ',="\\ \t\r\n'):
            raise ValueError("must be an https:// URL without commas, quotes, '=' or spaces")
        return value

    @field_validator("backend_name", mode="before")
    @classmethod
    def _blank_backend(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def backend(self) -> Backend:
        """The secret store in use: explicit choice, else Azure URL, else DATABASE_URL, else
        the embedded SQLite file."""
        if self.backend_name is not None:
            return self.backend_name
        if self.azure_key_vault_url:
            return Backend.AZURE
        if self.database_url is not None:
            return Backend.POSTGRES
        return Backend.SQLITE

    @property
    def azure_secondaries(self) -> list[str]:
        """The secondary vaults' URLs, in failover order."""
        urls = [u.strip() for u in (self.azure_secondary_urls or "").split(",")]
        return [u for u in urls if u]

    @property
    def remote(self) -> bool:
        """The remote profile: every call goes to the server at STRONGROOM_ADDR."""
        return self.addr is not None

    @property
    def state_in_postgres(self) -> bool:
        """Audit, rotation, revocation and access state live in PostgreSQL (else SQLite)."""
        return (
            self.audit_database_url is not None
            or self.backend is Backend.POSTGRES
            or (self.backend is Backend.AZURE and self.database_url is not None)
        )

    @property
    def sqlite_path(self) -> Path:
        return self.home / "strongroom.db"

    @property
    def default_key_file(self) -> Path:
        return self.home / "master.key"

    @property
    def checkpoint_dir(self) -> Path | None:
        """Where audit checkpoints go: the configured directory, else one per audit log under
        the data directory (a PostgreSQL log is named by host, database and schema, so two
        logs never share a directory); None when checkpoints are off or nothing persists."""
        if self.audit_checkpoint_seconds == 0:
            return None
        if self.audit_checkpoint_dir is not None:
            return self.audit_checkpoint_dir
        if self.backend is Backend.MEMORY:
            return None
        if not self.state_in_postgres:
            return self.home / "audit-checkpoints" / "sqlite"
        parts = urlsplit(self.audit_dsn())
        where = f"{parts.hostname}:{parts.port}/{parts.path.lstrip('/')}/{self.pg_schema}"
        label = hashlib.sha256(where.encode()).hexdigest()[:16]
        return self.home / "audit-checkpoints" / f"postgres-{self.pg_schema}-{label}"

    def audit_dsn(self) -> str:
        if self.audit_database_url is None:
            return self.postgres_dsn()
        dsn = self.audit_database_url.get_secret_value()
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError("STRONGROOM_AUDIT_DATABASE_URL must be a postgresql:// URL")
        return dsn

    def postgres_dsn(self) -> str:
        if self.database_url is None:
            raise ConfigurationError("the postgres backend needs DATABASE_URL")
        dsn = self.database_url.get_secret_value()
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigurationError("DATABASE_URL must be a postgresql:// URL")
        return dsn
