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
from pathlib import Path
from typing import Any

import pytest

from helpers_edge import until
from helpers_settings import new_master_key
from strongroom import SecretsAudit, SecretsManager, Settings, Strongroom, acting_as
from strongroom.core.audit import AuditEvent, ChainKey
from strongroom.core.errors import AuditUnavailableError
from strongroom.db.audit_sqlite import SqliteAuditStore

CAP = 10.0  # an upper bound on every wait, never a timing assertion
VALUE = "the-late-batch-value"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Strongroom]:
    settings = Settings(
        STRONGROOM_BACKEND="sqlite",
        STRONGROOM_HOME=tmp_path,
        STRONGROOM_MASTER_KEY=new_master_key(),
        STRONGROOM_AUDIT_TIMEOUT_SECONDS=1,
    )
    opened = await Strongroom.open(settings)
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
