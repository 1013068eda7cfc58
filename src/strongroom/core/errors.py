"""The one tree of strongroom errors.

Every failure a caller can act on is a subclass of :class:`StrongroomError`. Messages name the
secret and version at most: a value never appears in an error.

    StrongroomError
    ├── ValidationError (also ValueError)       bad name, value, metadata, expiry, option
    ├── ConfigurationError                      settings that cannot work together
    ├── SecretNotFoundError (also LookupError)  no such secret or version
    │   ├── SecretIsDeletedError                the name is held by a soft-deleted secret
    │   ├── KeyNotFoundError                    no such Key Vault key or key version
    │   └── RotationNotConfiguredError          no rotation configuration for this secret
    ├── SecretNotDeletedError                   recover or purge of a live secret
    ├── SecretAlreadyExistsError                create_secret on a name in use
    │   └── DeletedSecretConflictError          ... in use by a soft-deleted secret
    ├── SecretNotReadableError                  the secret exists but may not be read now
    │   ├── SecretRevokedError                  revoked in an emergency: never readable again
    │   ├── SecretDisabledError
    │   ├── KeyDisabledError                    a Key Vault key version that is disabled
    │   ├── SecretExpiredError
    │   └── SecretNotYetValidError
    ├── RevocationError
    │   ├── RevocationNotFoundError (also LookupError)
    │   ├── RevocationStateError                the request's state does not allow this step
    │   └── SeparationOfDutiesError             self-approval, or a second approval by one person
    ├── CryptoError
    │   ├── DecryptionError                     "cannot decrypt", whatever check failed
    │   ├── WrongMasterKeyError                 the master key does not open this store
    │   ├── TamperedError                       a stored row fails its MAC: changed by hand
    │   ├── InsecureKeyFileError                key file readable by group or others
    │   ├── ReportSignatureError                a report's digest or signature does not verify
    │   ├── UnwrapError                         a wrapped key that does not unwrap with this key
    │   └── ShareError                          an unseal share that is refused
    │       ├── ForeignShareError               a share of another init (another share set)
    │       ├── DuplicateShareError             a share already given in this unseal
    │       └── WrongSharesError                the shares do not combine into this store's key
    ├── SealedError                             the master key is not in memory: unseal first
    ├── CustodyError                            custody set-up refused (already initialised, ...)
    │   ├── HsmError                            the HSM cannot be reached, refuses the PIN, or
    │   │                                       its key does not unwrap the stored master key
    │   └── KeyVaultSealError                   the Key Vault key that wraps the master key
    │                                           cannot be reached, is disabled, or does not
    │                                           unwrap it
    ├── RotationFailedError                     a rotation step failed (retried later)
    │   └── RotationTargetError                 the target system refused the new credential
    ├── UnsupportedError                        the configured store cannot do this (keys on
    │                                           the Azure or remote profile)
    ├── StoreUnavailableError                   the store cannot be reached or written
    │   ├── EdgeOfflineTooLongError             an edge cut off from upstream past its bound
    │   └── EdgeCredentialRefusedError          an edge whose site credential the upstream
    │                                           refuses (revoked, expired): it serves nothing
    ├── EdgeReadOnlyError                       a write sent to an edge replica (read-only)
    ├── EdgeJournalBrokenError                  a shipped edge journal that does not continue
    │                                           its site's chain (a gap or a forged link)
    ├── EdgeJournalStaleError                   a journal batch the centre already holds
    ├── AuditUnavailableError                   the event could not be recorded: refused
    └── AccessError
        ├── AuthenticationError                 no token, or one that is unknown/expired/revoked
        │   └── LoginRefusedError               a login credential (JWT) refused; code says why
        ├── PermissionDeniedError               the identity's policies do not grant the action
        ├── RateLimitedError                    too many requests: retry after ``retry_after``
        └── AccessObjectNotFoundError (also LookupError)  no such identity, policy or token
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "AccessObjectNotFoundError",
    "AuditUnavailableError",
    "AuthenticationError",
    "ConfigurationError",
    "CryptoError",
    "CustodyError",
    "DecryptionError",
    "DeletedSecretConflictError",
    "DuplicateShareError",
    "EdgeCredentialRefusedError",
    "EdgeJournalBrokenError",
    "EdgeJournalStaleError",
    "EdgeOfflineTooLongError",
    "EdgeReadOnlyError",
    "ForeignShareError",
    "HsmError",
    "InsecureKeyFileError",
    "KeyDisabledError",
    "KeyNotFoundError",
    "KeyVaultSealError",
    "LoginRefusedError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ReportSignatureError",
    "RevocationError",
    "RevocationNotFoundError",
    "RevocationStateError",
    "RotationFailedError",
    "RotationNotConfiguredError",
    "RotationTargetError",
    "SealedError",
    "SecretAlreadyExistsError",
    "SecretDisabledError",
    "SecretExpiredError",
    "SecretIsDeletedError",
    "SecretNotDeletedError",
    "SecretNotFoundError",
    "SecretNotReadableError",
    "SecretNotYetValidError",
    "SecretRevokedError",
    "SeparationOfDutiesError",
    "ShareError",
    "StoreUnavailableError",
    "StrongroomError",
    "TamperedError",
    "UnsupportedError",
    "UnwrapError",
    "ValidationError",
    "WrongMasterKeyError",
    "WrongSharesError",
]


class StrongroomError(Exception):
    """Base of every error strongroom raises on purpose."""

    #: A short, stable code for audit rows and HTTP bodies.
    code: str = "error"


class ValidationError(StrongroomError, ValueError):
    """Input was refused before anything was written."""

    code = "bad_parameter"


class ConfigurationError(StrongroomError):
    """The configuration cannot be used as given."""

    code = "configuration"


class SecretNotFoundError(StrongroomError, LookupError):
    """No secret (or no such version) under this name."""

    code = "not_found"


class SecretIsDeletedError(SecretNotFoundError):
    """The secret is soft-deleted: recover it to read or change it."""

    code = "deleted"


class KeyNotFoundError(SecretNotFoundError):
    """No Key Vault key (or no such version) under this name."""

    code = "key_not_found"


class SecretNotDeletedError(StrongroomError):
    """Recover or purge of a secret that is live, not soft-deleted: nothing to undo."""

    code = "not_deleted"


class SecretAlreadyExistsError(StrongroomError):
    """A secret of this name exists; update it to add a version."""

    code = "already_exists"


class DeletedSecretConflictError(SecretAlreadyExistsError):
    """The name is held by a soft-deleted secret until it is recovered or purged."""

    code = "deleted_but_recoverable"


class SecretNotReadableError(StrongroomError):
    """The secret exists but its value may not be read now."""

    code = "not_readable"


class SecretRevokedError(SecretNotReadableError):
    """The version was revoked in an emergency; no one can read it again."""

    code = "revoked"


class SecretDisabledError(SecretNotReadableError):
    code = "disabled"


class KeyDisabledError(SecretNotReadableError):
    """The key version is disabled: it cannot be read or used until it is enabled."""

    code = "key_disabled"


class SecretExpiredError(SecretNotReadableError):
    code = "expired"


class SecretNotYetValidError(SecretNotReadableError):
    code = "not_yet_valid"


class CryptoError(StrongroomError):
    code = "crypto"


class DecryptionError(CryptoError):
    """A ciphertext did not authenticate; deliberately says no more than that."""

    code = "cannot_decrypt"


class TamperedError(CryptoError):
    """A row's security-relevant fields do not match their MAC: it was changed, forged or
    replayed behind strongroom's back, so it is refused, never trusted."""

    code = "tampered"


