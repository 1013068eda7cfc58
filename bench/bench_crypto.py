"""Reference runs: AES-GCM alone and strongroom's envelope, on 64-byte values.

These are the ceilings the store benchmarks are compared with in the same run: a read can be no
faster than opening an envelope, a write no faster than sealing one.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.harness import Measurement, ResultRow, SyncOp, run_sync
from strongroom.backends.secret_sql import SECRETS, VERSIONS, checked, secret_fields, version_fields
from strongroom.core.crypto import Envelope, Keyring, MasterKey, Sealed
from strongroom.core.integrity import RowMac
from strongroom.core.keys import Purpose
from strongroom.db.rows import props_from_row

__all__ = ["AESGCM_ROUNDTRIP", "ENVELOPE_OPEN", "ENVELOPE_SEAL", "run_crypto"]

AESGCM_ROUNDTRIP = "AESGCM encrypt+decrypt"
ENVELOPE_SEAL = "Envelope.seal"
ENVELOPE_OPEN = "Envelope.open"
ENVELOPE_ROUNDTRIP = "Envelope.seal+open"
ROW_PROPS = "row to properties"
ROW_MACS = "row to properties, MACs checked"
VALUE_BYTES = 64
_KEYS = 100


def _envelope() -> Envelope:
    master, _ = MasterKey.generate()
    return Envelope(Keyring.load(master, [Keyring.new_row(master, 1)]))


def run_crypto(*, seconds: float, warmup_seconds: float, rounds: int = 5) -> list[ResultRow]:
    """Measure the references; each row's ratio is against AESGCM encrypt+decrypt."""
    plaintext = secrets.token_bytes(VALUE_BYTES)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    aad = b"strongroom/1\x00value\x00bench-000\x00" + b"0" * 32

    def aesgcm_roundtrip(_i: int) -> object:
        nonce = secrets.token_bytes(12)
        return aead.decrypt(nonce, aead.encrypt(nonce, plaintext, aad), aad)

    envelope = _envelope()
    names = [f"bench-{k:03d}" for k in range(_KEYS)]
    version = secrets.token_hex(16)
    sealed: list[Sealed] = [envelope.seal(name, version, plaintext) for name in names]

    def seal(i: int) -> object:
        return envelope.seal(names[i % _KEYS], version, plaintext)

    def open_(i: int) -> object:
        k = i % _KEYS
        return envelope.open(names[k], version, sealed[k])

    def roundtrip(i: int) -> object:
        name = names[i % _KEYS]
        return envelope.open(name, version, envelope.seal(name, version, plaintext))

    master = MasterKey.generate()[0]
    mac = RowMac(master.derive(Purpose.METADATA_MAC))
    row = _version_row(mac)

    def props(_i: int) -> object:
        return props_from_row(row, micros=True, current=True)

    def macs(_i: int) -> object:
        return checked(mac, row, micros=True)

    # Guard against measuring a broken path: every reference must give the plaintext back.
    if aesgcm_roundtrip(0) != plaintext or open_(7) != plaintext or roundtrip(3) != plaintext:
        raise RuntimeError("a crypto reference did not return its plaintext")

    def measure(label: str, op: SyncOp) -> Measurement:
        return run_sync(
            op, label=label, seconds=seconds, warmup_seconds=warmup_seconds, rounds=rounds
        )

    base = measure(AESGCM_ROUNDTRIP, aesgcm_roundtrip)
    rows = [ResultRow("crypto", AESGCM_ROUNDTRIP, base)]
    references: list[tuple[str, SyncOp]] = [
        (ENVELOPE_SEAL, seal),
        (ENVELOPE_OPEN, open_),
        (ENVELOPE_ROUNDTRIP, roundtrip),
    ]
    for label, op in references:
        m = measure(label, op)
        rows.append(
            ResultRow(
                "crypto",
                label,
                m,
                reference=AESGCM_ROUNDTRIP,
                ratio=m.ops_per_s / base.ops_per_s,
            )
        )
    # What the row MACs add to every read: two HMACs and the counters, against turning the row
    # into properties alone (the read path did that before) and against opening the envelope.
    plain = measure(ROW_PROPS, props)
    rows.append(ResultRow("crypto", ROW_PROPS, plain, reference=ENVELOPE_OPEN,
                          ratio=plain.ops_per_s / _ops(rows, ENVELOPE_OPEN)))  # fmt: skip
    checked_row = measure(ROW_MACS, macs)
    rows.append(ResultRow("crypto", ROW_MACS, checked_row, reference=ROW_PROPS,
                          ratio=checked_row.ops_per_s / plain.ops_per_s))  # fmt: skip
    return rows


def _ops(rows: list[ResultRow], label: str) -> float:
    return next(r.measurement.ops_per_s for r in rows if r.operation == label)


def _version_row(mac: RowMac) -> dict[str, object]:
    """A joined secret/version row as the SQLite store reads it, with genuine MACs."""
    now = 1_767_225_600_000_000
    secret = {"name": "bench-000", "current_seq": 3, "created_at": now, "gen": 5,
              "revoked_gen": None, "deleted_at": None, "purge_at": None}  # fmt: skip
    version = {"seq": 3, "version": "0" * 32, "enabled": 1, "revoked_at": None,
               "expires_at": None, "not_before": None, "created_at": now}  # fmt: skip
    return {
        **version, "name": "bench-000", "current_seq": 3, "s_created": now, "s_gen": 5,
        "revoked_gen": None, "deleted_at": None, "purge_at": None, "max_seq": 3, "v_gen": 5,
        "s_mac": mac.mac(SECRETS, secret_fields("bench-000", secret)),
        "v_mac": mac.mac(VERSIONS, version_fields("bench-000", version, 5)),
        "secret_type": "generic", "content_type": None, "tags": '{"env":"prod"}',
        "updated_at": now,
    }  # fmt: skip
