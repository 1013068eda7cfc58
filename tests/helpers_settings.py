"""Settings for tests: one place that says how a test store is configured."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import asyncpg

from strongroom import Settings

#: The tests' own database on the local server (created by conftest.py when missing), so a
#: run never touches the machine's other databases; DATABASE_URL chooses another.
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/strongroom_test"
PG_URL = os.environ.get("DATABASE_URL") or DEFAULT_PG_URL
os.environ["DATABASE_URL"] = PG_URL  # what subprocesses of the tests (the CLI, serve) see too
STORES = ["memory", "sqlite", "postgres", "azure"]
DURABLE_STORES = ["sqlite", "postgres"]
#: Stores whose encryption strongroom does itself (key rotation, 15 tags, clearing expiry); on
#: the azure profile Key Vault keeps its own keys and one tag carries the secret type.
LOCAL_STORES = ["memory", "sqlite", "postgres"]


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def sqlite_settings(home: Path, **extra: object) -> Settings:
    """The embedded profile in ``home`` with a fresh master key, and any other settings."""
    return Settings(
        STRONGROOM_BACKEND="sqlite",
        STRONGROOM_HOME=home,
        STRONGROOM_MASTER_KEY=new_master_key(),
        **extra,  # type: ignore[arg-type]
    )


def make_settings(
    backend: str, home: Path, *, schema: str | None = None, master_key: str | None = None
) -> Settings:
    return Settings(
        STRONGROOM_BACKEND=backend,
        STRONGROOM_HOME=home,
        DATABASE_URL=PG_URL,
        STRONGROOM_PG_SCHEMA=schema or "strongroom",
        STRONGROOM_MASTER_KEY=master_key or new_master_key(),
    )


def custody_settings(backend: str, home: Path, schema: str) -> Callable[..., Settings]:
    """Settings of one store whose master key each call names (a file, a variable, a seal):
    the custody tests open one store with the keys of its successive replacements."""

    def make(**key: object) -> Settings:
        return Settings(
            STRONGROOM_BACKEND=backend,
            STRONGROOM_HOME=home,
            DATABASE_URL=PG_URL,
            STRONGROOM_PG_SCHEMA=schema,
            **key,
        )

    return make


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