class WrongMasterKeyError(CryptoError):
    code = "wrong_master_key"


class InsecureKeyFileError(CryptoError):
    code = "insecure_key_file"


class ReportSignatureError(CryptoError):
    """A signed report was changed, is unsigned, or was signed by another key."""

    code = "report_signature"


class UnwrapError(CryptoError):
    """A wrapped key did not unwrap with this key (another key, or changed bytes); says no
    more than that."""

    code = "cannot_unwrap"


class UnsupportedError(StrongroomError):
    """The configured store cannot do this (Key Vault keys live in SQLite, PostgreSQL or
    memory; not in Azure Key Vault or behind a remote server)."""

    code = "not_supported"


class ShareError(CryptoError):
    """An unseal share was refused (its words, checksum or length are wrong). The message
    never quotes the share: a mistyped word would give away part of it."""

    code = "bad_share"


class ForeignShareError(ShareError):
    """The share belongs to another share set (another init, another store)."""

    code = "foreign_share"


class DuplicateShareError(ShareError):
    """This share was already given in the unseal under way."""

    code = "duplicate_share"


class WrongSharesError(ShareError):
    """The threshold was met but the shares do not make this store's master key."""

    code = "wrong_shares"


class SealedError(StrongroomError):
    """The service is sealed: its master key is not in memory until a quorum unseals it."""

    code = "sealed"


