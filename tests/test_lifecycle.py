"""Lifecycle and cost analytics: unused secrets, versions kept past need, secrets never
rotated, unused tokens, and the Key Vault cost estimate with what the cache saved."""

from __future__ import annotations

import pytest

from strongroom import SecretsManager, SecretType, Strongroom
from strongroom.core.actor import acting_as
from strongroom.core.clock import ManualClock
from strongroom.services.analytics.lifecycle import estimate_cost, lifecycle

pytestmark = pytest.mark.stores("sqlite", "postgres")


async def test_lifecycle_findings(app: Strongroom, clock: ManualClock) -> None:
    manager = SecretsManager(app)
    await manager.create_secret("idle-key", "v", SecretType.API_KEY)
    await manager.create_secret("busy-key", "v", SecretType.API_KEY)
    await manager.create_secret("churned", "v1", SecretType.GENERIC)
    for n in (2, 3, 4):
        await manager.update_secret("churned", f"v{n}")
    unused = await app.access.create_token("nobody")
    clock.advance(days=100)
    with acting_as("svc"):
        await manager.get_secret("busy-key")
    found = await lifecycle(app)
    assert [s["name"] for s in found["never_read"]] == ["churned", "idle-key"]
    assert {s["name"]: s["stale"] for s in found["versions_kept"]} == {"churned": 3}
    assert sorted(s["name"] for s in found["never_rotated"]) == ["busy-key", "idle-key"]
    assert [t["id"] for t in found["tokens_unused"]] == [unused.record.id]
    assert found["cost"] is None  # only the azure profile pays per operation


async def test_cost_estimate_counts_store_operations_and_cache_savings(
    app: Strongroom, clock: ManualClock
) -> None:
    manager = SecretsManager(app)
    await manager.create_secret("k", "v")
    for _ in range(9):
        await manager.get_secret("k")
    app.metrics.inc("cache_hits_total", 3)
    app.metrics.inc("cache_misses_total", 1)
    estimate = await estimate_cost(app, window_days=30, price_per_10k=0.03)
    shown = estimate.to_dict()
    assert shown["operations"] == {"CREATE": 1, "READ": 9}
    assert shown["store_operations"] == 10
    assert shown["vault_operations"] == 10 - 7  # 9 reads x 0.75 hit ratio, rounded
    assert shown["operations_saved_by_cache"] == 7
    assert shown["cost_without_cache"] == round(10 / 10_000 * 0.03, 4)
