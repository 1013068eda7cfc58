"""A real audit chain for the benchmarks, made fast: events generated in Python, each linked
with the chain key exactly as a writer links it (core.audit.canonical_columns), and copied
into PostgreSQL in binary COPY batches after the head of writer chain 1, whose head row is
then moved to the last one. The caller closes every writer of the schema first.

The mix follows the audit query benchmark's generated log (bench_audit._GENERATE): 70% reads,
then describes, lists, updates, creates, rotations and deletes, over ``days`` days, with a
share of failures under the usual error codes.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import asyncpg

from strongroom.core.audit import ChainKey, canonical_columns, micros_of

__all__ = ["append_real_chain"]

_COLUMNS = [
    "id", "action", "resource_name", "timestamp", "result", "actor_id", "actor_ip",
    "actor_user_agent", "details", "error_message", "error_code", "duration_ms", "prev_hash",
    "chain_hash",
]  # fmt: skip
_ACTIONS = [(0.70, "READ"), (0.80, "DESCRIBE"), (0.88, "LIST"), (0.94, "UPDATE"),
            (0.97, "CREATE"), (0.99, "ROTATE"), (1.01, "DELETE")]  # fmt: skip
_VERSIONED = frozenset({"READ", "UPDATE", "CREATE", "ROTATE"})
_CODES = ["not_found"] * 3 + ["permission_denied"] * 2 + ["deleted", "disabled", "revoked"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BATCH = 50_000


def _action(pick: float) -> str:
    return next(name for bound, name in _ACTIONS if pick < bound)


async def append_real_chain(
    conn: asyncpg.Connection,
    key: ChainKey,
    events: int,
    *,
    until: datetime,
    days: int,
    secrets_n: int,
    actors: int,
    failures: float,
) -> int:
    """Append ``events`` linked events to chain 1 (in ``conn``'s schema); the new head id."""
    head = await conn.fetchrow("SELECT last_seq, last_hash FROM secrets_audit_chain WHERE id = 1")
    if head is None:
        raise RuntimeError("writer chain 1 has no head row")
    last, prev = int(head["last_seq"]), bytes(head["last_hash"])
    rng = random.Random(18)  # a fixed seed: the same log every run
    start = micros_of(until) - days * 86_400_000_000
    step = days * 86_400_000_000 / events
    rows: list[tuple[object, ...]] = []
    for g in range(1, events + 1):
        jitter, act = rng.random(), 1 + int(rng.random() * actors)
        action = _action(rng.random())
        failed = rng.random() < failures
        micros = start + int((g - 1 + jitter) * step)
        resource = None if action == "LIST" else f"secret-{1 + int(rng.random() * secrets_n):04d}"
        details = {"version": format(g, "x")} if action in _VERSIONED else {}
        columns = (
            action, resource, micros, "FAILURE" if failed else "SUCCESS", f"actor-{act:03d}",
            f"10.{act // 100}.{act % 100}.{1 + g % 2}", f"strongroom-client/1.{act % 7}",
            details, "generated failure" if failed else None,
            _CODES[g % 8] if failed else None, int(jitter * 20),
        )  # fmt: skip
        seq = last + g
        link = key.mac(prev, canonical_columns(seq, *columns))
        when = _EPOCH + timedelta(microseconds=micros)
        rows.append((seq, columns[0], columns[1], when, *columns[3:7],
                     json.dumps(details), *columns[8:], prev, link))  # fmt: skip
        prev = link
        if len(rows) == _BATCH:
            await conn.copy_records_to_table("secrets_audit_log", records=rows, columns=_COLUMNS)
            rows = []
    if rows:
        await conn.copy_records_to_table("secrets_audit_log", records=rows, columns=_COLUMNS)
    await conn.execute(
        "UPDATE secrets_audit_chain SET last_seq = $1, last_hash = $2 WHERE id = 1",
        last + events, prev,
    )  # fmt: skip
    return last + events
