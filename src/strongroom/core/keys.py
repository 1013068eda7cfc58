"""The key derivation tree: every key strongroom uses comes from the master key, one per purpose.

::

    master key (32 bytes: STRONGROOM_MASTER_KEY or a 0600 key file; never stored with the data)
      └─ HKDF-SHA256, no salt, info = the purpose below; one 256-bit key each
           ├─ strongroom/kek-wrap/1          AES-256-GCM: wraps the keyring's key-encryption keys
           │    └─ KEK (one per keyring version, stored wrapped)
           │         └─ data key (one per secret version, stored wrapped)
           │              └─ AES-256-GCM over the value, associated data = (name, version)
           ├─ strongroom/audit-chain/1       HMAC-SHA256 linking each audit event to the previous
           ├─ strongroom/audit-checkpoint/1  Ed25519 seed: signs audit checkpoints kept outside
           │                                 the database (its public key verifies them)
           ├─ strongroom/metadata-mac/1      HMAC-SHA256 over security-relevant rows (versions'
           │                                 state, current pointers, tokens, policies, bindings)
           ├─ strongroom/token-digest/1      HMAC-SHA256 of bearer tokens' secret part
           ├─ strongroom/secret-backup/1     AES-256-GCM: sealed per-secret backups
           ├─ strongroom/event-signing/1     HMAC: per-subscription webhook signing keys
           ├─ strongroom/report-signing/1    Ed25519 seed: signs compliance reports (its public
           │                                 key verifies them: strongroom report public-key)
           └─ strongroom/seal-check/1        its SHA-256 is stored to recognise the right
                                             master key when a quorum unseals (core.unseal)

The master key itself is never used as a cipher or MAC key: HKDF is its only use, so each
derived key is independent of the others (a key learnt from one use says nothing about
another). Stores made before the wrapping key existed had their keyring wrapped under the
master key directly; opening one re-wraps it once (see ``Keyring.upgrade``). A future custody
scheme (unsealing by quorum: core.unseal; a key held in an HSM) replaces only the root: the
tree below it stays as it is.
"""

from __future__ import annotations

import enum

__all__ = ["Purpose"]


class Purpose(bytes, enum.Enum):
    """The HKDF ``info`` of each derived key. The values are part of the stored format: a
    change would orphan every row made under the old one, so a new scheme gets a new name."""

    KEK_WRAP = b"strongroom/kek-wrap/1"
    AUDIT_CHAIN = b"strongroom/audit-chain/1"
    AUDIT_CHECKPOINT = b"strongroom/audit-checkpoint/1"
    METADATA_MAC = b"strongroom/metadata-mac/1"
    TOKEN_DIGEST = b"strongroom/token-digest/1"
    SECRET_BACKUP = b"strongroom/secret-backup/1"
    EVENT_SIGNING = b"strongroom/event-signing/1"
    REPORT_SIGNING = b"strongroom/report-signing/1"
    SEAL_CHECK = b"strongroom/seal-check/1"
