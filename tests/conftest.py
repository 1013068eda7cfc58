"""Shared fixtures: every behaviour runs on every store (memory, sqlite, postgres, azure).

PostgreSQL tests use ``DATABASE_URL`` (default: the local server, database ``strongroom_test``,
created here when missing), each in a schema of its own that is dropped afterwards. A missing
server stops the run with one line and a failing exit code: never a skip, never a wall of
tracebacks.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

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


def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Before any test runs: PostgreSQL is there (its own database made), or the run ends
    here with one clear line."""
    if not any(_needs_postgres(item) for item in items):
        return
    problem = asyncio.run(_ensure_database())
    if problem is not None:
        pytest.exit(
            f"PostgreSQL is required and not reachable at {PG_URL.split('@')[-1]} ({problem}). "
            "Start it (pg_ctlcluster <version> main start) or set DATABASE_URL.",
            returncode=3,
        )


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


@pytest.fixture
def manager(app: Strongroom) -> SecretsManager:
    return SecretsManager(app)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``store_settings`` over every store unless a test narrows it with
    ``@pytest.mark.stores("sqlite", "postgres")``."""
    if "store_settings" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("stores")
        stores = list(marker.args) if marker else STORES
        metafunc.parametrize("store_settings", stores, indirect=True)
