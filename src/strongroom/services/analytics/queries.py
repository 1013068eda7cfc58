"""The audit aggregates the console, reports and analytics read (one SQL query each)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from strongroom.core.errors import AuditUnavailableError

if TYPE_CHECKING:
    from strongroom.db.audit_store import AuditStore
    from strongroom.services.wiring import Strongroom

__all__ = ["analyse", "last_reads", "threats_by_secret"]


def _store(app: Strongroom) -> AuditStore:
    if app.audit.store is None:
        raise AuditUnavailableError("auditing is switched off for this instance")
    return app.audit.store


async def analyse(app: Strongroom, query: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of one named aggregate of :mod:`strongroom.db.console_sql`."""
    return await _store(app).analyse(query, params)


async def last_reads(app: Strongroom, names: Iterable[str]) -> dict[str, datetime | None]:
    """The last successful read of each name (by lower-case name), one index probe a name."""
    keys = sorted({n.lower() for n in names})
    if not keys:
        return {}
    rows = await analyse(app, "console_last_reads", names=json.dumps(keys))
    return {str(r["resource_name"]): r["last_seen"] for r in rows}


def threats_by_secret(threats: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many detections name each secret (lower-case name)."""
    counts: dict[str, int] = {}
    for threat in threats:
        name = threat.get("resource_name")
        if name:
            counts[str(name).lower()] = counts.get(str(name).lower(), 0) + 1
    return counts
