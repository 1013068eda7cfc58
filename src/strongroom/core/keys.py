"""The key derivation tree: every key strongroom uses comes from the root key, one per purpose.

::

    master key (32 bytes: STRONGROOM_MASTER_KEY, a 0600 key file, a quorum, an HSM; never
    │           stored with the data)
    ├─ strongroom/seal-check/1        its SHA-256 is stored to recognise the right master
    │                                 key when a quorum or an HSM unseals (core.unseal)
    └─ strongroom/root-wrap/1         AES-256-GCM: wraps the root key (core.root), once the
                                      master key was replaced; before that the root key *is*
                                      the master key's own bytes
    root key (32 bytes; what every key below hangs from, never changed by a replacement)
      └─ HKDF-SHA256, no salt, info = the purpose below; one 256-bit key each
           ├─ strongroom/kek-wrap/1          AES-256-GCM: wraps the keyring's key-encryption keys
           │    └─ KEK (one per keyring version, stored wrapped)
           │         └─ data key (one per secret version, stored wrapped)
           │              └─ AES-256-GCM over the value, associated data = (name, version)
           ├─ strongroom/audit-chain/1       HMAC-SHA256 linking each audit event to the previous
           │                                 (key epoch 0; each replacement adds a random key,
           │                                 stored with the root key: core.audit.ChainKey)
           ├─ strongroom/audit-checkpoint/1  Ed25519 seed: signs audit checkpoints kept outside
           │                                 the database (its public key verifies them)
           ├─ strongroom/metadata-mac/1      HMAC-SHA256 over security-relevant rows (versions'
           │                                 state, current pointers, tokens, policies, bindings)
           ├─ strongroom/token-digest/1      HMAC-SHA256 of bearer tokens' secret part
           ├─ strongroom/secret-backup/1     AES-256-GCM: sealed per-secret backups
           ├─ strongroom/event-signing/1     HMAC: per-subscription webhook signing keys
           └─ strongroom/report-signing/1    Ed25519 seed: signs compliance reports (its public
                                             key verifies them: strongroom report public-key)

Replacing the master key (``strongroom key replace-master``) stores the same root key wrapped
by the new master key, so nothing below the root changes: not a MAC, not a token digest; only
the audit chain moves to a new random key.
Neither key is ever used as a cipher or MAC key itself: HKDF is their only use, so each
derived key is independent of the others (a key learnt from one use says nothing about
another). Both are held in a ``crypto.MasterKey``. Stores made before the wrapping key existed
had their keyring wrapped under the master key directly; opening one re-wraps it once (see
``Keyring.upgrade``).
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
    #: Derived from the *master* key (not the root): the key that wraps the root key.
    ROOT_WRAP = b"strongroom/root-wrap/1"
