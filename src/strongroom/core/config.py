"""Settings from the environment (read when asked for, never at import time)."""

from __future__ import annotations

import enum
import hashlib
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from strongroom.core.envsettings import EnvSettings, SecretStr, setting
from strongroom.core.errors import ConfigurationError

__all__ = ["Backend", "SecretStr", "Settings"]


class Backend(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"
    MEMORY = "memory"
    AZURE = "azure"


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "strongroom"


def _challenge_value(value: str) -> bool:
    """Sent inside Key Vault's 401 challenge, which clients split on "," and "=" and strip of
    quotes: an https:// URL with such characters (or spaces) would break every client's
    sign-in."""
    return value.startswith("https://") and not any(c in value for c in ',="\\ \t\r\n')


class Settings(EnvSettings):
    """One configuration; the profile follows from what is set (DESIGN.md, profiles).

    Each attribute is read from the variable its :func:`setting` names (keyword arguments by
    the same names win over the environment); unknown names are ignored.
    """

    azure_key_vault_url: str | None = setting("AZURE_KEY_VAULT_URL", str, empty_is_unset=True)
    database_url: SecretStr | None = setting("DATABASE_URL", SecretStr)
    # Unset, each program picks its own: a library stays quiet (WARNING), `strongroom serve`
    # logs requests (INFO), the CLI shows errors only unless -v.
    log_level: str | None = setting("LOG_LEVEL", str)
    debug: bool = setting("DEBUG", bool, False)
    home: Path = setting("STRONGROOM_HOME", Path, factory=_default_home)
    master_key: SecretStr | None = setting("STRONGROOM_MASTER_KEY", SecretStr)
    master_key_file: Path | None = setting("STRONGROOM_MASTER_KEY_FILE", Path)
    # Custody of the master key: "key" (the key file or STRONGROOM_MASTER_KEY), "shamir" (the
    # service starts sealed until a quorum of key holders unseals it), or "pkcs11" (the key is
    # stored wrapped by a key in an HSM, which unwraps it at start), or "azurekeyvault" (the
    # same, by a Key Vault key: STRONGROOM_AZURE_SEAL_KEY_ID): docs/custody.md.
    seal: Literal["key", "shamir", "pkcs11", "azurekeyvault"] = setting(
        "STRONGROOM_SEAL", ("key", "shamir", "pkcs11", "azurekeyvault"), "key"
    )
    azure_seal_key_id: str | None = setting("STRONGROOM_AZURE_SEAL_KEY_ID", str)
    pkcs11_library: Path | None = setting("STRONGROOM_PKCS11_LIBRARY", Path)
    pkcs11_token_label: str | None = setting("STRONGROOM_PKCS11_TOKEN_LABEL", str)
    pkcs11_pin: SecretStr | None = setting("STRONGROOM_PKCS11_PIN", SecretStr)
    pkcs11_key_label: str = setting("STRONGROOM_PKCS11_KEY_LABEL", str, "strongroom-master-wrap")
    unseal_timeout_seconds: float = setting(
        "STRONGROOM_UNSEAL_TIMEOUT_SECONDS", float, 600.0, gt=0, le=86400
    )  # a partial unseal is forgotten after this long without a new share
    backend_name: Backend | None = setting("STRONGROOM_BACKEND", Backend, empty_is_unset=True)
    recovery_days: int = setting("STRONGROOM_RECOVERY_DAYS", int, 90, ge=7, le=90)
    audit_database_url: SecretStr | None = setting("STRONGROOM_AUDIT_DATABASE_URL", SecretStr)
    audit_timeout_seconds: float = setting(
        "STRONGROOM_AUDIT_TIMEOUT_SECONDS", float, 5.0, gt=0, le=300
    )
    audit_fsync: bool = setting("STRONGROOM_AUDIT_FSYNC", bool, True)
    audit_fail_open: bool = setting("STRONGROOM_AUDIT_FAIL_OPEN", bool, False)
    # Signed audit checkpoints, kept outside the audit database (0 seconds: none written).
    audit_checkpoint_dir: Path | None = setting("STRONGROOM_AUDIT_CHECKPOINT_DIR", Path)
    audit_checkpoint_seconds: float = setting(
        "STRONGROOM_AUDIT_CHECKPOINT_SECONDS", float, 60.0, ge=0, le=86400
    )
    business_hours: str | None = setting("STRONGROOM_BUSINESS_HOURS", str)
    business_timezone: str = setting("STRONGROOM_BUSINESS_TIMEZONE", str, "UTC")
    pg_schema: str = setting(
        "STRONGROOM_PG_SCHEMA", str, "strongroom", pattern=r"^[a-z_][a-z0-9_]{0,62}$"
    )
    pg_pool_min: int = setting("STRONGROOM_PG_POOL_MIN", int, 2, ge=1)
    pg_pool_max: int = setting("STRONGROOM_PG_POOL_MAX", int, 16, ge=1)
    # SQLite and PostgreSQL: a secret row fetched by one read answers this process's reads for
    # this long, the bound on another process's change (a new version, a revocation) reaching
    # this one; this process's own changes are read at once. 0: every read asks the database.
    read_window_seconds: float = setting(
        "STRONGROOM_READ_WINDOW_SECONDS", float, 0.010, ge=0, le=0.050
    )
    # Approvals a revocation needs per severity, e.g. "critical=2,high=2" (default one each).
    revocation_approvals: str | None = setting("STRONGROOM_REVOCATION_APPROVALS", str)
    # Break-glass reviews: a second identity acknowledges each use within this window; overdue
    # reviews are notified again every remind interval, from the second notice on also to
    # the escalation addresses (comma-separated); checked every check interval (0: off).
    break_glass_review_hours: float = setting(
        "STRONGROOM_BREAK_GLASS_REVIEW_HOURS", float, 24.0, gt=0, le=720
    )
    break_glass_remind_minutes: float = setting(
        "STRONGROOM_BREAK_GLASS_REMIND_MINUTES", float, 60.0, gt=0, le=10080
    )
    break_glass_escalate_to: str | None = setting("STRONGROOM_BREAK_GLASS_ESCALATE_TO", str)
    break_glass_check_seconds: float = setting(
        "STRONGROOM_BREAK_GLASS_CHECK_SECONDS", float, 60.0, ge=0, le=86400
    )
    expiry_warning_days: int = setting("STRONGROOM_EXPIRY_WARNING_DAYS", int, 30, ge=1, le=365)
    # Notifications (services.notify.build_dispatcher); an empty SMTP host means no email.
    smtp_host: str | None = setting("STRONGROOM_SMTP_HOST", str)
    smtp_port: int = setting("STRONGROOM_SMTP_PORT", int, 25, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "tls"] = setting(
        "STRONGROOM_SMTP_TLS", ("none", "starttls", "tls"), "none"
    )
    smtp_username: str | None = setting("STRONGROOM_SMTP_USERNAME", str)
    smtp_password: SecretStr | None = setting("STRONGROOM_SMTP_PASSWORD", SecretStr)
    smtp_from: str = setting("STRONGROOM_SMTP_FROM", str, "strongroom@localhost")
    webhook_urls: str | None = setting("STRONGROOM_WEBHOOK_URLS", str)  # a,b,c
    webhook_signing_key: SecretStr | None = setting(
        "STRONGROOM_WEBHOOK_SIGNING_KEY", SecretStr
    )  # base64
    webhook_allow_private: bool = setting("STRONGROOM_WEBHOOK_ALLOW_PRIVATE", bool, False)
    webhook_allow_loopback: bool = setting("STRONGROOM_WEBHOOK_ALLOW_LOOPBACK", bool, False)
    notify_timeout_seconds: float = setting(
        "STRONGROOM_NOTIFY_TIMEOUT_SECONDS", float, 5.0, gt=0, le=300
    )
    # Auth methods beyond static tokens (JWT/OIDC issuers and their roles): a TOML file.
    auth_config: Path | None = setting("STRONGROOM_AUTH_CONFIG", Path)
    # mTLS: the CA bundle client certificates are verified against (strongroom serve asks for
    # one, optional, when this is set); [cert.*] rules map them to identities.
    tls_client_ca: Path | None = setting("STRONGROOM_TLS_CLIENT_CA", Path)
    # Failed logins allowed per client address and per role: a burst, then so many per second.
    login_failures_per_second: float = setting(
        "STRONGROOM_LOGIN_FAILURES_PER_SECOND", float, 1.0, gt=0, le=1000
    )
    login_failure_burst: int = setting("STRONGROOM_LOGIN_FAILURE_BURST", int, 10, ge=1, le=100_000)
    # The HTTP service (strongroom serve).
    auth_cache_seconds: float = setting("STRONGROOM_AUTH_CACHE_SECONDS", float, 1.0, ge=0, le=60)
    rate_limit_per_second: float = setting(
        "STRONGROOM_RATE_LIMIT_PER_SECOND", float, 500.0, ge=0
    )  # per identity (per client IP before authentication); 0 turns the limit off
    rate_limit_burst: int = setting("STRONGROOM_RATE_LIMIT_BURST", int, 1000, ge=1)
    max_body_bytes: int = setting(
        "STRONGROOM_MAX_BODY_BYTES", int, 256 * 1024, ge=1024, le=64 * 1024 * 1024
    )
    trusted_proxies: str | None = setting("STRONGROOM_TRUSTED_PROXIES", str)
    # Slow clients (strongroom.server.protocol): a request's headers and body must arrive within
    # these; an idle keep-alive connection closes; one address holds at most so many connections.
    http_header_timeout_seconds: float = setting(
        "STRONGROOM_HTTP_HEADER_TIMEOUT_SECONDS", float, 10.0, gt=0, le=300
    )
    http_body_timeout_seconds: float = setting(
        "STRONGROOM_HTTP_BODY_TIMEOUT_SECONDS", float, 20.0, gt=0, le=300
    )
    http_keep_alive_seconds: float = setting(
        "STRONGROOM_HTTP_KEEP_ALIVE_SECONDS", float, 5.0, gt=0, le=300
    )
    http_max_connections_per_address: int = setting(
        "STRONGROOM_HTTP_MAX_CONNECTIONS_PER_ADDRESS", int, 100, ge=0, le=100_000
    )
    metrics_public: bool = setting("STRONGROOM_METRICS_PUBLIC", bool, False)
    cors_origins: str | None = setting("STRONGROOM_CORS_ORIGINS", str)
    kv_authority: str = setting(
        "STRONGROOM_KV_AUTHORITY",
        str,
        "https://login.strongroom.invalid/strongroom",
        check=_challenge_value,
    )  # sent in Key Vault's 401 challenge; Key Vault clients read the tenant from it
    kv_resource: str | None = setting("STRONGROOM_KV_RESOURCE", str, check=_challenge_value)
    rotation_check_seconds: float = setting("STRONGROOM_ROTATION_CHECK_SECONDS", float, 60.0, gt=0)
    # The service's threat detection schedule (0: off); each threat is alerted once.
    threat_check_seconds: float = setting(
        "STRONGROOM_THREAT_CHECK_SECONDS", float, 300.0, ge=0, le=86400
    )
    # The Azure profile (AZURE_KEY_VAULT_URL): credentials as azure-identity reads them, else
    # DefaultAzureCredential; a fixed token for a Key Vault-compatible endpoint (strongroom's).
    azure_tenant_id: str | None = setting("AZURE_TENANT_ID", str)
    azure_client_id: str | None = setting("AZURE_CLIENT_ID", str)
    azure_client_secret: SecretStr | None = setting("AZURE_CLIENT_SECRET", SecretStr)
    azure_client_certificate_path: Path | None = setting("AZURE_CLIENT_CERTIFICATE_PATH", Path)
    azure_static_token: SecretStr | None = setting("STRONGROOM_AZURE_STATIC_TOKEN", SecretStr)
    azure_ca_bundle: Path | None = setting("STRONGROOM_AZURE_CA_BUNDLE", Path)
    azure_verify_challenge_resource: bool = setting(
        "STRONGROOM_AZURE_VERIFY_CHALLENGE_RESOURCE", bool, True
    )
    azure_timeout_seconds: float = setting(
        "STRONGROOM_AZURE_TIMEOUT_SECONDS", float, 10.0, gt=0, le=300
    )
    azure_retries: int = setting("STRONGROOM_AZURE_RETRIES", int, 4, ge=0, le=20)
    # Secondary vaults (comma-separated https:// URLs, in failover order): reads fail over to
    # them, writes reach them through the durable outbox (backends.azure_regions).
    azure_secondary_urls: str | None = setting("AZURE_KEY_VAULT_SECONDARY_URLS", str)
    azure_failover_cooldown_seconds: float = setting(
        "STRONGROOM_AZURE_FAILOVER_COOLDOWN_SECONDS", float, 30.0, gt=0, le=3600
    )
    azure_replication_seconds: float = setting(
        "STRONGROOM_AZURE_REPLICATION_SECONDS", float, 1.0, gt=0, le=3600
    )
    # Read-through cache in front of a remote store (the azure profile); a TTL of 0 turns it off.
    cache_ttl_seconds: float = setting("STRONGROOM_CACHE_TTL_SECONDS", float, 60.0, ge=0, le=86400)
    cache_max_entries: int = setting(
        "STRONGROOM_CACHE_MAX_ENTRIES", int, 10_000, ge=1, le=1_000_000
    )
    cache_stale_seconds: float = setting(
        "STRONGROOM_CACHE_STALE_SECONDS", float, 0.0, ge=0, le=86400
    )

    # The remote profile: a server's address and a token (else the credential file of
    # `strongroom login`); the PEM bundle that verifies the server's certificate.
    addr: str | None = setting("STRONGROOM_ADDR", str, empty_is_unset=True)
    token: SecretStr | None = setting("STRONGROOM_TOKEN", SecretStr, empty_is_unset=True)
    cacert: Path | None = setting("STRONGROOM_CACERT", Path, empty_is_unset=True)
    remote_timeout_seconds: float = setting(
        "STRONGROOM_REMOTE_TIMEOUT_SECONDS", float, 10.0, gt=0, le=300
    )
    remote_retries: int = setting("STRONGROOM_REMOTE_RETRIES", int, 3, ge=0, le=20)

    # An edge replica (strongroom edge): how long it serves while cut off from its upstream
    # (seconds, monotonic), the site's own credential for the upstream and the CA bundle that
    # verifies the upstream's certificate.
    edge_max_offline_seconds: float = setting(
        "STRONGROOM_EDGE_MAX_OFFLINE", float, 86400.0, gt=0, le=90 * 86400
    )
    edge_max_offline_by_type: str | None = setting("STRONGROOM_EDGE_MAX_OFFLINE_BY_TYPE", str)
    edge_token: SecretStr | None = setting("STRONGROOM_EDGE_TOKEN", SecretStr, empty_is_unset=True)
    #: Silence on the upstream's change feed after which an edge counts its link as cut (a cut
    #: link may never close the connection); keep it about three of the centre's heartbeats.
    edge_idle_timeout_seconds: float = setting(
        "STRONGROOM_EDGE_IDLE_TIMEOUT", float, 45.0, gt=0, le=3600
    )
    #: Seconds between the change feed's keep-alives (what edges and proxies hear when idle).
    feed_heartbeat_seconds: float = setting(
        "STRONGROOM_FEED_HEARTBEAT_SECONDS", float, 15.0, gt=0, le=300
    )
    edge_cacert: Path | None = setting("STRONGROOM_EDGE_CACERT", Path, empty_is_unset=True)

    # The console (/ui): idle and absolute session lifetimes; the Key Vault price per 10,000
    # operations its cost estimate uses (USD, Azure's standard tier list price by default).
    ui_idle_minutes: float = setting("STRONGROOM_UI_IDLE_MINUTES", float, 15.0, gt=0, le=1440)
    ui_session_hours: float = setting("STRONGROOM_UI_SESSION_HOURS", float, 12.0, gt=0, le=168)
    kv_price_per_10k: float = setting("STRONGROOM_KV_PRICE_PER_10K", float, 0.03, ge=0, le=1000)

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
