"""Policy administration in process, on every store: what each change records in the audit
trail, what the calls answer, and which tokens count as live."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from strongroom import SecretsAudit, Strongroom
from strongroom.core.clock import ManualClock
from strongroom.core.policy import Policy

pytestmark = pytest.mark.stores("sqlite", "postgres")


async def changes(app: Strongroom) -> list[dict[str, Any]]:
    """The access changes on record, oldest first, as (operation and details) dicts."""
    trail = await SecretsAudit(app).get_audit_trail(action="ACCESS_CHANGE", limit=50)
    assert all(e["resource_name"] is None for e in trail)  # about access, not one secret
    return [e["details"] for e in reversed(trail)]


async def test_every_policy_change_records_what_changed(app: Strongroom) -> None:
    await app.access.put_policy(Policy.build("ops", ["read:a-*"]))
    assert await app.access.attach("svc", "ops") == ["ops"]
    assert await app.access.attach("svc", "auditor") == ["auditor", "ops"]
    assert await app.access.detach("svc", "ops") == ["auditor"]
    await app.access.delete_policy("ops")
    recorded = [
        {k: v for k, v in d.items() if k in ("operation", "policy", "identity")}
        for d in await changes(app)
    ]
    assert recorded == [
        {"operation": "policy.put", "policy": "ops"},
        {"operation": "policy.attach", "identity": "svc", "policy": "ops"},
        {"operation": "policy.attach", "identity": "svc", "policy": "auditor"},
        {"operation": "policy.detach", "identity": "svc", "policy": "ops"},
        {"operation": "policy.delete", "policy": "ops"},
    ]


async def test_stored_policies_come_back_whole(app: Strongroom) -> None:
    await app.access.put_policy(Policy.build("ops", ["read,write:a-*", "list:*"], "operators"))
    fetched = await app.access.get_policy("ops")
    listed = {p.name: p for p in await app.access.list_policies()}
    for policy in (fetched, listed["ops"]):
        assert policy.description == "operators"
        assert sorted(g.to_dict()["pattern"] for g in policy.grants) == ["*", "a-*"]
    assert list(listed) == ["admin", "auditor", "ops"]
    assert listed["ops"] == fetched


async def test_identities_count_tokens_live_until_the_instant_they_expire(
    app: Strongroom, clock: ManualClock
) -> None:
    await app.access.create_token("svc", ttl=timedelta(minutes=5))
    await app.access.create_token("svc", ttl=timedelta(minutes=10))
    await app.access.create_token("svc")
    assert await app.access.identities() == [{"identity": "svc", "policies": [], "tokens": 3}]
    clock.advance(minutes=5)  # the first expires exactly now
    assert await app.access.identities() == [{"identity": "svc", "policies": [], "tokens": 2}]
