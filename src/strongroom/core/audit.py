"""Audit events and their hash chain (pure: no I/O).

An event's ``chain_hash`` is HMAC-SHA256, under the chain key of its key epoch, of the
previous event's hash and a canonical encoding of the event. Changing, removing or inserting a
row breaks the chain at that row; without the master key nobody can forge a consistent chain.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hmac import compare_digest
from json import encoder as _json_encoder
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, hmac

from strongroom.core.storable import clean_text

if TYPE_CHECKING:
    from strongroom.core.crypto import MasterKey

__all__ = [
    "DETAIL_FIELDS",
    "EPOCH_CHECK_FIELD",
    "EPOCH_FIELD",
    "GENESIS_HASH",
    "AuditAction",
    "AuditEvent",
    "AuditResult",
    "ChainKey",
    "canonical",
    "canonical_columns",
    "clean_details",
    "clean_text",
    "details_json",
    "epoch_step",
    "epoch_switch",
    "micros_of",
    "switched_epoch",
]

GENESIS_HASH = b"\x00" * 32


class AuditAction(enum.StrEnum):
    """What was done: the seed's six actions and those the API adds."""

    CREATE = "CREATE"
    READ = "READ"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    REVOKE = "REVOKE"
    ROTATE = "ROTATE"
    LIST = "LIST"
    DESCRIBE = "DESCRIBE"
    RECOVER = "RECOVER"
    PURGE = "PURGE"
    KEY_ROTATE = "KEY_ROTATE"
    AUDIT_PRUNE = "AUDIT_PRUNE"
    AUTHENTICATE = "AUTHENTICATE"
    ACCESS_CHANGE = "ACCESS_CHANGE"
    INTEGRITY = "INTEGRITY"  # a stored row failed its MAC and was refused
    CUSTODY_INIT = "CUSTODY_INIT"  # the master key split among key holders
    UNSEAL = "UNSEAL"  # a share given (recorded once the service is unsealed)
    SEAL = "SEAL"  # the master key dropped from memory
    MASTER_REPLACE = "MASTER_REPLACE"  # the root key wrapped by a new master key
    EXPIRY = "EXPIRY"  # a version nears or passed its expiry: the notice, once per version
    KEY_CREATE = "KEY_CREATE"  # a Key Vault key (or a new version of one) generated
    KEY_UPDATE = "KEY_UPDATE"  # a key version's enabled flag or tags changed
    KEY_DESCRIBE = "KEY_DESCRIBE"  # a key's public half read
    KEY_LIST = "KEY_LIST"  # keys, or a key's versions, listed
    KEY_WRAP = "KEY_WRAP"  # a key wrapped with a Key Vault key
    KEY_UNWRAP = "KEY_UNWRAP"  # a key unwrapped with a Key Vault key's private half
    CHAIN_KEY = "CHAIN_KEY"  # this chain's later events are linked under a newer key epoch


class AuditResult(enum.StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    PARTIAL = "PARTIAL"


#: Keys an event's details may carry; anything else is dropped before it is written.
DETAIL_FIELDS = frozenset(
    {
        "version", "secret_type", "content_type", "tags", "enabled", "expires_at",
        "not_before", "reason", "count", "immediate", "recoverable_days",
        "key_version", "rewrapped", "operation", "approved_by", "requested_by", "severity",
        "revocation_id", "rotation", "attempt", "closed_by", "pruned", "anchor_seq",
        "denied_action", "identity", "token_id", "policy", "policies", "method", "path",
        "break_glass", "table", "row", "auth", "auth_method", "mount", "role", "sub", "iss",
        "seal", "threshold", "shares", "progress", "attempted_at", "algorithm", "key_type",
        "key_size", "key_ops", "epoch", "custody",
        "site", "edge_seq", "edge_prev", "edge_hash",
        "used_by", "acknowledged_by", "due_at", "escalation", "overdue",
        "chain_key_epoch", "chain_key_check",
    }
)  # fmt: skip


def _clean_json(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):  # before the scalars: every event's auth details are one
        return {clean_text(k, 256): _clean_json(v) for k, v in value.items()}
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, enum.Enum):
        return _clean_json(value.value)
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    return clean_text(repr(type(value)))


