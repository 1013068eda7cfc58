"""strongroom: secrets management with encrypted stores, rotation, audit and revocation."""

from strongroom.app import Strongroom
from strongroom.core.actor import Actor, acting_as, current_actor
from strongroom.core.clock import ManualClock
from strongroom.core.config import Backend, Settings
from strongroom.core.errors import (
    ConfigurationError,
    CryptoError,
    DecryptionError,
    DeletedSecretConflictError,
    InsecureKeyFileError,
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
from strongroom.manager import SecretsManager

__all__ = [
    "Actor",
    "Backend",
    "ConfigurationError",
    "CryptoError",
    "DecryptionError",
    "DeletedSecretConflictError",
    "InsecureKeyFileError",
    "ManualClock",
    "SecretAlreadyExistsError",
    "SecretDisabledError",
    "SecretExpiredError",
    "SecretIsDeletedError",
    "SecretNotFoundError",
    "SecretNotReadableError",
    "SecretNotYetValidError",
    "SecretType",
    "SecretValue",
    "SecretsManager",
    "Settings",
    "StoreUnavailableError",
    "Strongroom",
    "StrongroomError",
    "ValidationError",
    "WrongMasterKeyError",
    "acting_as",
    "current_actor",
]

__version__ = "0.1.0"
