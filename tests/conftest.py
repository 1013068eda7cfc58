"""Shared fixtures: every behaviour runs on every store (memory, sqlite, postgres).

PostgreSQL tests use ``DATABASE_URL`` (default: the local server, database ``test``), each in a
schema of its own that is dropped afterwards. A missing server is a failure, never a skip.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from helpers_settings import PG_URL, STORES, drop_schema, make_settings
from helpers_vault import Vault, azure_settings, vault_server
from strongroom import SecretsManager, Settings, Strongroom
from strongroom.core.clock import ManualClock


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
