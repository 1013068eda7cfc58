"""A secret row fetched moments ago answers the reads right after it (the stores' read window).

The bound is time alone: another process's change is seen by every read that starts more than
the window after it committed; this process's own changes are read at once. The map is tested
alone with a stepped clock, then on two stores over one SQLite file or PostgreSQL schema (two
workers), the first with a stepped clock, so "within the window" and "after it" are exact
instants.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from helpers_settings import make_settings
from strongroom import (
    EmergencyRevoke,
    RevocationRequest,
    SecretDisabledError,
    SecretRevokedError,
    SecretsManager,
    Settings,
    Strongroom,
)
from strongroom.backends.base import SecretStore
from strongroom.backends.postgres import PostgresStore
from strongroom.backends.recent_rows import MAX_VERSIONS, RecentRows
from strongroom.backends.sqlite import SqliteStore
from strongroom.core.errors import (
    ConfigurationError,
    SecretIsDeletedError,
    SecretNotFoundError,
)
from strongroom.services.wiring import root_key

WINDOW = 0.010
NAME = "recent-dispatch-key"


class Loads:
    """A loader that counts its calls and returns a new row each time."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> tuple[str, int]:
        self.calls += 1
        return ("row", self.calls)


# -- the map alone ------------------------------------------------------------------------------


async def test_a_row_answers_reads_younger_than_the_window_and_no_older() -> None:
    now = [100.0]
    recent = RecentRows(0.25, clock=lambda: now[0])  # binary fractions: exact instants
    load = Loads()
    first = await recent.fetch("k", None, load)
    now[0] += 0.125
    assert await recent.fetch("k", None, load) is first
    now[0] += 0.0625
    assert await recent.fetch("k", None, load) is first
    assert load.calls == 1
    now[0] += 0.0625  # the window counts from when the first SELECT was sent
    assert await recent.fetch("k", None, load) == ("row", 2)
    assert await recent.fetch("k", "v1", load) == ("row", 3)  # another version: its own row
    assert await recent.fetch("other", None, load) == ("row", 4)


async def test_a_zero_window_asks_every_time() -> None:
    recent = RecentRows(0)
    load = Loads()
    for _ in range(3):
        await recent.fetch("k", None, load)
    assert load.calls == 3
    assert len(recent) == 0


def test_a_store_that_reads_without_yielding_gets_the_same_rules() -> None:
    """SQLite reads on the caller's thread: fetch_now, the same window, kept per version."""
    now = [0.0]
    recent = RecentRows(0.25, clock=lambda: now[0])
    calls = []

    def load(row: str) -> Callable[[], str]:
        def select() -> str:
            calls.append(row)
            return row

        return select

    assert recent.fetch_now("k", None, load("current")) == "current"
    assert recent.fetch_now("k", "v1", load("v1")) == "v1"
    assert recent.fetch_now("k", None, load("again")) == "current"
    assert recent.fetch_now("k", "v1", load("again")) == "v1"
    assert calls == ["current", "v1"]
    now[0] = 0.25
    assert recent.fetch_now("k", None, load("fresh")) == "fresh"
    off = RecentRows(0)
    assert [off.fetch_now("k", None, load(str(n))) for n in range(2)] == ["0", "1"]
    assert len(off) == 0


async def test_drop_and_clear_send_the_next_read_to_the_database() -> None:
    now = [0.0]
    recent = RecentRows(WINDOW, clock=lambda: now[0])
    load = Loads()
    await recent.fetch("a", None, load)
    await recent.fetch("a", "v1", load)
    await recent.fetch("b", None, load)
    recent.drop("a")
    assert len(recent) == 1
    assert await recent.fetch("a", None, load) == ("row", 4)
    assert await recent.fetch("b", None, load) == ("row", 3)  # untouched by a's change
    recent.clear()
    assert len(recent) == 0
    assert await recent.fetch("b", None, load) == ("row", 5)


@pytest.mark.parametrize("change", ["drop", "clear"])
async def test_a_fetch_in_flight_across_a_change_here_is_not_kept(change: str) -> None:
    recent = RecentRows(1.0)

    def changed() -> None:
        if change == "drop":
            recent.drop("k")
        else:
            recent.clear()

    changed()  # an earlier change: each one counts, not only the first
    release = asyncio.Event()
    load = Loads()

    async def slow() -> tuple[str, int]:
        await release.wait()
        return ("before-the-change", 0)

    reading = asyncio.ensure_future(recent.fetch("k", None, slow))
    await asyncio.sleep(0)
    changed()  # this process changed the secret while the SELECT was out
    release.set()
    assert await reading == ("before-the-change", 0)  # that read is answered ...
    assert await recent.fetch("k", None, load) == ("row", 1)  # ... the next one asks again


async def test_an_older_fetch_never_replaces_a_newer_one() -> None:
    now = [0.0]
    recent = RecentRows(WINDOW, clock=lambda: now[0])
    release = asyncio.Event()

    async def old() -> str:
        await release.wait()
        return "old"

    async def new() -> str:
        return "new"

    first = asyncio.ensure_future(recent.fetch("k", None, old))
    await asyncio.sleep(0)
    now[0] += WINDOW  # the first fetch is still out when the second starts
    assert await recent.fetch("k", None, new) == "new"
    release.set()
    assert await first == "old"
    assert await recent.fetch("k", None, Loads()) == "new"


