"""Appending to the SQLite audit chain, in the caller's transaction on the file's writer: the
events linked after the chain's head (moved to a newer key epoch first when it is behind, and
fenced by the anchor chain's epoch), and the anchor that a change or a key switch needs."""

from __future__ import annotations

import sqlite3
from typing import Any

from strongroom.core.anchors import ANCHOR_CHAIN, MAIN_WRITER, Anchor, has_changes, next_anchor
from strongroom.core.audit import AuditEvent, ChainKey, details_json, epoch_switch
from strongroom.core.errors import ChainKeyStaleError
from strongroom.db.audit_key_check import behind
from strongroom.db.rows import to_micros

__all__ = ["INSERT_ANCHOR", "anchor_row", "chain_rows"]

_INSERT = (
    "INSERT INTO secrets_audit_log (id, action, resource_name, timestamp, result, actor_id, "
    "actor_ip, actor_user_agent, details, error_message, error_code, duration_ms, prev_hash, "
    "chain_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

INSERT_ANCHOR = (
    "INSERT INTO secrets_audit_anchors (seq, chain_id, first_seq, last_seq, chain_hash, "
    "changes, anchored_at, prev_hash, anchor_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def anchor_row(anchor: Anchor, when: Any) -> tuple[Any, ...]:
    """An anchor's column values in ``INSERT_ANCHOR``'s order (``when``: its time as stored)."""
    return (
        anchor.seq, anchor.chain, anchor.first, anchor.last, anchor.chain_hash, anchor.changes,
        when, anchor.prev_hash, anchor.anchor_hash,
    )  # fmt: skip


def _anchor_changes(
    conn: sqlite3.Connection,
    key: ChainKey,
    events: list[AuditEvent],
    last: tuple[int, bytes],
    *,
    changes: bool = True,
) -> None:
    """Anchor chain 1 up to ``last`` in the batch's transaction: the change feed's order."""
    seq, prev, epoch = conn.execute(
        "SELECT last_seq, last_hash, key_epoch FROM secrets_audit_chain WHERE id = ?",
        (ANCHOR_CHAIN,),
    ).fetchone()
    head = (seq, bytes(prev))
    if epoch > key.epoch:
        raise ChainKeyStaleError(epoch, key.epoch)
    at = events[-1].timestamp
    if epoch < key.epoch:
        behind(epoch, key.epoch)
    done = conn.execute(
        "SELECT coalesce(max(last_seq), 0) FROM secrets_audit_anchors WHERE chain_id = ?",
        (MAIN_WRITER,),
    ).fetchone()[0]
    anchor = next_anchor(key, head, MAIN_WRITER, (done + 1, *last), changes=changes, at=at)
    conn.execute(INSERT_ANCHOR, anchor_row(anchor, to_micros(anchor.anchored_at)))
    conn.execute(
        "UPDATE secrets_audit_chain SET last_seq = ?, last_hash = ?, key_epoch = ? WHERE id = ?",
        (anchor.seq, anchor.anchor_hash, key.epoch, ANCHOR_CHAIN),
    )


def chain_rows(conn: sqlite3.Connection, events: list[AuditEvent], key: ChainKey) -> list[int]:
    """Chain ``events`` after the head and insert them, in the caller's transaction. A chain
    still at an older key epoch first moves to ``key``'s with a switch event (core.audit),
    anchored in the same transaction; once the log moved to a newer key, this one writes
    nothing."""
    heads = {
        row[0]: row[1:]
        for row in conn.execute(
            "SELECT id, last_seq, last_hash, key_epoch FROM secrets_audit_chain WHERE id <= 1"
        )
    }
    last_seq, last_hash, epoch = heads[MAIN_WRITER]
    fence = max(epoch, heads[ANCHOR_CHAIN][2])  # the anchor chain moves first (a replacement)
    if fence > key.epoch:
        raise ChainKeyStaleError(fence, key.epoch)
    switched = epoch < key.epoch
    linking = [(epoch_switch(key, events[0].timestamp), key.at(epoch))] if switched else []
    linking += [(event, key) for event in events]
    prev = bytes(last_hash)
    rows, ids = [], []
    for offset, (event, by) in enumerate(linking, start=1):
        seq = last_seq + offset
        link = by.link(prev, event, seq)
        rows.append(
            (
                seq, event.action.value, event.resource_name, to_micros(event.timestamp),
                event.result.value, event.actor_id, event.actor_ip, event.actor_user_agent,
                details_json(event.details), event.error_message, event.error_code,
                event.duration_ms, prev, link,
            )
        )  # fmt: skip
        ids.append(seq)
        prev = link
    conn.executemany(_INSERT, rows)
    conn.execute(
        "UPDATE secrets_audit_chain SET last_seq = ?, last_hash = ?, key_epoch = ? WHERE id = 1",
        (ids[-1], prev, key.epoch),
    )
    changes = has_changes(events)
    if changes or switched:
        _anchor_changes(conn, key, events, (ids[-1], prev), changes=changes)
    return ids[len(linking) - len(events) :]
