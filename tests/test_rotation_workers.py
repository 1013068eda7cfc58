"""The server's side of rotation workers on SQLite and PostgreSQL: schedules left to workers
are skipped by the in-server scheduler, claimed with leases that only their owner can use,
reclaimable once expired, released on request."""

from __future__ import annotations

import asyncio

import pytest

from strongroom import (
    ManualClock,
    RotationConfig,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    Strongroom,
)
from strongroom.core.errors import RotationFailedError, ValidationError
from strongroom.db.rotation_store import WorkerFilter
from strongroom.services.rotation import workers

pytestmark = pytest.mark.stores("sqlite", "postgres")

GENERATED = WorkerFilter(generated=True, like="wk-%")
OWNER_A = workers.lease_owner("worker-a", "a" * 16)
OWNER_B = workers.lease_owner("worker-b", "b" * 16)


def everything(name: str) -> bool:
    return True


async def due_for_workers(app: Strongroom, names: list[str], **config: object) -> None:
    manager, rotation = SecretsManager(app), SecretsRotation(app)
    for name in names:
        await manager.create_secret(name, f"first-{name}")
        await rotation.register_secret(RotationConfig(name, worker=True, **config))  # type: ignore[arg-type]
        await rotation.force_rotation(name)


async def claim(app: Strongroom, owner: str, *, lease: int = 30, limit: int = 10) -> list[str]:
    found = await workers.claim(app, owner, GENERATED, everything, limit=limit, lease_seconds=lease)
    return sorted(item["name"] for item in found)


async def test_the_servers_scheduler_leaves_worker_schedules_to_workers(app: Strongroom) -> None:
    await due_for_workers(app, ["wk-left"], generator="password")
    outcome = await SecretsRotation(app).run_check()
    assert "wk-left" not in outcome["rotated"] + outcome["failed"]
    status = await SecretsRotation(app).get_rotation_status("wk-left")
    assert (status["worker"], status["attempts"], status["last_result"]) == (True, 0, None)
    # Asked to rotate now, it is queued for the next worker rather than failed.
    now = await SecretsRotation(app).rotate_secret("wk-left", force=True)
    assert now == {"name": "wk-left", "rotated": False, "reason": "queued for a worker"}
    assert await claim(app, OWNER_A) == ["wk-left"]


async def test_a_lease_is_its_owners_until_it_expires_then_anothers(
    app: Strongroom, clock: ManualClock
) -> None:
    await due_for_workers(app, ["wk-one", "wk-two"], generator="password")
    await due_for_workers(app, ["wk-callback"])  # no generator: not a generator worker's
    assert await claim(app, OWNER_A) == ["wk-one", "wk-two"]
    assert await claim(app, OWNER_B) == []  # leased
    with pytest.raises(RotationFailedError, match="not this worker's"):
        await workers.complete(app, "wk-one", OWNER_B, "stolen-value")
    clock.advance(seconds=31)  # worker A is presumed dead
    assert await claim(app, OWNER_B) == ["wk-one", "wk-two"]
    with pytest.raises(RotationFailedError, match="not this worker's"):
        await workers.complete(app, "wk-one", OWNER_A, "late-value")
    done = await workers.complete(app, "wk-one", OWNER_B, "fresh-value-1")
    assert done["rotated"] is True
    assert await SecretsManager(app).get_secret("wk-one") == "fresh-value-1"
    assert len(await SecretsManager(app).get_secret_versions("wk-one")) == 2
    # Finished: the lease is gone, so neither worker can submit for it again.
    with pytest.raises(RotationFailedError, match="not this worker's"):
        await workers.complete(app, "wk-one", OWNER_B, "twice")
    rotations = await SecretsAudit(app).get_audit_trail("wk-one", "ROTATE", 10)
    assert [(e["result"], e["actor_id"] is not None) for e in rotations] == [("SUCCESS", True)]


async def test_a_released_lease_is_claimable_at_once(app: Strongroom) -> None:
    await due_for_workers(app, ["wk-rel"], generator="api_key")
    assert await claim(app, OWNER_A) == ["wk-rel"]
    assert await workers.release(app, ["wk-rel"], OWNER_B) == []  # not B's to release
    assert await claim(app, OWNER_B) == []
    assert await workers.release(app, ["wk-rel"], OWNER_A) == ["wk-rel"]
    assert await claim(app, OWNER_B) == ["wk-rel"]


async def test_a_reported_failure_is_recorded_with_back_off(
    app: Strongroom, clock: ManualClock
) -> None:
    await due_for_workers(app, ["wk-fail"], generator="password")
    assert await claim(app, OWNER_A) == ["wk-fail"]
    result = await workers.fail(app, "wk-fail", OWNER_A, "target refused the login")
    assert result["rotated"] is False
    status = await SecretsRotation(app).get_rotation_status("wk-fail")
    assert status["last_result"] == "FAILURE"
    assert status["last_error"] == "rotation worker: target refused the login"
    assert status["attempts"] == 1
    assert status["next_attempt"] > clock()  # retried after the scheduler's back-off
    assert await claim(app, OWNER_B) == []
    clock.advance(minutes=2)
    assert await claim(app, OWNER_B) == ["wk-fail"]


async def test_concurrent_claims_share_the_due_rotations_without_overlap(app: Strongroom) -> None:
    names = [f"wk-many-{i:02d}" for i in range(30)]
    await due_for_workers(app, names, generator="password")
    owners = [workers.lease_owner(f"w{i}", f"{i:x}" * 16) for i in range(3)]
    found = await asyncio.gather(*(claim(app, owner, limit=30) for owner in owners))
    claimed = [name for names_of_one in found for name in names_of_one]
    assert sorted(claimed) == names  # each exactly once


async def test_bad_worker_ids_globs_and_limits_are_refused(app: Strongroom) -> None:
    with pytest.raises(ValidationError):
        workers.lease_owner("w", "not-hex")
    with pytest.raises(ValidationError):
        workers.glob_to_like("wk_%")
    with pytest.raises(ValidationError):
        await workers.claim(app, OWNER_A, GENERATED, everything, limit=0, lease_seconds=30)
    with pytest.raises(ValidationError):
        await workers.claim(app, OWNER_A, GENERATED, everything, limit=1, lease_seconds=1)
    with pytest.raises(ValidationError, match="not one given here"):
        await SecretsRotation(app).register_secret(
            RotationConfig("wk-both", worker=True, rotation_callback=lambda n: "x")
        )
