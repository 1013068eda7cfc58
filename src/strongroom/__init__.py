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
    RevocationError,
    RevocationNotFoundError,
    RevocationStateError,
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
    SecretRevokedError,
    SeparationOfDutiesError,
    StoreUnavailableError,
    StrongroomError,
    ValidationError,
    WrongMasterKeyError,
)
from strongroom.core.models import SecretType, SecretValue
from strongroom.core.revocation import (
    RevocationReason,
    RevocationRequest,
    RevocationStatus,
    Severity,
)
from strongroom.core.rotation import RotationConfig
from strongroom.events import EventSubscriptions
from strongroom.manager import SecretsManager
from strongroom.revocation import EmergencyRevoke
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
    "EmergencyRevoke",
    "EventSubscriptions",
    "InsecureKeyFileError",
    "ManualClock",
    "RevocationError",
    "RevocationNotFoundError",
    "RevocationReason",
    "RevocationRequest",
    "RevocationStateError",
    "RevocationStatus",
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
    "SecretRevokedError",
    "SecretType",
    "SecretValue",
    "SecretsAudit",
    "SecretsManager",
    "SecretsRotation",
    "SeparationOfDutiesError",
    "Settings",
    "Severity",
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
