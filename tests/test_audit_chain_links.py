"""The chain check reads rows straight into the bytes their hash covers (ChainLink), without
building events: those bytes must be exactly what ``canonical`` makes of the stored event, for
every kind of row, on SQLite and PostgreSQL; else a valid log would fail to verify, or worse,
a changed column could go unnoticed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from strongroom import SecretsAudit, Strongroom
from strongroom.core.audit import AuditEvent, canonical

pytestmark = pytest.mark.stores("sqlite", "postgres")


def _events(now: datetime) -> list[AuditEvent]:
    return [
        AuditEvent.build(action="READ", resource_name="fleet-db", timestamp=now,
                         result="SUCCESS", actor_id="dispatch-api", actor_ip="10.1.2.3",
                         actor_user_agent="probe/1.0", details={"version": "ab" * 16}),
        AuditEvent.build(action="UPDATE", resource_name=None, timestamp=now, result="FAILURE",
                         actor_id="ops", details=None, error_message='Zürich \u2603 "quoted"',
                         error_code="bad_parameter", duration_ms=17),
        AuditEvent.build(action="DELETE", resource_name="radio-key",
                         timestamp=datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC),
                         result="PARTIAL", actor_id="ünïcode-actor", actor_ip="::1",
                         details={"reason": "policy", "versions": ["a", "b"], "count": 2}),
    ]  # fmt: skip


async def test_links_are_the_bytes_canonical_makes_of_each_stored_event(app: Strongroom) -> None:
    store = app.audit.store
    assert store is not None
    await store.append(_events(app.clock()), app.audit.key)
    stored = [e async for page in store.scan(0, 2**62, 100) for e in page]
    links = [link async for page in store.scan_links(0, 2**62, 100) for link in page]
    assert len(links) == len(stored) >= 3
    for event, link in zip(stored, links, strict=True):
        assert link.id == event.id
        assert link.body == canonical(event.event, event.id)
        assert (link.prev_hash, link.chain_hash) == (event.prev_hash, event.chain_hash)
        assert link.details == event.event.details
    assert (await SecretsAudit(app).verify_integrity())["valid"]
