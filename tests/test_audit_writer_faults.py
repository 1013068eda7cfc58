"""Whatever the audit store raises, nobody waits forever and the writer carries on.

The store under the audit log is a real SQLite store; a wrapper makes its ``append`` raise
the exception a test chooses (any type, not only strongroom's own) for the next batches. The
callers of a failed batch get AuditUnavailableError, the log's state says why (the service's
``/readyz`` reads it), and the next batch is written by the same log, without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpers_settings import sqlite_settings
from strongroom import SecretsAudit, SecretsManager, Strongroom, acting_as
from strongroom.core.audit import AuditEvent, ChainKey
from strongroom.core.errors import AuditUnavailableError, StoreUnavailableError

CAP = 10.0  # an upper bound on every wait, never a timing assertion
Taking = Callable[[], list[AuditEvent]]
VALUE = "the-guarded-value"


class Faulty:
    """Delegates to the real audit store; appends raise ``fault`` while it is set (SQLite's
    store appends with ``append_taking``, which takes the batch once its writer holds the
    file; a store without it gets the events through ``append``)."""

    def __init__(self, store: Any, *, taking: bool = True) -> None:
        self._store = store
        self.fault: BaseException | None = None
        self.failed = 0
        #: Without it the store has no ``append_taking`` (as PostgreSQL's): the log then hands
        #: the events over itself, through ``append``.
        self._taking = taking

    def __getattr__(self, name: str) -> Any:
        if name == "append_taking":  # the property found it absent: so it is
            raise AttributeError(name)
        return getattr(self._store, name)

    async def append(self, events: list[AuditEvent], key: ChainKey) -> list[int]:
        if self.fault is not None:
            self.failed += 1
            raise self.fault
        result: list[int] = await self._store.append(events, key)
        return result

    @property
    def append_taking(self) -> Callable[[Taking, ChainKey], Awaitable[list[int]]]:
        """Absent (AttributeError, as on a store without it) unless taking; a test may set it."""
        if not self._taking:
            raise AttributeError("append_taking")
        return self._append_taking

    @append_taking.setter
    def append_taking(self, value: Callable[[Taking, ChainKey], Awaitable[list[int]]]) -> None:
        self._append_taking = value  # type: ignore[method-assign]

    async def _append_taking(self, take: Taking, key: ChainKey) -> list[int]:
        if self.fault is not None:
            self.failed += 1
            raise self.fault
        result: list[int] = await self._store.append_taking(take, key)
        return result


def _lone_surrogate_error() -> UnicodeEncodeError:
    try:
        "\ud800".encode()
    except UnicodeEncodeError as exc:
        return exc
    raise AssertionError("unreachable")


FAULTS = [
    pytest.param(RuntimeError("boom"), id="RuntimeError"),
    pytest.param(_lone_surrogate_error(), id="UnicodeEncodeError"),
    pytest.param(asyncpg.InternalClientError("cannot switch to state 12"), id="InternalClient"),
    pytest.param(KeyError("x"), id="KeyError"),
    pytest.param(ZeroDivisionError(), id="ZeroDivisionError"),
    pytest.param(StoreUnavailableError("down"), id="StoreUnavailableError"),
]


async def _open(tmp_path: Path, *, taking: bool = True) -> tuple[Strongroom, Faulty]:
    app = await Strongroom.open(sqlite_settings(tmp_path, STRONGROOM_AUDIT_TIMEOUT_SECONDS=1))
    faulty = Faulty(app.audit.store, taking=taking)
    app.audit.store = faulty  # type: ignore[assignment]
    return app, faulty


@pytest.mark.parametrize("taking", [True, False], ids=["taking", "handed"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_any_exception_fails_the_batch_and_the_writer_goes_on(
    tmp_path: Path, fault: BaseException, taking: bool
) -> None:
    app, faulty = await _open(tmp_path, taking=taking)
    try:
        manager = SecretsManager(app)
        await manager.create_secret("guarded", VALUE)
        faulty.fault = fault
        # Twenty callers share a batch or two: every one of them gets its answer.
        results = await asyncio.wait_for(
            asyncio.gather(
                *(manager.get_secret("guarded") for _ in range(20)), return_exceptions=True
            ),
            CAP,
        )
        assert all(isinstance(r, AuditUnavailableError) for r in results), results
        assert all(VALUE not in str(r) for r in results)
        # Strongroom's own errors name their cause; any other exception only by its type, as
        # its text may carry anything (a value, a row).
        named = str(fault) if isinstance(fault, StoreUnavailableError) else type(fault).__name__
        assert all(f"(write failed: {named});" in str(r) for r in results), results
        if not isinstance(fault, StoreUnavailableError) and str(fault):
            assert all(str(fault) not in str(r) for r in results)
        assert faulty.failed >= 1
        assert app.audit.health() == "write_failed"  # what /readyz reports

        faulty.fault = None
        with acting_as("after-the-fault"):
            assert await asyncio.wait_for(manager.get_secret("guarded"), CAP) == VALUE
        assert app.audit.health() == "ok"
        audit = SecretsAudit(app)
        assert await audit.count_events(actor_id="after-the-fault") == 1
        assert (await audit.verify_integrity())["valid"] is True
    finally:
        await app.close()


async def test_a_writer_task_that_dies_fails_its_callers_and_is_replaced(tmp_path: Path) -> None:
    """Even a BaseException that ends the writer task leaves no caller waiting."""
    app, faulty = await _open(tmp_path)
    try:
        manager = SecretsManager(app)
        await manager.create_secret("guarded", VALUE)
        faulty.fault = asyncio.CancelledError()
        results = await asyncio.wait_for(
            asyncio.gather(
                *(manager.get_secret("guarded") for _ in range(5)), return_exceptions=True
            ),
            CAP,
        )
        assert all(isinstance(r, AuditUnavailableError) for r in results), results
        assert all("(write failed: the audit writer stopped);" in str(r) for r in results)
        assert app.audit.health() == "writer_stopped"
        faulty.fault = None
        assert await asyncio.wait_for(manager.get_secret("guarded"), CAP) == VALUE
        assert app.audit.health() == "ok"
    finally:
        await app.close()


async def test_a_hanging_store_fails_callers_within_the_timeout(tmp_path: Path) -> None:
    app, faulty = await _open(tmp_path)
    release = asyncio.Event()
    real_append = faulty.append_taking

    async def hang(take: Callable[[], list[AuditEvent]], key: ChainKey) -> list[int]:
        await release.wait()
        return await real_append(take, key)

    try:
        manager = SecretsManager(app)
        await manager.create_secret("guarded", VALUE)
        faulty.append_taking = hang  # type: ignore[method-assign]
        with pytest.raises(AuditUnavailableError, match=r"\(write timed out: TimeoutError\);"):
            await asyncio.wait_for(manager.get_secret("guarded"), CAP)
        assert app.audit.health() == "write_timed_out"
        release.set()
        faulty.append_taking = real_append  # type: ignore[method-assign]
        assert await asyncio.wait_for(manager.get_secret("guarded"), CAP) == VALUE
    finally:
        await app.close()


async def test_a_writer_stopped_after_taking_its_batch_fails_the_callers_it_took(
    tmp_path: Path,
) -> None:
    app, faulty = await _open(tmp_path)
    real = faulty.append_taking

    async def take_then_stop(take: Callable[[], list[AuditEvent]], key: ChainKey) -> list[int]:
        take()
        raise asyncio.CancelledError

    try:
        manager = SecretsManager(app)
        await manager.create_secret("guarded", VALUE)
        faulty.append_taking = take_then_stop  # type: ignore[method-assign]
        results = await asyncio.wait_for(
            asyncio.gather(
                *(manager.get_secret("guarded") for _ in range(5)), return_exceptions=True
            ),
            CAP,
        )
        assert all(isinstance(r, AuditUnavailableError) for r in results), results
        assert app.audit.health() == "writer_stopped"
        faulty.append_taking = real  # type: ignore[method-assign]
        assert await asyncio.wait_for(manager.get_secret("guarded"), CAP) == VALUE
    finally:
        await app.close()


async def test_events_waiting_behind_a_failed_batch_are_written_by_the_next(tmp_path: Path) -> None:
    """A batch handed its events fails while more arrive: the log goes on and writes those."""
    app, faulty = await _open(tmp_path, taking=False)
    real = faulty.append
    started = asyncio.Event()
    release = asyncio.Event()

    async def fail_once(events: list[AuditEvent], key: ChainKey) -> list[int]:
        faulty.append = real  # type: ignore[method-assign]
        started.set()
        await release.wait()
        raise RuntimeError("boom")

    try:
        manager = SecretsManager(app)
        await manager.create_secret("guarded", VALUE)
        faulty.append = fail_once  # type: ignore[method-assign]
        with acting_as("failed"):
            first = asyncio.create_task(manager.get_secret("guarded"))
        await asyncio.wait_for(started.wait(), CAP)
        with acting_as("behind"):
            behind = [asyncio.create_task(manager.get_secret("guarded")) for _ in range(3)]
        await asyncio.sleep(0.05)  # let them queue behind the failing batch
        release.set()
        with pytest.raises(AuditUnavailableError):
            await asyncio.wait_for(first, CAP)
        assert await asyncio.wait_for(asyncio.gather(*behind), CAP) == [VALUE] * 3
        audit = SecretsAudit(app)
        assert await audit.count_events(actor_id="behind") == 3
        assert await audit.count_events(actor_id="failed") == 0
    finally:
        await app.close()
