"""Shared fixtures: every behaviour runs on every store (memory, sqlite, postgres, azure).

PostgreSQL tests use ``DATABASE_URL`` (default: the local server, database ``strongroom_test``,
created here when missing), each in a schema of its own that is dropped afterwards. A missing
server stops the run with one line and a failing exit code: never a skip, never a wall of
tracebacks.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from helpers_remote import REMOTE_SUITES, RemoteSwitch, remote_manager_for, switch_server
from helpers_settings import DEFAULT_PG_URL, PG_URL, STORES, drop_schema, make_settings
from helpers_vault import Vault, azure_settings, vault_server
from strongroom import SecretsManager, Settings, Strongroom
from strongroom.core.clock import ManualClock

_PG_FIXTURES = {"pg_schema", "postgres_available"}


def _needs_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    params = set(map(str, callspec.params.values())) if callspec is not None else set()
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(fixtures & _PG_FIXTURES) or "postgres" in params


async def _ensure_database() -> str | None:
    """Create the tests' own database when it is the default one and missing; why the server
    cannot be used, or None."""
    try:
        conn = await asyncpg.connect(PG_URL.rsplit("/", 1)[0] + "/postgres", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        name = PG_URL.rsplit("/", 1)[1].split("?", 1)[0]
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists and PG_URL == DEFAULT_PG_URL:
            await conn.execute(f'CREATE DATABASE "{name}"')  # a fixed name, never input
    finally:
        await conn.close()
    return None


def _stop_without_postgres() -> None:
    """PostgreSQL is there (its own database made), or the run ends here with one clear line."""
    problem = asyncio.run(_ensure_database())
    if problem is not None:
        pytest.exit(
            f"PostgreSQL is required and not reachable at {PG_URL.split('@')[-1]} ({problem}). "
            "Start it (pg_ctlcluster <version> main start) or set DATABASE_URL.",
            returncode=3,
        )


def pytest_configure(config: pytest.Config) -> None:
    """No terminal size in the environment (pytest-xdist sets COLUMNS=80 and LINES=24 in its
    test processes; a shell may export them): the commands and servers the tests start draw
    their tables at the pipe width, in one process or many."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


def pytest_sessionstart(session: pytest.Session) -> None:
    """With test processes (``-n``, pytest-xdist), the controller checks once before they
    start: it collects nothing itself, and a test process cannot end the run in one line."""
    config = session.config
    if not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no":
        _stop_without_postgres()


def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Before any test runs in one process: PostgreSQL is there, if a test needs it."""
    if hasattr(session.config, "workerinput"):  # a test process: its controller checked
        return
    if any(_needs_postgres(item) for item in items):
        _stop_without_postgres()


@pytest.fixture(scope="session")
async def postgres_available() -> None:
    """Fail (not skip) the PostgreSQL tests when the server cannot be reached."""
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is required for these tests and is not reachable at {PG_URL}: {exc}"
        )
    await conn.close()


@pytest.fixture
async def pg_schema(postgres_available: None) -> AsyncIterator[str]:
    schema = f"t_{secrets.token_hex(6)}"
    yield schema
    await drop_schema(schema)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    backend = request.param
    if backend == "azure":
        vault = request.getfixturevalue("kv_vault")
        return azure_settings(vault, tmp_path)
    if backend == "remote":  # the server's side: a memory store behind a real HTTPS server
        return make_settings("memory", tmp_path)
    schema = request.getfixturevalue("pg_schema") if backend == "postgres" else None
    return make_settings(backend, tmp_path, schema=schema)


@pytest.fixture
async def kv_vault(
    tmp_path_factory: pytest.TempPathFactory, clock: ManualClock
) -> AsyncIterator[Vault]:
    """A Key Vault-compatible endpoint: a strongroom server (memory profile) over HTTPS with a
    test CA, for the azure store to talk to through the official SDK. It keeps the test's clock,
    as a real vault keeps the real one: the times it reports are the times the test set."""
    async with vault_server(tmp_path_factory.mktemp("vault"), clock=clock) as vault:
        yield vault


@pytest.fixture
async def app(store_settings: Settings, clock: ManualClock) -> AsyncIterator[Strongroom]:
    instance = await Strongroom.open(store_settings, clock=clock)
    yield instance
    await instance.close()


@pytest.fixture(scope="session")
async def remote_switch(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RemoteSwitch]:
    """One HTTPS server for the whole run, started by the first remote-profile test; each
    points it at its own wiring (a server per test would cost a TLS listener each time)."""
    async with switch_server(tmp_path_factory.mktemp("remote-switch")) as switch:
        yield switch


@pytest.fixture
async def manager(
    app: Strongroom, remote_switch: RemoteSwitch, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SecretsManager]:
    """The SecretsManager under test: over the wiring, or on the remote profile a
    RemoteSecretsManager talking HTTPS to a server that serves the same wiring."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("store_settings") != "remote":
        yield SecretsManager(app)
        return
    async with remote_manager_for(remote_switch, app, tmp_path) as remote:
        yield remote


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``store_settings`` over every store unless a test narrows it with
    ``@pytest.mark.stores("sqlite", "postgres")``. The behavioural suites (REMOTE_SUITES) also
    run on the remote profile, where ``manager`` talks HTTPS to a server, unless a test
    simulates many callers itself (``@pytest.mark.local_identity``)."""
    if "store_settings" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("stores")
        stores = list(marker.args) if marker else list(STORES)
        local_only = metafunc.definition.get_closest_marker("local_identity") is not None
        if (
            metafunc.definition.path.name in REMOTE_SUITES
            and "manager" in metafunc.fixturenames
            and not local_only
            and (marker is None or "remote" in marker.args)
        ):
            stores = [*dict.fromkeys([*stores, "remote"])]
        metafunc.parametrize("store_settings", stores, indirect=True)
