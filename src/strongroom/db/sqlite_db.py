"""One SQLite database shared by the stores that keep tables in it (audit, rotation).

A file database uses the file's shared writer thread for writes and per-thread read-only
connections for queries; a memory database (the memory profile) has one connection, owned by
its writer thread, for both.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from strongroom.core.errors import StoreUnavailableError
from strongroom.db.migrate import SqliteHooks, migrate_sqlite, migrations, statements
from strongroom.db.sqlite_writer import SqliteWriter, acquire_writer, connect, release_writer

__all__ = ["SqliteDatabase"]

T = TypeVar("T")


class SqliteDatabase:
    """Opened by each store that uses it and closed when the last one lets go."""

    def __init__(self, path: Path | None, *, read_only: bool = False) -> None:
        """``read_only``: a file read by another process (a chain-check worker): no
        migration, no writer, queries only."""
        self.path = path
        self._read_only = read_only and path is not None
        self._read_only_open = False
        self._writer: SqliteWriter | None = None
        self._users = 0
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    @property
    def in_memory(self) -> bool:
        return self.path is None

    async def open(self) -> None:
        self._users += 1
        if self._read_only:
            self._read_only_open = True
            return
        if self._writer is not None:
            return
        try:
            if self.path is None:
                self._writer = SqliteWriter(":memory:")
                await self._writer.submit(_migrate_all)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                bootstrap = connect(str(self.path))
                try:
                    migrate_sqlite(bootstrap)
                finally:
                    bootstrap.close()
                self._writer = acquire_writer(str(self.path))
        except sqlite3.Error as exc:
            self._users -= 1
            raise StoreUnavailableError(f"cannot open the SQLite database: {exc}") from exc

    async def migrate(self, hooks: SqliteHooks) -> None:
        """Apply steps left for a store that holds the master key (``hooks``), if any."""
        if self.path is None:
            return  # a memory database was made whole, and empty, when it opened
        try:
            bootstrap = connect(str(self.path))
            try:
                migrate_sqlite(bootstrap, hooks)
            finally:
                bootstrap.close()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot migrate the SQLite database: {exc}") from exc

    async def close(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users or (self._writer is None and not self._read_only_open):
            return
        if self._writer is not None and self.path is None:
            self._writer.close()
        elif self._writer is not None:
            release_writer(self._writer)
        self._writer, self._read_only_open = None, False
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def _writer_or_fail(self) -> SqliteWriter:
        if self._writer is None:
            raise StoreUnavailableError("the SQLite database is closed")
        return self._writer

    async def write(self, job: Callable[[sqlite3.Connection], T], *, sync: bool = True) -> T:
        """Run ``job`` in the writer's next group commit."""
        return await self._writer_or_fail().submit(job, sync=sync)

    def write_now(self, job: Callable[[sqlite3.Connection], T]) -> tuple[T] | None:
        """``(job(conn),)`` committed at once, unsynced, on this thread, when nothing holds the
        file; None when something does (or in memory). The job's error is raised."""
        writer = self._writer
        if writer is None or self.path is None:
            return None
        return writer.commit_now(job)

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[T] | None:
        """A query run at once on the writer's inline connection (see
        :meth:`SqliteWriter.read_now`); None: use :meth:`read` or a reader of your own."""
        writer = self._writer
        return None if writer is None or self.path is None else writer.read_now(fn)

    async def lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A small read by key: at once on the inline connection when the file is free (a hop
        to a reader thread costs more than the query), else as :meth:`read`."""
        done = self.read_now(fn)
        return done[0] if done is not None else await self.read(fn)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(str(self.path), synchronous="NORMAL")
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a query: in the writer for a memory database, else on a worker thread."""
        if not self._read_only_open:
            writer = self._writer_or_fail()
            if self.path is None:
                return await writer.submit(fn)

        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"SQLite query failed ({type(exc).__name__})") from exc

        return await asyncio.to_thread(run)


def _migrate_all(conn: sqlite3.Connection) -> None:
    """Create every table inside the writer's transaction (memory databases)."""
    for step in migrations("sqlite"):
        for statement in statements(step.sql):
            conn.execute(statement)
