"""The audit log opened again, for reading only, in another process (a chain-check worker)."""

from __future__ import annotations

from pathlib import Path

from strongroom.core.errors import ConfigurationError
from strongroom.db.audit_postgres import PostgresAuditStore
from strongroom.db.audit_sqlite import SqliteAuditStore
from strongroom.db.audit_store import AuditStore, StoreLocation
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = ["open_reader"]


async def open_reader(location: StoreLocation) -> AuditStore:
    """The log at ``location`` on one connection of its own: no migration, no writer."""
    if location.backend == "postgres" and location.schema is not None:
        pg = PostgresAuditStore(location.address, schema=location.schema, min_size=1, max_size=1)
        await pg.open(migrate=False)
        return pg
    if location.backend == "sqlite":
        lite = SqliteAuditStore(SqliteDatabase(Path(location.address), read_only=True))
        await lite.open()
        return lite
    raise ConfigurationError(f"no audit log can be read from a {location.backend} location")
