"""SQLite audit batches take their events late: once the writer holds the file.

Another process committing to the same file holds its writers' lock (the ``-wlock`` file
beside the database); here the test holds it, as that process would. Events recorded while
this process's writer waits for it join the commit it is waiting to make, rather than the
next one. A batch whose callers were answered (its timeout passed) before the writer got the
file writes nothing: no event is stored that its caller was told had failed.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from helpers_edge import until
from helpers_settings import sqlite_settings
from strongroom import SecretsAudit, SecretsManager, Strongroom, acting_as
from strongroom.core.audit import AuditAction, AuditEvent, AuditResult, ChainKey
from strongroom.core.errors import AuditUnavailableError
from strongroom.core.metrics import Metrics
from strongroom.db.audit_sqlite import SqliteAuditStore
from strongroom.services.audit.batches import MAX_BATCH, Batch, Pending, settle
from strongroom.services.audit.log import AuditLog

CAP = 10.0  # an upper bound on every wait, never a timing assertion
VALUE = "the-late-batch-value"
NOW = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Strongroom]:
    opened = await Strongroom.open(sqlite_settings(tmp_path, STRONGROOM_AUDIT_TIMEOUT_SECONDS=1))
    await SecretsManager(opened).create_secret("late", VALUE)
    try:
        yield opened
    finally:
        await opened.close()


@contextmanager
def file_held_elsewhere(app: Strongroom) -> Iterator[None]:
    """Hold the file's writers' lock as another process's writer does while it commits."""
    store = app.audit.store
    assert isinstance(store, SqliteAuditStore)
    path = store.db.path
    other = os.open(f"{path}-wlock", os.O_RDWR)  # another open file: another writer
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)


def reads_recorded(app: Strongroom) -> float:
    return app.metrics.value("operations_total", action="READ", result="SUCCESS")


async def test_events_recorded_while_another_process_commits_join_the_waiting_commit(
    app: Strongroom,
) -> None:
    manager = SecretsManager(app)
    batches = app.metrics.value("audit_batches_total")
    events = app.metrics.value("audit_events_total")
    reads = reads_recorded(app)
    with file_held_elsewhere(app):
        with acting_as("first"):
            first = asyncio.create_task(manager.get_secret("late"))
        # The first read's batch is on its way to the writer, which waits for the file.
        await until(lambda: reads_recorded(app) == reads + 1, "the first read's event")
        await asyncio.sleep(0.05)
        with acting_as("later"):
            later = [asyncio.create_task(manager.get_secret("late")) for _ in range(4)]
        await until(lambda: reads_recorded(app) == reads + 5, "the later reads' events")
        assert not first.done()  # its event waits for the file, as do the later ones
    values = await asyncio.wait_for(asyncio.gather(first, *later), CAP)
    assert values == [VALUE] * 5
    # One commit took all five: the later events did not wait for a commit of their own.
    assert app.metrics.value("audit_batches_total") - batches == 1
    assert app.metrics.value("audit_events_total") - events == 5
    assert app.metrics.gauges["audit_queue_depth"] == {(): 0}  # nothing left behind it
    audit = SecretsAudit(app)
    assert await audit.count_events(actor_id="first") == 1
    assert await audit.count_events(actor_id="later") == 4
    assert (await audit.verify_integrity())["valid"] is True


async def test_a_batch_answered_by_its_timeout_writes_nothing_when_the_file_frees(
    app: Strongroom,
) -> None:
    manager = SecretsManager(app)
    with (
        file_held_elsewhere(app),
        acting_as("told-it-failed"),
        pytest.raises(AuditUnavailableError, match="timed out"),
    ):
        await asyncio.wait_for(manager.get_secret("late"), CAP)
    # The writer now gets the file and runs the abandoned batch before this one (its queue
    # is first in, first out): that batch must take nothing.
    with acting_as("after"):
        assert await asyncio.wait_for(manager.get_secret("late"), CAP) == VALUE
    audit = SecretsAudit(app)
    assert await audit.count_events(actor_id="told-it-failed") == 0
    assert await audit.count_events(actor_id="after") == 1
    assert app.audit.health() == "ok"
    assert (await audit.verify_integrity())["valid"] is True


