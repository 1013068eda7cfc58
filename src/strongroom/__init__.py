"""strongroom: secrets management with encrypted stores, rotation, audit and revocation.

The names below load on first use (PEP 562): ``import strongroom.cli`` or
``from strongroom import SecretsManager`` does not import rotation, revocation or notification
code it never touches, which keeps a command line's start-up short. Add a public name in three
places: the TYPE_CHECKING imports (for type checkers), ``_EXPORTS`` and ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        SecretNotDeletedError,
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
    from strongroom.services.audit.secrets_audit import SecretsAudit
    from strongroom.services.audit.threats import ThreatRules
    from strongroom.services.events.subscriptions import EventSubscriptions
    from strongroom.services.revocation.emergency_revoke import EmergencyRevoke
    from strongroom.services.rotation.secrets_rotation import SecretsRotation
    from strongroom.services.secrets.secrets_manager import SecretsManager
    from strongroom.services.wiring import Strongroom

#: Public name -> the module that defines it.
_EXPORTS = {
    "Actor": "strongroom.core.actor",
    "AuditAction": "strongroom.core.audit",
    "AuditResult": "strongroom.core.audit",
    "AuditUnavailableError": "strongroom.core.errors",
    "Backend": "strongroom.core.config",
    "ConfigurationError": "strongroom.core.errors",
    "CryptoError": "strongroom.core.errors",
    "DecryptionError": "strongroom.core.errors",
    "DeletedSecretConflictError": "strongroom.core.errors",
    "EmergencyRevoke": "strongroom.services.revocation.emergency_revoke",
    "EventSubscriptions": "strongroom.services.events.subscriptions",
    "InsecureKeyFileError": "strongroom.core.errors",
    "ManualClock": "strongroom.core.clock",
    "RevocationError": "strongroom.core.errors",
    "RevocationNotFoundError": "strongroom.core.errors",
    "RevocationReason": "strongroom.core.revocation",
    "RevocationRequest": "strongroom.core.revocation",
    "RevocationStateError": "strongroom.core.errors",
    "RevocationStatus": "strongroom.core.revocation",
    "RotationConfig": "strongroom.core.rotation",
    "RotationFailedError": "strongroom.core.errors",
    "RotationNotConfiguredError": "strongroom.core.errors",
    "RotationTargetError": "strongroom.core.errors",
    "SecretAlreadyExistsError": "strongroom.core.errors",
    "SecretDisabledError": "strongroom.core.errors",
    "SecretExpiredError": "strongroom.core.errors",
    "SecretIsDeletedError": "strongroom.core.errors",
    "SecretNotDeletedError": "strongroom.core.errors",
    "SecretNotFoundError": "strongroom.core.errors",
    "SecretNotReadableError": "strongroom.core.errors",
    "SecretNotYetValidError": "strongroom.core.errors",
    "SecretRevokedError": "strongroom.core.errors",
    "SecretType": "strongroom.core.models",
    "SecretValue": "strongroom.core.models",
    "SecretsAudit": "strongroom.services.audit.secrets_audit",
    "SecretsManager": "strongroom.services.secrets.secrets_manager",
    "SecretsRotation": "strongroom.services.rotation.secrets_rotation",
    "SeparationOfDutiesError": "strongroom.core.errors",
    "Settings": "strongroom.core.config",
    "Severity": "strongroom.core.revocation",
    "StoreUnavailableError": "strongroom.core.errors",
    "Strongroom": "strongroom.services.wiring",
    "StrongroomError": "strongroom.core.errors",
    "ThreatRules": "strongroom.services.audit.threats",
    "ValidationError": "strongroom.core.errors",
    "WrongMasterKeyError": "strongroom.core.errors",
    "acting_as": "strongroom.core.actor",
    "current_actor": "strongroom.core.actor",
}

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
    "SecretNotDeletedError",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'strongroom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