async def test_a_version_older_than_the_current_row_is_still_kept() -> None:
    """Rows are kept per requested version: a newer current row does not outrank a version."""
    now = [0.0]
    recent = RecentRows(0.25, clock=lambda: now[0])
    release = asyncio.Event()

    async def version() -> str:
        await release.wait()
        return "v1-row"

    pinned = asyncio.ensure_future(recent.fetch("k", "v1", version))
    await asyncio.sleep(0)
    now[0] = 0.125
    await recent.fetch("k", None, Loads())  # the current row, fetched after v1's was sent
    release.set()
    assert await pinned == "v1-row"
    load = Loads()
    assert await recent.fetch("k", "v1", load) == "v1-row"
    assert load.calls == 0


async def test_a_failed_fetch_keeps_nothing() -> None:
    recent = RecentRows(1.0)

    async def missing() -> None:
        raise SecretNotFoundError("no such secret")

    with pytest.raises(SecretNotFoundError):
        await recent.fetch("k", None, missing)
    load = Loads()
    assert await recent.fetch("k", None, load) == ("row", 1)


async def test_the_map_stays_bounded() -> None:
    recent = RecentRows(1.0, max_names=3)
    load = Loads()
    for index in range(10):
        await recent.fetch(f"n{index}", None, load)
        assert len(recent) <= 3
    recent.clear()
    for index in range(100):
        await recent.fetch("n9", f"v{index}", load)
        assert len(recent) <= MAX_VERSIONS


# -- two workers over one store -----------------------------------------------------------------


class Stepped:
    now = 1000.0

    def __call__(self) -> float:
        return self.now

    def past_the_window(self) -> None:
        self.now += WINDOW * 1.5


class Workers:
    """Two wirings over one schema; ``here``'s store reads with a stepped clock."""

    def __init__(self, here: Strongroom, there: Strongroom, clock: Stepped) -> None:
        self.here_app, self.there_app, self.clock = here, there, clock
        self.here, self.there = SecretsManager(here), SecretsManager(there)


@pytest.fixture(params=["sqlite", "postgres"])
def worker_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return make_settings(request.param, tmp_path, schema=schema)


@pytest.fixture
async def workers(worker_settings: Settings) -> AsyncIterator[Workers]:
    settings = worker_settings
    there = await Strongroom.open(settings)
    clock = Stepped()
    root = await root_key(settings)
    store: SecretStore
    if settings.backend.value == "postgres":
        store = PostgresStore(
            settings.postgres_dsn(), root, schema=settings.pg_schema,
            read_window_seconds=WINDOW, read_clock=clock,
        )  # fmt: skip
    else:
        store = SqliteStore(
            settings.sqlite_path, root, read_window_seconds=WINDOW, read_clock=clock
        )
    try:
        here = await Strongroom.open(settings, store=store)
    except BaseException:
        await there.close()
        raise
    try:
        yield Workers(here, there, clock)
    finally:
        await here.close()
        await there.close()


async def _revoke(app: Strongroom) -> None:
    await EmergencyRevoke(app).request_revocation(
        RevocationRequest(NAME, "key_compromise", "alice", immediate=True)
    )


async def test_another_workers_new_version_is_read_once_the_window_has_passed(
    workers: Workers,
) -> None:
    await workers.there.create_secret(NAME, "first")
    assert await workers.here.get_secret(NAME) == "first"
    await workers.there.update_secret(NAME, "second")
    assert await workers.here.get_secret(NAME) == "first"  # the row fetched within the window
    workers.clock.past_the_window()
    assert await workers.here.get_secret(NAME) == "second"


async def test_this_workers_own_changes_are_read_at_once(workers: Workers) -> None:
    here = workers.here
    await here.create_secret(NAME, "first")
    assert await here.get_secret(NAME) == "first"
    await here.update_secret(NAME, "second")
    assert await here.get_secret(NAME) == "second"
    await here.update_secret_properties(NAME, None, enabled=False)
    with pytest.raises(SecretDisabledError):
        await here.get_secret(NAME)
    await here.update_secret_properties(NAME, None, enabled=True)
    assert await here.get_secret(NAME) == "second"
    await _revoke(workers.here_app)
    with pytest.raises(SecretRevokedError):
        await here.get_secret(NAME)
    await here.delete_secret(NAME)
    with pytest.raises(SecretIsDeletedError):
        await here.get_secret(NAME)


async def test_another_workers_revocation_is_refused_once_the_window_has_passed(
    workers: Workers,
) -> None:
    created = await workers.there.create_secret(NAME, "to-be-revoked")
    assert await workers.here.get_secret(NAME) == "to-be-revoked"
    assert await workers.here.get_secret(NAME, created["version"]) == "to-be-revoked"
    await _revoke(workers.there_app)
    workers.clock.past_the_window()
    with pytest.raises(SecretRevokedError):
        await workers.here.get_secret(NAME)
    with pytest.raises(SecretRevokedError):
        await workers.here.get_secret(NAME, created["version"])


async def test_a_missing_secret_is_never_remembered(workers: Workers) -> None:
    with pytest.raises(SecretNotFoundError):
        await workers.here.get_secret(NAME)
    await workers.there.create_secret(NAME, "now-there")
    assert await workers.here.get_secret(NAME) == "now-there"  # no window has passed


def test_the_window_is_a_setting_bounded_by_the_revocation_promise(tmp_path: Path) -> None:
    assert make_settings("postgres", tmp_path).read_window_seconds == WINDOW
    with pytest.raises(ConfigurationError, match="STRONGROOM_READ_WINDOW_SECONDS"):
        Settings(STRONGROOM_READ_WINDOW_SECONDS="0.2")