class TakesNothing:
    """An audit store whose ``append_taking`` answers without taking the batch's events."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append_taking(self, take: Callable[[], list[AuditEvent]], key: ChainKey) -> list[int]:
        return []


async def test_a_store_that_answers_without_taking_the_events_fails_their_callers(
    app: Strongroom,
) -> None:
    manager = SecretsManager(app)
    real = app.audit.store
    app.audit.store = TakesNothing(real)  # type: ignore[assignment]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(manager.get_secret("late") for _ in range(5)), return_exceptions=True),
            CAP,
        )
        assert all(isinstance(r, AuditUnavailableError) for r in results), results
        assert all("took no events" in str(r) for r in results)
        assert app.audit.health() == "write_failed"
    finally:
        app.audit.store = real
    assert await asyncio.wait_for(manager.get_secret("late"), CAP) == VALUE
    assert app.audit.health() == "ok"


def _pending(count: int) -> tuple[Pending, list[asyncio.Future[None]]]:
    loop = asyncio.get_running_loop()
    pending, futures = Pending(), [loop.create_future() for _ in range(count)]
    for index, future in enumerate(futures):
        event = AuditEvent(AuditAction.READ, f"s{index}", NOW, AuditResult.SUCCESS, "test")
        pending.append((event, future))
    return pending, futures


async def test_a_batch_takes_at_most_its_limit_and_leaves_the_rest_pending() -> None:
    pending, futures = _pending(MAX_BATCH + 5)
    batch = Batch(pending)
    assert len(batch()) == MAX_BATCH
    assert batch.took
    assert [future for _, future in batch.close(failed=False)] == futures[:MAX_BATCH]
    assert [future for _, future in pending] == futures[MAX_BATCH:]


async def test_a_batch_takes_once_and_a_failure_fails_only_what_it_took() -> None:
    pending, futures = _pending(2)
    batch = Batch(pending)
    assert [event.resource_name for event in batch()] == ["s0", "s1"]
    late, late_futures = _pending(1)
    pending.extend(late)  # recorded after the take: the next batch's
    assert batch() == []
    assert [future for _, future in batch.close(failed=True)] == futures
    assert [future for _, future in pending] == late_futures


async def test_a_batch_closed_before_its_take_takes_nothing_afterwards() -> None:
    pending, futures = _pending(3)
    batch = Batch(pending)
    assert batch.close(failed=False) == []
    assert batch() == []  # its callers were answered: it writes nothing
    assert not batch.took
    assert batch.close(failed=True) == []  # nor fails the events the next batch will take
    assert [future for _, future in pending] == futures


async def test_a_failed_batch_that_took_nothing_yet_takes_its_callers_to_fail_them() -> None:
    pending, futures = _pending(3)
    batch = Batch(pending)
    assert [future for _, future in batch.close(failed=True)] == futures
    assert not pending
    assert batch() == []
    settle(batch.close(failed=True), AuditUnavailableError("write failed: test"))
    assert all(isinstance(future.exception(), AuditUnavailableError) for future in futures)


async def test_without_fsync_an_idle_log_commits_on_the_callers_turn(tmp_path: Path) -> None:
    """An event the log can commit at once (no fsync asked, nothing queued, the file free)
    is committed before ``record`` first yields: no batch, no thread hop."""
    settings = sqlite_settings(tmp_path, STRONGROOM_AUDIT_FSYNC=False)
    async with await Strongroom.open(settings) as app:
        pending, _ = _pending(1)
        event = pending[0][0]
        recording = app.audit.record(event)
        with pytest.raises(StopIteration):
            recording.send(None)  # finished in one step: it never waited for anything
        assert await SecretsAudit(app).count_events(resource_name="s0") == 1


class Handed:
    """An audit store that is only handed events (``append``), as PostgreSQL's."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def append(self, events: list[AuditEvent], key: ChainKey) -> list[int]:
        result: list[int] = await self._store.append(events, key)
        return result

    async def close(self) -> None:
        return None


async def test_a_store_only_handed_events_writes_them_one_batch_at_a_time(
    app: Strongroom,
) -> None:
    log = AuditLog(
        Handed(app.audit.store),  # type: ignore[arg-type]
        app.audit.key,
        clock=app.audit.clock,
        metrics=Metrics(),
    )
    pending, _ = _pending(5)
    await asyncio.wait_for(asyncio.gather(*(log.record(e) for e, _ in pending)), CAP)
    assert log.health() == "ok"
    assert log.metrics.value("audit_events_total") == 5
    audit = SecretsAudit(app)
    assert [await audit.count_events(resource_name=f"s{i}") for i in range(5)] == [1] * 5
