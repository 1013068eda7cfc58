"""Which due rotations a worker is offered, by the names it holds callbacks for, on SQLite and
PostgreSQL: only those names, never another worker's schedule."""

from __future__ import annotations

import pytest

from strongroom import ManualClock, RotationConfig, SecretsManager, SecretsRotation, Strongroom
from strongroom.db.rotation_store import WorkerFilter

pytestmark = pytest.mark.stores("sqlite", "postgres")


async def test_a_worker_is_offered_only_the_names_it_holds(
    app: Strongroom, clock: ManualClock
) -> None:
    manager, rotation = SecretsManager(app), SecretsRotation(app)
    for name in ("wk-alpha", "wk-beta", "wk-gamma"):
        await manager.create_secret(name, f"first-{name}")
        await rotation.register_secret(RotationConfig(name, worker=True))
        await rotation.force_rotation(name)
    due = app.rotation_store.worker_due
    assert sorted(await due(clock(), 10, WorkerFilter())) == ["wk-alpha", "wk-beta", "wk-gamma"]
    held = WorkerFilter(names=("wk-alpha", "wk-gamma", "wk-missing"))
    assert sorted(await due(clock(), 10, held)) == ["wk-alpha", "wk-gamma"]
    assert await due(clock(), 10, WorkerFilter(names=())) == []