def clean_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """Keep allowlisted keys only, with JSON-safe values."""
    if not details:
        return {}
    return {k: _clean_json(v) for k, v in details.items() if k in DETAIL_FIELDS}


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One row of ``secrets_audit_log`` before it is chained."""

    action: AuditAction
    resource_name: str | None
    timestamp: datetime
    result: AuditResult
    actor_id: str
    actor_ip: str | None = None
    actor_user_agent: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    error_code: str | None = None
    duration_ms: int | None = None

    @classmethod
    def build(cls, **fields: Any) -> AuditEvent:
        """An event with every text field cleaned and details allowlisted."""
        return cls(
            action=AuditAction(fields["action"]),
            resource_name=clean_text(fields.get("resource_name"), 256),
            timestamp=fields["timestamp"].astimezone(UTC),
            result=AuditResult(fields["result"]),
            actor_id=clean_text(fields["actor_id"], 256) or "unknown",
            actor_ip=clean_text(fields.get("actor_ip"), 64),
            actor_user_agent=clean_text(fields.get("actor_user_agent"), 512),
            details=clean_details(fields.get("details")),
            error_message=clean_text(fields.get("error_message")),
            error_code=clean_text(fields.get("error_code"), 64),
            duration_ms=fields.get("duration_ms"),
        )

    @classmethod
    def stored(cls, row: Any, details: dict[str, Any], timestamp: Any) -> AuditEvent:
        """An event exactly as a row holds it, for checking and reading the log. Nothing is
        cleaned again: a row edited to carry an extra detail or a longer text must hash as it
        is (and fail), not as a cleaned copy that matches the original."""
        return cls(
            action=AuditAction(row["action"]),
            resource_name=row["resource_name"],
            timestamp=timestamp.astimezone(UTC),
            result=AuditResult(row["result"]),
            actor_id=row["actor_id"],
            actor_ip=row["actor_ip"],
            actor_user_agent=row["actor_user_agent"],
            details=details,
            error_message=row["error_message"],
            error_code=row["error_code"],
            duration_ms=row["duration_ms"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "resource_name": self.resource_name,
            "timestamp": self.timestamp,
            "result": self.result.value,
            "actor_id": self.actor_id,
            "actor_ip": self.actor_ip,
            "actor_user_agent": self.actor_user_agent,
            "details": self.details,
            "error_message": self.error_message,
            "error_code": self.error_code,
            "duration_ms": self.duration_ms,
        }


def micros_of(when: datetime) -> int:
    """A time as the chain covers it: microseconds since the epoch."""
    return int(when.timestamp()) * 1_000_000 + when.microsecond


#: One encoder for every event: ``json.dumps`` with options builds a new one per call, which
#: was a third of the cost of checking a long chain.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


#: The C encoder that ``_CANONICAL_JSON.encode`` builds anew on every call, built once with
#: the same options (no cycle check: rows and cleaned details hold no cycles). Where Python
#: has no C encoder, the pure Python one; both give the same text.
_C_MAKE = getattr(_json_encoder, "c_make_encoder", None)
_C_ENCODER: Callable[[Any, int], Any] | None = (
    None if _C_MAKE is None
    else _C_MAKE(None, _CANONICAL_JSON.default, _json_encoder.encode_basestring_ascii, None,
                 ":", ",", True, False, True)
)  # fmt: skip


def _encode(value: Any) -> str:
    if _C_ENCODER is None:
        return _CANONICAL_JSON.encode(value)
    return "".join(_C_ENCODER(value, 0))


#: The same for a details column that keeps non-ASCII text as it is (SQLite's).
_DETAILS_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_C_DETAILS: Callable[[Any, int], Any] | None = (
    None if _C_MAKE is None
    else _C_MAKE(None, _DETAILS_JSON.default, _json_encoder.encode_basestring, None,
                 ":", ",", True, False, True)
)  # fmt: skip


def details_json(details: dict[str, Any], *, ascii_only: bool = False) -> str:
    """A details column's text: sorted keys, no spaces, as ``json.dumps`` with those options
    writes it, from one encoder for every row (``json.dumps`` with options builds one per
    call, on every audited request). ``ascii_only`` escapes non-ASCII text."""
    if ascii_only:
        return _encode(details)
    if _C_DETAILS is None:
        return _DETAILS_JSON.encode(details)
    return "".join(_C_DETAILS(details, 0))


def canonical(event: AuditEvent, seq: int) -> bytes:
    """The bytes the chain covers: sorted-key JSON of every column, times in microseconds."""
    return canonical_columns(
        seq,
        event.action.value,
        event.resource_name,
        micros_of(event.timestamp),
        event.result.value,
        event.actor_id,
        event.actor_ip,
        event.actor_user_agent,
        event.details,
        event.error_message,
        event.error_code,
        event.duration_ms,
    )


def canonical_columns(seq: int, *columns: Any) -> bytes:
    """``canonical`` from the columns as a row holds them (action and result as text, the
    time in microseconds), in that order: the chain check reads rows straight into this,
    without building an event (a third of its cost on a long chain)."""
    return _encode([seq, *columns]).encode("ascii")


#: What a key epoch's check value is the HMAC of (core.audit.ChainKey.check).
_KEY_CHECK = b"strongroom/audit-chain-key-check/1"
_LOWER_HEX = re.compile("[0-9a-f]*")
#: The details of the event that moves a chain to a new key epoch (written by nothing else).
EPOCH_FIELD, EPOCH_CHECK_FIELD = "chain_key_epoch", "chain_key_check"


class ChainKey:
    """The HMAC keys of the audit chain, one per key epoch: epoch 0's derived from the root
    key, each later one random, added when the master key was replaced (core.root). Links are
    made with the newest (``epoch``); a chain moves to it with an ``epoch_switch`` event,
    linked under the key it leaves, so an old key can no longer extend or rewrite the chain."""

    __slots__ = ("_checks", "_keyed", "_raw", "epoch")

    def __init__(self, key: bytes, *later: bytes) -> None:
        keys = (key, *later)
        self._raw = tuple(bytes(k) for k in keys)
        # Keyed once; each link copies the keyed state (half the cost of keying anew).
        self._keyed = tuple(hmac.HMAC(k, hashes.SHA256()) for k in keys)
        self._checks = tuple(_check_value(k) for k in keys)
        self.epoch = len(keys) - 1

    @classmethod
    def of(cls, root: MasterKey) -> ChainKey:
        """Every epoch's key of ``root`` (core.crypto.MasterKey.audit_chain_keys)."""
        return cls(*root.audit_chain_keys())

    def at(self, epoch: int) -> ChainKey:
        """The ring as it was at ``epoch``: links with that epoch's key."""
        if not 0 <= epoch <= self.epoch:
            raise ValueError(f"no audit chain key of epoch {epoch}")
        view = object.__new__(ChainKey)
        view._keyed, view._checks, view._raw, view.epoch = (
            self._keyed[: epoch + 1], self._checks[: epoch + 1], self._raw[: epoch + 1], epoch,
        )  # fmt: skip
        return view

    def raw_for_worker(self) -> tuple[bytes, ...]:
        """Every epoch's key bytes, for a chain-check worker process alone (written to its
        stdin pipe, never to its command line or environment): the one place they leave
        this class."""
        return self._raw

    def check(self, epoch: int) -> bytes:
        """A value that names epoch ``epoch``'s key and reveals nothing of it."""
        return self._checks[epoch]

    def link(self, previous: bytes, event: AuditEvent, seq: int) -> bytes:
        mac = self._keyed[self.epoch].copy()
        mac.update(previous)
        mac.update(canonical(event, seq))
        return mac.finalize()

    def mac(self, previous: bytes, body: bytes) -> bytes:
        """The HMAC of ``previous`` then ``body`` (links of other chains than the events')."""
        mac = self._keyed[self.epoch].copy()
        mac.update(previous)
        mac.update(body)
        return mac.finalize()

    def __repr__(self) -> str:
        return f"ChainKey(epoch={self.epoch}, <hidden>)"


