"""Signed audit checkpoints and the checks made against them (pure: no I/O).

The hash chain catches an event changed, removed or inserted in the middle of the log, but
not a log cut short: an attacker who can write the audit tables can delete the newest events
and set the chain head back, and what remains is a valid chain. A checkpoint records, every
so often, how far each chain had reached (sequence number and chain hash) and is kept outside
the audit database, signed with an Ed25519 key derived from the master key for this purpose
alone. ``verify`` then fails when the log ends before a checkpoint, when the event at a
checkpointed position is not the one that was there, or when checkpoints went backwards.

Checkpoints speak of *chains*, not of one chain: today the log is one chain (``main``); a log
made of several chains (one per writer, anchored in a global one) lists a head per chain, and
every check below applies to each. Checkpoints themselves form a chain: each carries its
number and the SHA-256 of the previous checkpoint's bytes, so a checkpoint removed from the
middle of the sink is noticed too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = [
    "FORMAT",
    "MAIN_CHAIN",
    "ChainHead",
    "ChainReach",
    "Checkpoint",
    "CheckpointError",
    "CheckpointSigner",
    "check_log",
    "check_sequence",
    "load_checkpoint",
]

FORMAT = "strongroom-audit-checkpoint/1"
MAIN_CHAIN = "main"


class CheckpointError(ValueError):
    """A checkpoint that is not well formed or whose signature does not verify."""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """How far one chain had reached: its last sequence number and that event's hash."""

    chain: str
    seq: int
    hash: bytes

    def to_dict(self) -> dict[str, object]:
        return {"chain": self.chain, "seq": self.seq, "hash": self.hash.hex()}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed statement "at ``issued_at`` the log had reached ``heads``"."""

    number: int
    previous: str  # hex SHA-256 of the previous checkpoint's bytes; "" for the first
    issued_at: datetime
    heads: tuple[ChainHead, ...]
    digest: str = ""  # hex SHA-256 of this checkpoint's bytes (set when signed or loaded)

    def head(self, chain: str) -> ChainHead | None:
        return next((h for h in self.heads if h.chain == chain), None)

    def body(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "number": self.number,
            "previous": self.previous,
            "issued_at": self.issued_at.astimezone(UTC).isoformat(),
            "heads": [h.to_dict() for h in sorted(self.heads, key=lambda h: h.chain)],
        }

    def summary(self) -> dict[str, object]:
        return {**self.body(), "digest": self.digest}


def _canonical(body: Mapping[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class CheckpointSigner:
    """Signs checkpoints with an Ed25519 key whose 32-byte seed is derived from the master key
    (``Purpose.AUDIT_CHECKPOINT``); anyone given :attr:`public_key` can verify them."""

    __slots__ = ("_private", "public_key")

    def __init__(self, seed: bytes) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._private.public_key()

    @property
    def public_key_text(self) -> str:
        # Imported here: cryptography's serialization package (SSH keys and all) costs every
        # process that opens an audit log a few ms, and only this display needs it.
        from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
            Encoding,
            PublicFormat,
        )

        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    def sign(self, checkpoint: Checkpoint) -> tuple[Checkpoint, bytes]:
        """The checkpoint with its digest, and the bytes to store (one JSON document)."""
        body = checkpoint.body()
        signature = self._private.sign(_canonical(body))
        data = _canonical({**body, "signature": base64.b64encode(signature).decode("ascii")})
        signed = Checkpoint(
            checkpoint.number, checkpoint.previous, checkpoint.issued_at, checkpoint.heads,
            hashlib.sha256(data).hexdigest(),
        )  # fmt: skip
        return signed, data

    def __repr__(self) -> str:
        return "CheckpointSigner(<hidden>)"


def load_checkpoint(data: bytes, public_key: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint in ``data`` if its signature verifies; CheckpointError otherwise."""
    try:
        document = json.loads(data)
        signature = base64.b64decode(document.pop("signature"), validate=True)
        if document.get("format") != FORMAT:
            raise CheckpointError("not an audit checkpoint")
        public_key.verify(signature, _canonical(document))
        heads = tuple(
            ChainHead(str(h["chain"]), int(h["seq"]), bytes.fromhex(h["hash"]))
            for h in document["heads"]
        )
        issued = datetime.fromisoformat(document["issued_at"])
        number, previous = int(document["number"]), str(document["previous"])
    except InvalidSignature:
        raise CheckpointError("the checkpoint's signature does not verify") from None
    except (KeyError, TypeError, ValueError, binascii.Error, AttributeError):
        raise CheckpointError("the checkpoint is not well formed") from None
    return Checkpoint(number, previous, issued, heads, hashlib.sha256(data).hexdigest())


def check_sequence(checkpoints: Sequence[Checkpoint]) -> str | None:
    """Why the checkpoints (ordered by number) are not one growing chain, or None.

    The oldest ones may have been archived away (the first one read is taken as it is), but
    from there on every number follows the last, every checkpoint names its predecessor's
    digest, and no chain's sequence number ever goes down."""
    for before, after in itertools.pairwise(checkpoints):
        if after.number != before.number + 1:
            return f"checkpoints {before.number + 1}..{after.number - 1} are missing"
        if after.previous != before.digest:
            return f"checkpoint {after.number} does not follow checkpoint {before.number}"
        for head in before.heads:
            later = after.head(head.chain)
            if later is None or later.seq < head.seq:
                return (
                    f"checkpoint {after.number} went backwards: chain {head.chain!r} was at "
                    f"{head.seq} in checkpoint {before.number}"
                )
    return None


@dataclass(frozen=True, slots=True)
class ChainReach:
    """What a walk of one chain found: where it starts (the prune anchor) and ends, and the
    hashes it saw at the positions checkpoints name."""

    anchor_seq: int
    anchor_hash: bytes
    last_seq: int
    hashes: Mapping[int, bytes]


def check_log(
    checkpoints: Iterable[Checkpoint], reach: Mapping[str, ChainReach]
) -> tuple[int, str] | None:
    """(position, reason) of the first way the log contradicts a checkpoint, or None."""
    for checkpoint in checkpoints:
        for head in checkpoint.heads:
            found = reach.get(head.chain)
            last = found.last_seq if found is not None else 0
            if last < head.seq:
                return (
                    last + 1,
                    f"the log ends at event {last} but checkpoint {checkpoint.number} "
                    f"({checkpoint.issued_at.isoformat()}) says it had reached {head.seq}: "
                    "events were cut off",
                )
            if found is None or head.seq < found.anchor_seq:
                continue  # nothing recorded yet, or pruned away since: nothing to compare
            seen: bytes | None
            if head.seq == found.anchor_seq:
                seen = found.anchor_hash if head.seq else head.hash
            else:
                seen = found.hashes.get(head.seq)
            if seen != head.hash:
                return (
                    head.seq,
                    f"event {head.seq} is not the one checkpoint {checkpoint.number} recorded "
                    "there: the log was rewritten",
                )
    return None