class CustodyError(StrongroomError):
    """Custody cannot be set up or used as asked (already initialised, not initialised)."""

    code = "custody"


class HsmError(CustodyError):
    """The HSM that wraps the master key failed us: unreachable, a wrong PIN, no such key, or
    a wrapped key it does not unwrap. The service stays sealed and says why."""

    code = "hsm"


class KeyVaultSealError(CustodyError):
    """The Key Vault key that wraps the master key failed us: unreachable, a refused
    credential, no such key, a disabled key, or a wrapped key it does not unwrap. The service
    stays sealed and says why."""

    code = "keyvault_seal"


class StoreUnavailableError(StrongroomError):
    """The store could not be reached, or did not accept the write."""

    code = "store_unavailable"


class ChainKeyStaleError(StoreUnavailableError):
    """The audit chain moved to a newer key epoch (the master key was replaced) than the one
    this process holds: it may not write until it has the new key."""

    def __init__(self, stored: int, held: int) -> None:
        super().__init__(
            f"the audit chain moved to key epoch {stored} (the master key was replaced) and "
            f"this process holds epoch {held}: restart it with the new master key"
        )
        self.stored, self.held = stored, held


class EdgeOfflineTooLongError(StoreUnavailableError):
    """An edge has been cut off from its upstream for longer than its offline bound (or has
    never synchronised): its replica may be stale, so it refuses to serve values (fail-closed)."""

    code = "edge_offline_too_long"


class EdgeCredentialRefusedError(StoreUnavailableError):
    """The upstream refused the edge's site credential (revoked, expired or replaced): the
    edge serves nothing from its replica until it reconnects with a credential that works."""

    code = "edge_credential_refused"


class EdgeReadOnlyError(StrongroomError):
    """An edge serves a read-only replica: changes are made at the centre."""

    code = "edge_read_only"


class EdgeJournalBrokenError(StrongroomError):
    """An edge's shipped audit journal does not continue what the centre holds for its site:
    events are missing, or a link does not match. Refused, stored nowhere, and alarmed."""

    code = "edge_journal_broken"


class EdgeJournalStaleError(StrongroomError):
    """A journal batch starts before what the centre already holds for the site (a retry of a
    batch already stored): nothing is stored twice; the edge asks for the head and goes on."""

    code = "edge_journal_stale"


class AuditUnavailableError(StrongroomError):
    """The audit log could not record the event, so the operation was refused (fail-closed)."""

    code = "audit_unavailable"


class RotationNotConfiguredError(SecretNotFoundError):
    """No rotation configuration exists for this secret."""

    code = "rotation_not_configured"


class RotationFailedError(StrongroomError):
    """A rotation step failed; the current version is untouched and a retry is scheduled."""

    code = "rotation_failed"


class RotationTargetError(RotationFailedError):
    """The target system refused or did not accept the new credential."""

    code = "rotation_target"


class RevocationError(StrongroomError):
    code = "revocation"


class RevocationNotFoundError(RevocationError, LookupError):
    code = "not_found"


class RevocationStateError(RevocationError):
    """The request is not in a state that allows this step (e.g. it is already closed)."""

    code = "revocation_state"


class SeparationOfDutiesError(RevocationError):
    """Nobody approves their own request, and nobody approves one twice."""

    code = "denied"


class AccessError(StrongroomError):
    """Who may call what: authentication, authorization and rate limits."""

    code = "access"


class AuthenticationError(AccessError):
    """The caller did not prove who they are (the message never repeats the token)."""

    code = "unauthorized"


class LoginRefusedError(AuthenticationError):
    """A login credential was refused; ``code`` says which check failed (``jwt_expired``,
    ``jwt_audience``, ``role_mismatch``...). The message never quotes the credential."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PermissionDeniedError(AccessError):
    """The caller's policies do not grant this action on this resource. ``policies`` names
    the policies the caller holds, none of which allowed it (deny by default)."""

    code = "forbidden"

    def __init__(self, message: str, *, policies: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.policies = tuple(policies)


class RateLimitedError(AccessError):
    """The caller sent more requests than its rate allows."""

    code = "throttled"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccessObjectNotFoundError(AccessError, LookupError):
    """No identity, policy or token by that name or id."""

    code = "not_found"
