"""strongroom: secrets management with encrypted stores, rotation, audit and revocation."""

from strongroom.app import Strongroom
from strongroom.core.actor import Actor, acting_as, current_actor
from strongroom.core.audit import AuditAction, AuditResult
from strongroom.core.clock import ManualClock
from strongroom.core.config import Backend, Settings
from strongroom.core.errors import (
    AuditUnavailableError,
    ConfigurationError,
    CryptoError,
    DecryptionError,
    DeletedSecretConflictError,
    InsecureKeyFileError,
    RotationFailedError,
    RotationNotConfiguredError,
    RotationTargetError,
    SecretAlreadyExistsError,
    SecretDisabledError,
    SecretExpiredError,
    SecretIsDeletedError,
    SecretNotFoundError,
    SecretNotReadableError,
    SecretNotYetValidError,
    StoreUnavailableError,
    StrongroomError,
    ValidationError,
    WrongMasterKeyError,
)
from strongroom.core.models import SecretType, SecretValue
from strongroom.core.rotation import RotationConfig
from strongroom.manager import SecretsManager
from strongroom.rotation import SecretsRotation
from strongroom.secrets_audit import SecretsAudit
from strongroom.threats import ThreatRules

__all__ = [
    "Actor",
    "AuditAction",
    "AuditResult",
    "AuditUnavailableError",
    "Backend",
    "ConfigurationError",
    "CryptoError",
    "DecryptionError",
    "DeletedSecretConflictError",
    "InsecureKeyFileError",
    "ManualClock",
    "RotationConfig",
    "RotationFailedError",
    "RotationNotConfiguredError",
    "RotationTargetError",
    "SecretAlreadyExistsError",
    "SecretDisabledError",
    "SecretExpiredError",
    "SecretIsDeletedError",
    "SecretNotFoundError",
    "SecretNotReadableError",
    "SecretNotYetValidError",
    "SecretType",
    "SecretValue",
    "SecretsAudit",
    "SecretsManager",
    "SecretsRotation",
    "Settings",
    "StoreUnavailableError",
    "Strongroom",
    "StrongroomError",
    "ThreatRules",
    "ValidationError",
    "WrongMasterKeyError",
    "acting_as",
    "current_actor",
]

__version__ = "0.1.0"
