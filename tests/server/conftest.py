"""Fixtures: a real server on the embedded and the PostgreSQL profile (see served.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from served import Served, serve, server_settings

from strongroom import Strongroom


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    """A plain-HTTP server on the embedded (SQLite) profile."""
    app = await Strongroom.open(server_settings("sqlite", tmp_path))
    try:
        async with serve(app) as running:
            yield running
    finally:
        await app.close()


@pytest.fixture
async def served_pg(tmp_path: Path, pg_schema: str) -> AsyncIterator[Served]:
    """A plain-HTTP server on the PostgreSQL profile."""
    app = await Strongroom.open(server_settings("postgres", tmp_path, pg_schema))
    try:
        async with serve(app) as running:
            yield running
    finally:
        await app.close()
