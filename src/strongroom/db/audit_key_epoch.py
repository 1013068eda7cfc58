"""The anchor chain's move to a new audit chain key, in the transaction that makes a new root
key record current (db.root_store): from the moment a replaced master key takes effect, the
anchor chain is at the new epoch, and a head found behind it later was rolled back (no
process ever moves it again: that would hide the rollback).

The key anchor (core.anchors.key_anchor) is linked under the key the chain leaves, so whoever
held only the old key could not have made the anchors after it, and those anchors pin every
writer chain's hashes: history before the replacement is sealed under the new key.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

from strongroom.core.anchors import ANCHOR_CHAIN, key_anchor
from strongroom.core.audit import ChainKey
from strongroom.db.audit_pg_chain import insert_anchor
from strongroom.db.audit_sqlite_chain import INSERT_ANCHOR, anchor_row
from strongroom.db.rows import to_micros

__all__ = ["move_anchor_chain_postgres", "move_anchor_chain_sqlite"]

_HEAD = "SELECT last_seq, last_hash, key_epoch FROM secrets_audit_chain WHERE id = ?"
_LOCK_HEAD = (
    "SELECT last_seq, last_hash, key_epoch FROM secrets_audit_chain WHERE id = $1 FOR UPDATE"
)


def move_anchor_chain_sqlite(conn: sqlite3.Connection, key: ChainKey) -> None:
    """In the caller's transaction: the anchor chain moved to ``key``'s epoch (nothing when
    it is there already: another process made the same record current first)."""
    seq, last, epoch = conn.execute(_HEAD, (ANCHOR_CHAIN,)).fetchone()
    if epoch >= key.epoch:
        return
    moved = key_anchor(key, (seq, bytes(last)), epoch, at=datetime.now(UTC))
    conn.execute(INSERT_ANCHOR, anchor_row(moved, to_micros(moved.anchored_at)))
    conn.execute(
        "UPDATE secrets_audit_chain SET last_seq = ?, last_hash = ?, key_epoch = ? WHERE id = ?",
        (moved.seq, moved.anchor_hash, key.epoch, ANCHOR_CHAIN),
    )


async def move_anchor_chain_postgres(conn: Any, key: ChainKey) -> None:
    """``move_anchor_chain_sqlite`` in a PostgreSQL transaction (under the head's row lock)."""
    head = await conn.fetchrow(_LOCK_HEAD, ANCHOR_CHAIN)
    if head["key_epoch"] >= key.epoch:
        return
    at = datetime.now(UTC)
    moved = key_anchor(key, (head["last_seq"], bytes(head["last_hash"])), head["key_epoch"], at=at)
    await insert_anchor(conn, moved, key.epoch)
