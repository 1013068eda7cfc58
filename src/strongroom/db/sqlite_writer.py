"""One writer thread per SQLite file, committing queued writes in groups.

SQLite allows one writer at a time and an fsync per commit is the cost of durability, so
writes are funnelled to a dedicated thread that runs every job waiting in its queue inside one
transaction (each job in its own savepoint, so one failing job does not undo the others), commits
once, and only then resolves the callers' futures. A write is durable when its call returns, and
concurrent writers share one fsync.

A write that needs no fsync (an audit log configured without it, a cache generation) is
committed at once on the caller's thread when the writer is idle: the two thread hops it saves
cost more than the commit itself (about 0.1 ms each way on a loaded two-core machine, where the
commit takes about 0.05 ms). It never waits there: if the writer thread, another process (the
lock file) or another connection (SQLite's lock) holds the file, the job goes to the writer
thread as any other and waits there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from strongroom.core.errors import StoreUnavailableError

__all__ = ["SqliteWriter", "acquire_writer", "connect", "release_writer"]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
_MAX_GROUP = 512
_STOP = object()
#: Queued after every ``_CHECKPOINT_EVERY`` inline commits: the writer thread checkpoints.
_CHECKPOINT = object()
_CHECKPOINT_EVERY = 128
_BUSY_MS = 30_000


def connect(path: str, *, synchronous: str = "FULL", uri: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=30.0, uri=uri
    )
    conn.row_factory = sqlite3.Row
    _enable_wal(conn)
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
    return conn


def _enable_wal(conn: sqlite3.Connection, attempts: int = 200) -> None:
    """Switch to WAL. Processes opening a new file together can get "database is locked"
    here without SQLite's busy handler being consulted, so retry for a few seconds."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.02)
        else:
            return


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteWriter:
    """Owns the write connection; :meth:`submit` runs a job in the next group commit."""

    def __init__(self, path: str, *, uri: bool = False) -> None:
        self.path = path
        self._uri = uri
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = connect(path, uri=uri)
        self._synced = True
        #: Inline commits' own connection (see :meth:`_inline_connection`), and their count
        #: since the last checkpoint was asked of the writer thread.
        self._inline_conn: sqlite3.Connection | None = None
        self._inline_commits = 0
        #: Held while the inline connection runs a commit or a query.
        self._inline_lock = threading.Lock()
        self._closed = False
        #: Held while a group commits, on the writer thread or inline.
        self._busy = threading.Lock()
        self._lock_fd = _open_lock_file(path) if not uri and path != ":memory:" else None
        self._thread = threading.Thread(
            target=self._run, name="strongroom-sqlite-writer", daemon=True
        )
        self._thread.start()

    async def submit(self, job: Callable[[sqlite3.Connection], T], *, sync: bool = True) -> T:
        """Run ``job`` in the next group commit and return its result once committed.

        ``sync=False`` lets a group made only of such jobs commit without fsync (WAL with
        ``synchronous=NORMAL``: safe if the process dies, not if the machine loses power before
        the next synced commit or checkpoint); any synced job in the group syncs them all.
        Such a job runs at once, on this thread, when the writer is idle.
        """
        if not sync and (done := self.commit_now(job)) is not None:
            return done[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((job, future, loop, sync))
        return await future

    def commit_now(self, job: Callable[[sqlite3.Connection], T]) -> tuple[T] | None:
        """``(job(conn),)`` committed unsynced, now, on this thread, when the writer is idle and
        nothing holds the file; None when something does. The job's error is raised."""
        done = self._inline(job)
        if done is None:
            return None
        result, error = done
        if error is not None:
            raise error
        return (result,)

    def _inline(self, job: Job) -> tuple[Any, BaseException | None] | None:
        """Commit ``job`` alone, now, if nothing holds the file; None if something did."""
        if not self._queue.empty() or not self._busy.acquire(blocking=False):
            return None
        try:
            if self._lock_fd is not None:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return None
            try:
                with self._inline_lock:
                    return self._commit_alone(job)
            finally:
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._busy.release()

    def _commit_alone(self, job: Job) -> tuple[Any, BaseException | None] | None:
        """One unsynced job in its own transaction (a failing job rolls it back); None when
        another connection holds SQLite's write lock (it is not waited for here)."""
        try:
            conn = self._inline_connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return None  # locked: the writer thread waits for it
            try:
                result = job(conn)
            except Exception as exc:  # the job's own error (sqlite3's too): undone, handed back
                conn.execute("ROLLBACK")
                return None, _unavailable(exc) if isinstance(exc, sqlite3.Error) else exc
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._drop_inline_connection()
            return None, _unavailable(exc)
        self._inline_commits += 1
        if self._inline_commits >= _CHECKPOINT_EVERY:
            self._inline_commits = 0
            self._queue.put(_CHECKPOINT)
        return result, None

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[T] | None:
        """``(fn(conn),)`` run at once on the inline connection; None when that connection is
        in use, SQLite answers busy, or the database is in memory (read elsewhere then).

        Reading where this process's inline commits write keeps SQLite's page cache warm: a
        connection drops its whole cache whenever another connection has committed, so a
        separate reader re-reads every page it touches after each audited read's commit."""
        if self._closed or self.path == ":memory:" or not self._inline_lock.acquire(blocking=False):
            return None
        try:
            return (fn(self._inline_connection()),)
        except sqlite3.OperationalError:
            return None  # busy (it never waits) or worse: the caller's own reader says which
        finally:
            self._inline_lock.release()

    def _inline_connection(self) -> sqlite3.Connection:
        """The connection inline commits use: it never waits for SQLite's lock (busy timeout
        0) and never checkpoints the WAL (a checkpoint's page copies and fsyncs would stall
        the caller's event loop), so the writer thread checkpoints for it. An in-memory
        database lives in one connection, which nothing else can lock: that one is used."""
        if self.path == ":memory:":
            return self._connection(sync=False)
        if self._inline_conn is None:
            conn = connect(self.path, synchronous="NORMAL", uri=self._uri)
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._inline_conn = conn
        return self._inline_conn

    def _drop_inline_connection(self) -> None:
        if self.path == ":memory:":
            self._drop_connection()
            return
        conn, self._inline_conn = self._inline_conn, None
        if conn is not None:
            _close_quietly(conn)

    def _checkpoint(self) -> None:
        """Copy the WAL's committed pages into the database without waiting for readers or
        writers (what SQLite's automatic checkpoint does, here off the event loop)."""
        with contextlib.suppress(sqlite3.Error):
            self._connection(sync=self._synced).execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _connection(self, *, sync: bool) -> sqlite3.Connection:
        """The write connection (a new one after a failed group), synced as ``sync`` asks."""
        if self._conn is None:
            self._conn = connect(self.path, uri=self._uri)
            self._synced = True
        conn = self._conn
        if sync != self._synced:
            conn.execute(f"PRAGMA synchronous={'FULL' if sync else 'NORMAL'}")
            self._synced = sync
        return conn

    def _drop_connection(self) -> None:
        """After a failed commit: the connection may be unusable, the next group reconnects
        (an in-memory database lives only in its connection, so that one is kept)."""
        if self._conn is not None and self.path != ":memory:":
            _close_quietly(self._conn)
            self._conn = None

    def close(self) -> None:
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._conn is not None:
            self._conn.close()
        with self._inline_lock:
            self._drop_inline_connection()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if first is _CHECKPOINT:
                self._checkpoint()
                continue
            group = [first]
            stop = checkpoint = False
            while len(group) < _MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if item is _CHECKPOINT:
                    checkpoint = True
                    continue
                group.append(item)
            self._commit_group(group)
            if checkpoint:
                self._checkpoint()
            if stop:
                return

    def _commit_group(self, group: list[tuple[Job, asyncio.Future[Any], Any, bool]]) -> None:
        # Writers in other processes queue on a kernel lock rather than in SQLite's busy
        # handler, which sleeps up to 100 ms between tries: a revocation must not wait that.
        with self._busy:
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                self._commit_group_locked(group)
            finally:
                if self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _commit_group_locked(self, group: list[tuple[Job, asyncio.Future[Any], Any, bool]]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn = self._connection(sync=any(job_sync for *_, job_sync in group))
            conn.execute("BEGIN IMMEDIATE")
            for job, future, _loop, _sync in group:
                if future.cancelled():
                    # The caller gave up (e.g. its timeout fired while the file was locked):
                    # do not write what it was told had failed.
                    outcomes.append((None, None))
                    continue
                outcomes.append(_run_job(conn, job))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # The store recovers by itself once the file is writable again.
            self._drop_connection()
            failure = _unavailable(exc)
            outcomes = [(None, failure)] * len(group)
        for (_job, future, loop, _sync), (result, error) in zip(group, outcomes, strict=True):
            try:
                loop.call_soon_threadsafe(_resolve, future, result, error)
            except RuntimeError:
                continue  # the caller's event loop has closed; nobody is waiting


def _close_quietly(conn: sqlite3.Connection) -> None:
    """Roll back what is open and close; a connection this is done to may be broken already."""
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def _open_lock_file(path: str) -> int:
    """The writers' lock file beside the database (owner-only, like the database)."""
    return os.open(f"{path}-wlock", os.O_RDWR | os.O_CREAT, 0o600)


def _run_job(conn: sqlite3.Connection, job: Job) -> tuple[Any, BaseException | None]:
    """Run one job in its own savepoint; a failing job is undone alone."""
    conn.execute("SAVEPOINT job")
    try:
        result = job(conn)
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK TO job")
        return None, _unavailable(exc)
    except Exception as exc:  # StrongroomError or a bug in a job: undo it, hand it back
        conn.execute("ROLLBACK TO job")
        return None, exc
    finally:
        conn.execute("RELEASE job")
    return result, None


def _unavailable(exc: sqlite3.Error) -> StoreUnavailableError:
    error = StoreUnavailableError(
        f"the SQLite store did not accept the write ({type(exc).__name__}: {exc})"
    )
    error.__cause__ = exc
    return error


_shared: dict[str, tuple[SqliteWriter, int]] = {}
_shared_lock = threading.Lock()


def acquire_writer(path: str) -> SqliteWriter:
    """The one writer thread of this file in this process (stores sharing a file share it, so
    they never wait on each other's locks)."""
    key = os.path.realpath(path)
    with _shared_lock:
        writer, users = _shared.get(key, (None, 0))
        if writer is None:
            writer = SqliteWriter(path)
        _shared[key] = (writer, users + 1)
        return writer


def release_writer(writer: SqliteWriter) -> None:
    key = os.path.realpath(writer.path)
    with _shared_lock:
        current, users = _shared.get(key, (None, 0))
        if current is not writer:
            writer.close()
            return
        if users <= 1:
            del _shared[key]
            writer.close()
        else:
            _shared[key] = (writer, users - 1)
