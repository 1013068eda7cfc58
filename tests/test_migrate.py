"""The SQLite migration runner: every step once, and no write lock once all are there."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from strongroom.db.migrate import migrate_sqlite, migrations


def _open(path: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=timeout)


def test_a_new_database_gets_every_step_and_a_second_run_none(tmp_path: Path) -> None:
    conn = _open(tmp_path / "s.db")
    applied = migrate_sqlite(conn)
    assert applied == [m.number for m in migrations("sqlite")]
    assert migrate_sqlite(conn) == []


def test_an_up_to_date_database_is_not_locked_to_check_it(tmp_path: Path) -> None:
    # Each process that opens a store checks its schema; a reader must not queue behind a
    # writer for that (before, the check itself took SQLite's write lock).
    path = tmp_path / "s.db"
    migrate_sqlite(_open(path))
    writer = _open(path)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        assert migrate_sqlite(_open(path, timeout=0.05)) == []
    finally:
        writer.execute("ROLLBACK")


def test_steps_missing_from_the_record_are_applied(tmp_path: Path) -> None:
    conn = _open(tmp_path / "s.db")
    conn.execute(
        "CREATE TABLE schema_migrations ("
        " number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    first = migrations("sqlite")[0]
    assert migrate_sqlite(conn) == [m.number for m in migrations("sqlite")]
    assert first.number in {r[0] for r in conn.execute("SELECT number FROM schema_migrations")}