def _check_value(key: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(_KEY_CHECK)
    return mac.finalize()


def epoch_switch(key: ChainKey, at: datetime) -> AuditEvent:
    """The event that moves a chain to ``key``'s epoch: linked under the previous epoch's key,
    it names the new key by its check value (the verifier holds every key and compares)."""
    return AuditEvent(
        action=AuditAction.CHAIN_KEY,
        resource_name=None,
        timestamp=at.astimezone(UTC),
        result=AuditResult.SUCCESS,
        actor_id="strongroom",
        details={EPOCH_FIELD: key.epoch, EPOCH_CHECK_FIELD: key.check(key.epoch).hex()},
    )


def switched_epoch(key: ChainKey, details: dict[str, Any], current: int) -> int | str | None:
    """Where an event moves its chain: None if it is no epoch switch, the new epoch if it is a
    valid one from ``current``, else why it is not."""
    epoch, check = details.get(EPOCH_FIELD), details.get(EPOCH_CHECK_FIELD)
    if epoch is None and check is None:
        return None
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not isinstance(check, str):
        return "audit chain key switch is not well formed"
    # As written (lower-case hex of the check value); any other text names no key.
    named = bytes.fromhex(check) if _LOWER_HEX.fullmatch(check) and len(check) % 2 == 0 else b""
    return epoch_step(key, current, epoch, named, "audit chain key switch") or epoch


def epoch_step(key: ChainKey, current: int, epoch: int, check: bytes, what: str) -> str | None:
    """Why a move from epoch ``current`` to ``epoch`` naming a key by ``check`` is not valid
    (a switch event's or a key anchor's), or None: one step forward, to that epoch's key."""
    if not current < epoch <= key.epoch:
        return f"{what} from epoch {current} to {epoch} is not a step forward"
    if not compare_digest(key.check(epoch), check):
        return f"{what} names another key than epoch {epoch}'s"
    return None
