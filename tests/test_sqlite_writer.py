"""The SQLite writer: a write that needs no fsync commits at once on the caller's thread when
the writer is idle, and is never kept waiting there: a file held by the writer thread, by
another process's writer (the lock file) or by another connection goes to the writer thread."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strongroom.db.sqlite_writer import SqliteWriter

CAP = 10.0  # an upper bound on every wait, never a timing assertion


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[SqliteWriter]:
    found = SqliteWriter(str(tmp_path / "w.db"))
    try:
        yield found
    finally:
        found.close()


def insert(value: str) -> Callable[[sqlite3.Connection], tuple[int, str]]:
    """A job that records which thread ran it."""

    def job(conn: sqlite3.Connection) -> tuple[int, str]:
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT NOT NULL)")
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return threading.get_ident(), value

    return job


def failing(conn: sqlite3.Connection) -> None:
    """A job that writes, then fails with an error of its own."""
    conn.execute("INSERT INTO t (v) VALUES ('undone')")
    raise ValueError("the job's own error")


def rows(writer: SqliteWriter) -> list[str]:
    with sqlite3.connect(writer.path) as conn:
        return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY rowid")]


async def test_an_unsynced_write_commits_on_the_callers_thread_when_idle(
    writer: SqliteWriter,
) -> None:
    ran_on, _ = await writer.submit(insert("inline"), sync=False)
    assert ran_on == threading.get_ident()
    synced_on, _ = await writer.submit(insert("synced"))
    assert synced_on != threading.get_ident()  # an fsync is never waited for on the loop
    assert rows(writer) == ["inline", "synced"]


async def test_a_failing_unsynced_write_is_undone_and_the_writer_goes_on(
    writer: SqliteWriter,
) -> None:
    await writer.submit(insert("first"), sync=False)
    with pytest.raises(ValueError, match="own error"):
        await writer.submit(failing, sync=False)
    with pytest.raises(Exception, match="did not accept"):  # a constraint: StoreUnavailable
        await writer.submit(lambda c: c.execute("INSERT INTO t (v) VALUES (NULL)"), sync=False)
    await writer.submit(insert("after"), sync=False)
    assert rows(writer) == ["first", "after"]


async def test_a_file_locked_by_another_connection_sends_the_write_to_the_thread(
    writer: SqliteWriter,
) -> None:
    await writer.submit(insert("before"), sync=False)
    locker = sqlite3.connect(writer.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    pending = asyncio.ensure_future(writer.submit(insert("waited"), sync=False))
    for _ in range(5):
        await asyncio.sleep(0.01)  # the loop runs on while the write waits for the lock
    assert not pending.done()
    locker.execute("ROLLBACK")
    locker.close()
    ran_on, _ = await asyncio.wait_for(pending, CAP)
    assert ran_on != threading.get_ident()
    assert rows(writer) == ["before", "waited"]


async def test_a_lock_file_held_by_another_writer_sends_the_write_to_the_thread(
    writer: SqliteWriter,
) -> None:
    await writer.submit(insert("before"), sync=False)
    other = os.open(f"{writer.path}-wlock", os.O_RDWR)  # another open file: another writer
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        pending = asyncio.ensure_future(writer.submit(insert("waited"), sync=False))
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert not pending.done()
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    ran_on, _ = await asyncio.wait_for(pending, CAP)
    assert ran_on != threading.get_ident()
    assert rows(writer) == ["before", "waited"]


def _in_database_file(writer: SqliteWriter) -> int | None:
    """Rows the database file itself holds, the WAL ignored (what a checkpoint copied); None
    while a checkpoint is half-way through copying (the file read as it is, unlocked)."""
    conn = sqlite3.connect(f"file:{writer.path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the table itself is still only in the WAL
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


async def test_inline_commits_leave_checkpoints_to_the_writer_thread(
    writer: SqliteWriter,
) -> None:
    """An inline commit never copies the WAL into the file on the caller's thread (its page
    copies and fsyncs would stall the event loop); every 128 of them the thread does. The
    rows are large, so that SQLite's own automatic checkpoint (at 1,000 pages) would have run
    long before."""
    for k in range(127):
        await writer.submit(insert(f"{k:03d}" + "x" * 40_000), sync=False)
    assert _in_database_file(writer) == 0
    await writer.submit(insert("last"), sync=False)
    for _ in range(int(CAP / 0.01)):
        if _in_database_file(writer) == 128:
            break
        await asyncio.sleep(0.01)
    assert _in_database_file(writer) == 128
    assert len(rows(writer)) == 128


async def test_read_now_sees_every_commit_and_never_runs_inside_one(
    writer: SqliteWriter,
) -> None:
    count = "SELECT count(*) FROM t"
    assert writer.commit_now(insert("inline")) is not None
    other = sqlite3.connect(writer.path, isolation_level=None)
    other.execute("INSERT INTO t (v) VALUES ('another connection')")
    other.close()
    assert writer.read_now(lambda c: c.execute(count).fetchone()[0]) == (2,)

    def reads_inside(conn: sqlite3.Connection) -> object:
        conn.execute("INSERT INTO t (v) VALUES ('uncommitted')")
        return writer.read_now(lambda c: c.execute(count).fetchone()[0])

    assert writer.commit_now(reads_inside) == (None,)  # no read of its own uncommitted row
    assert writer.read_now(lambda c: c.execute(count).fetchone()[0]) == (3,)


async def test_commit_now_raises_the_jobs_error_and_declines_a_held_file(
    writer: SqliteWriter,
) -> None:
    await writer.submit(insert("first"), sync=False)
    with pytest.raises(ValueError, match="own error"):
        writer.commit_now(failing)
    locker = sqlite3.connect(writer.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        assert writer.commit_now(insert("declined")) is None  # never waits for the lock
        # A read neither waits for nor sees the other connection's open transaction.
        assert writer.read_now(lambda c: c.execute("SELECT v FROM t").fetchall()) is not None
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert rows(writer) == ["first"]
    writer.close()
    assert writer.read_now(lambda c: 1) is None  # closed: nothing reopens
