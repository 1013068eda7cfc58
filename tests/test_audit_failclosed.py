"""When the audit log cannot record an access, the access is refused (fail-closed).

Real failures only: the SQLite file made immutable with ``chattr +i`` (the tests run as root on
ext4 in CI), the file held by another connection's ``BEGIN EXCLUSIVE``, and a PostgreSQL audit
log reached through a TCP proxy the test stops and restarts. Each time the read raises
AuditUnavailableError without the value and the failure counter moves; once the store is back
the same app serves and records reads again, without a restart. With
``STRONGROOM_AUDIT_FAIL_OPEN`` the value is served and the failure logged critically instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest
import structlog

from helpers_settings import PG_URL, new_master_key, sqlite_settings
from strongroom import SecretsAudit, SecretsManager, Settings, Strongroom, acting_as
from strongroom.core.errors import AuditUnavailableError
from strongroom.core.logging import configure_logging

T = TypeVar("T")
CAP = 10.0  # an upper bound on every wait, never a timing assertion
VALUE = "the-guarded-value"
FAILURES = "audit_write_failures_total"


async def bounded(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, CAP)


def assert_refused_without_value(error: BaseException) -> None:
    assert isinstance(error, AuditUnavailableError)
    assert VALUE not in str(error)
    assert VALUE not in repr(error)


# -- SQLite: the audit file made immutable -----------------------------------------------------


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True, timeout=CAP)


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """``chattr +i`` for the block; always undone, so pytest can remove the files."""
    try:
        chattr("+i", *paths)
        yield
    finally:
        chattr("-i", *paths)


def sqlite_files(settings: Settings) -> tuple[Path, Path]:
    db = settings.sqlite_path
    wal = db.with_name(db.name + "-wal")
    assert db.exists()
    assert wal.exists()  # the open app keeps the database in WAL mode
    return db, wal


def assert_really_read_only(db: Path) -> None:
    """The precondition of the tests below: nobody can write the file right now."""
    with (
        closing(sqlite3.connect(db, isolation_level=None, timeout=1)) as conn,
        pytest.raises(sqlite3.OperationalError),
    ):
        conn.execute("UPDATE secrets_audit_chain SET last_seq = last_seq WHERE id = 1")


@pytest.mark.parametrize("fsync", ["true", "false"])
async def test_an_immutable_audit_file_refuses_reads_until_it_is_writable_again(
    tmp_path: Path, fsync: str
) -> None:
    """Without fsync the read's event is committed at once on the caller's thread; a refusal
    there refuses the read just the same."""
    settings = sqlite_settings(tmp_path, STRONGROOM_AUDIT_FSYNC=fsync)
    async with await Strongroom.open(settings) as app:
        manager, audit = SecretsManager(app), SecretsAudit(app)
        await manager.create_secret("guarded", VALUE)
        events = await audit.count_events()
        failures = app.metrics.value(FAILURES)

        with immutable(*sqlite_files(settings)):
            assert_really_read_only(settings.sqlite_path)
            with pytest.raises(AuditUnavailableError) as refused:
                await bounded(manager.get_secret("guarded"))
            assert_refused_without_value(refused.value)
            assert "unavailable (write failed: " in str(refused.value)  # the store's failure
            assert app.metrics.value(FAILURES) == failures + 1

        # The same app, no restart: the read is served and recorded again.
        with acting_as("after-recovery"):
            assert await bounded(manager.get_secret("guarded")) == VALUE
        assert await audit.count_events(actor_id="after-recovery") == 1
        assert await audit.count_events() == events + 1  # the refused read left no event
        report = await audit.verify_integrity()
        assert report["valid"] is True, report
        assert report["checked"] == events + 1


@pytest.mark.parametrize("fsync", ["true", "false"])
async def test_fail_open_serves_reads_while_the_audit_file_is_immutable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fsync: str
) -> None:
    settings = sqlite_settings(
        tmp_path, STRONGROOM_AUDIT_FAIL_OPEN=True, STRONGROOM_AUDIT_FSYNC=fsync
    )
    err = await _with_captured_logs(capsys, _fail_open_immutable(settings))
    _assert_one_critical_line(err)


async def _fail_open_immutable(settings: Settings) -> None:
    async with await Strongroom.open(settings) as app:
        manager = SecretsManager(app)
        await manager.create_secret("guarded", VALUE)
        failures = app.metrics.value(FAILURES)
        with immutable(*sqlite_files(settings)):
            assert_really_read_only(settings.sqlite_path)
            assert await bounded(manager.get_secret("guarded")) == VALUE
            assert app.metrics.value(FAILURES) == failures + 1


# -- SQLite: the audit file locked by another connection ---------------------------------------


@pytest.mark.parametrize("fsync", ["true", "false"])
async def test_a_locked_audit_file_times_out_and_reads_resume(tmp_path: Path, fsync: str) -> None:
    """Without fsync an idle writer commits on the event loop's thread; a lock held by
    another connection still sends the write to the writer thread, which times out."""
    settings = sqlite_settings(
        tmp_path, STRONGROOM_AUDIT_TIMEOUT_SECONDS=0.5, STRONGROOM_AUDIT_FSYNC=fsync
    )
    async with await Strongroom.open(settings) as app:
        manager, audit = SecretsManager(app), SecretsAudit(app)
        await manager.create_secret("guarded", VALUE)
        failures = app.metrics.value(FAILURES)

        locker = sqlite3.connect(settings.sqlite_path, isolation_level=None, timeout=CAP)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            with pytest.raises(AuditUnavailableError) as refused:
                await bounded(manager.get_secret("guarded"))
            assert_refused_without_value(refused.value)
            assert app.metrics.value(FAILURES) == failures + 1
        finally:
            with contextlib.suppress(sqlite3.Error):
                locker.execute("ROLLBACK")
            locker.close()

        with acting_as("after-unlock"):
            assert await bounded(manager.get_secret("guarded")) == VALUE
        assert await audit.count_events(actor_id="after-unlock") == 1
        report = await audit.verify_integrity()
        assert report["valid"] is True, report


# -- PostgreSQL audit log behind a proxy that can be cut -------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; ``stop`` closes the listener and every forwarded
    connection, ``start`` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0  # chosen by the first start
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        assert self._server is None
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        await bounded(server.wait_closed())
        for transport in list(self._transports):
            transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=CAP)
        assert not self._handlers

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._transports.add(writer.transport)
        try:
            try:
                up_reader, up_writer = await bounded(asyncio.open_connection(*self.target))
            except (OSError, TimeoutError):
                return
            self._transports.add(up_writer.transport)
            try:
                await asyncio.gather(
                    self._pipe(reader, up_writer, writer), self._pipe(up_reader, writer, up_writer)
                )
            finally:
                up_writer.transport.abort()
                self._transports.discard(up_writer.transport)
        finally:
            writer.transport.abort()
            self._transports.discard(writer.transport)
            self._handlers.discard(task)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:  # one side gone: drop both
            writer.transport.abort()
            peer.transport.abort()


@pytest.fixture
async def proxy(postgres_available: None) -> AsyncIterator[TcpProxy]:
    target = urlsplit(PG_URL)
    instance = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


def proxied_url(proxy: TcpProxy) -> str:
    parts = urlsplit(PG_URL)
    user, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{proxy.port}"))


def proxied_settings(
    backend: str, home: Path, schema: str, proxy: TcpProxy, **extra: Any
) -> Settings:
    return Settings(
        STRONGROOM_BACKEND=backend,
        STRONGROOM_HOME=home,
        STRONGROOM_MASTER_KEY=new_master_key(),
        STRONGROOM_AUDIT_DATABASE_URL=proxied_url(proxy),
        STRONGROOM_PG_SCHEMA=schema,
        STRONGROOM_AUDIT_TIMEOUT_SECONDS=2,
        **extra,
    )


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_reads_are_refused_while_the_postgres_audit_log_is_unreachable(
    backend: str, proxy: TcpProxy, pg_schema: str, tmp_path: Path
) -> None:
    settings = proxied_settings(backend, tmp_path, pg_schema, proxy)
    async with await Strongroom.open(settings) as app:
        assert app.profile == backend
        assert app.audit.store is not None
        assert app.audit.store.backend == "postgres"
        manager, audit = SecretsManager(app), SecretsAudit(app)
        await manager.create_secret("guarded", VALUE)
        assert await bounded(manager.get_secret("guarded")) == VALUE
        failures = app.metrics.value(FAILURES)

        await proxy.stop()
        for attempt in range(1, 3):  # the broken connections, then a refused reconnect
            with pytest.raises(AuditUnavailableError) as refused:
                await bounded(manager.get_secret("guarded"))
            assert_refused_without_value(refused.value)
            assert app.metrics.value(FAILURES) == failures + attempt

        await proxy.start()
        with acting_as("after-restart"):
            assert await bounded(manager.get_secret("guarded")) == VALUE
        assert await audit.count_events(actor_id="after-restart") == 1
        assert await audit.count_events(action="READ") == 2  # the refused reads left no event
        report = await audit.verify_integrity()
        assert report["valid"] is True, report
        assert report["checked"] == 3


async def test_fail_open_serves_reads_while_the_postgres_audit_log_is_unreachable(
    proxy: TcpProxy, pg_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = proxied_settings(
        "memory", tmp_path, pg_schema, proxy, STRONGROOM_AUDIT_FAIL_OPEN=True
    )
    err = await _with_captured_logs(capsys, _fail_open_proxied(settings, proxy))
    _assert_one_critical_line(err)


async def _fail_open_proxied(settings: Settings, proxy: TcpProxy) -> None:
    async with await Strongroom.open(settings) as app:
        manager, audit = SecretsManager(app), SecretsAudit(app)
        await manager.create_secret("guarded", VALUE)
        failures = app.metrics.value(FAILURES)

        await proxy.stop()
        assert await bounded(manager.get_secret("guarded")) == VALUE
        assert app.metrics.value(FAILURES) == failures + 1

        await proxy.start()
        assert await bounded(manager.get_secret("guarded")) == VALUE
        assert app.metrics.value(FAILURES) == failures + 1
        assert await audit.count_events(action="READ") == 1  # only the read made while up


# -- log capture -------------------------------------------------------------------------------


async def _with_captured_logs(capsys: pytest.CaptureFixture[str], scenario: Awaitable[None]) -> str:
    """Run the scenario with strongroom's JSON logs going to the captured stderr; its text.

    ``configure_logging`` binds ``sys.stderr`` when called, so it is called here, in the test
    body, and structlog is put back to its defaults afterwards.
    """
    capsys.readouterr()
    configure_logging("INFO")
    try:
        await scenario
    finally:
        structlog.reset_defaults()
    return capsys.readouterr().err


def _assert_one_critical_line(err: str) -> None:
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    critical = [line for line in lines if line.get("level") == "critical"]
    assert len(critical) == 1, err
    assert critical[0]["event"].startswith("audit write failed")
    assert "fail-open" in critical[0]["event"]
    assert critical[0]["action"] == "READ"
    assert critical[0]["name"] == "guarded"
    assert VALUE not in err
