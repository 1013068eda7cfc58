"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import strongroom

EXPECTED = {
    "Actor", "AuditAction", "AuditResult", "AuditUnavailableError", "Backend",
    "ConfigurationError", "CryptoError", "DecryptionError", "DeletedSecretConflictError",
    "EmergencyRevoke", "EventSubscriptions", "InsecureKeyFileError", "ManualClock",
    "RevocationError", "RevocationNotFoundError", "RevocationReason", "RevocationRequest",
    "RevocationStateError", "RevocationStatus", "RotationConfig", "RotationFailedError",
    "RotationNotConfiguredError", "RotationTargetError", "SecretAlreadyExistsError",
    "SecretDisabledError", "SecretExpiredError", "SecretIsDeletedError", "SecretNotDeletedError",
    "SecretNotFoundError", "SecretNotReadableError", "SecretNotYetValidError",
    "SecretRevokedError", "SecretType", "SecretValue", "SecretsAudit", "SecretsManager",
    "SecretsRotation",
    "SeparationOfDutiesError", "Settings", "Severity", "StoreUnavailableError", "Strongroom",
    "StrongroomError", "ThreatRules", "ValidationError", "WrongMasterKeyError", "acting_as",
    "current_actor",
}  # fmt: skip


def test_public_names() -> None:
    assert set(strongroom.__all__) == EXPECTED
    for name in strongroom.__all__:
        assert getattr(strongroom, name) is not None


def test_every_error_is_a_strongroom_error() -> None:
    errors = [getattr(strongroom, n) for n in EXPECTED if n.endswith("Error")]
    assert all(issubclass(e, strongroom.StrongroomError) for e in errors)
    assert issubclass(strongroom.ValidationError, ValueError)
    assert issubclass(strongroom.SecretIsDeletedError, strongroom.SecretNotFoundError)


def test_public_names_load_lazily_from_their_modules() -> None:
    # __init__ imports nothing at start-up (PEP 562); each public name maps to its module.
    assert set(strongroom._EXPORTS) == set(strongroom.__all__)
    assert set(strongroom.__all__) <= set(dir(strongroom))
