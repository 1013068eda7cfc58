"""Rotation workers over HTTPS against a real server: a process that registers a callback on
the remote profile claims and rotates that secret; a worker needs the ``rotate`` grant (403,
audited); a failure is recorded with the worker's message, never the callback's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from helpers_remote import remote_server, remote_settings
from helpers_serve import Served
from strongroom import (
    RotationConfig,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
)
from strongroom.client.transport import RemoteClient, RemoteConfig
from strongroom.core.errors import PermissionDeniedError
from strongroom.services.remote.rotation import RemoteSecretsRotation
from strongroom.services.remote.worker import RotationWorker, WorkerOptions

CANARY = "callback-canary-5b1e"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with remote_server(tmp_path_factory.mktemp("rotation-workers")) as running:
        yield running


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    """Wait for a condition the server reports (a worker runs in the background)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def status_of(server: Served, name: str) -> dict[str, Any]:
    return await SecretsRotation(server.app).get_rotation_status(name)


async def test_a_callback_registered_remotely_is_run_by_this_process(
    server: Served, tmp_path: Path
) -> None:
    token = await server.token_for("cb-service", "read,write,list,rotate:cb-*")
    manager = SecretsManager(settings=remote_settings(server, token, tmp_path))
    rotation = SecretsRotation(manager)
    assert isinstance(rotation, RemoteSecretsRotation)
    made: list[str] = []

    async def new_password(name: str) -> str:
        made.append(name)
        return f"cb-value-{len(made)}"

    try:
        # No secret yet: due at once, and the first rotation (by this process) creates it.
        status = await rotation.register_secret(
            RotationConfig("cb-db", rotation_days=30, rotation_callback=new_password)
        )
        assert status["worker"] is True
        await until(lambda: _rotated(server, "cb-db"))
        assert made == ["cb-db"]
        assert await manager.get_secret("cb-db") == "cb-value-1"
        trail = await SecretsAudit(server.app).get_audit_trail("cb-db", "ROTATE", 10)
        assert [(e["result"], e["actor_id"]) for e in trail] == [("SUCCESS", "cb-service")]
    finally:
        await rotation.close()
        await manager.close()


async def _rotated(server: Served, name: str) -> bool:
    return (await status_of(server, name))["last_result"] == "SUCCESS"


async def test_a_schedule_left_to_workers_is_not_failed_by_the_servers_scheduler(
    server: Served,
) -> None:
    await SecretsRotation(server.app).register_secret(
        RotationConfig("cb-nobody", rotation_days=30, worker=True)
    )
    outcome = await SecretsRotation(server.app).run_check()
    assert "cb-nobody" not in outcome["failed"]
    status = await status_of(server, "cb-nobody")
    assert (status["overdue"], status["attempts"], status["last_error"]) == (True, 0, None)


async def test_a_failing_callback_is_recorded_with_the_workers_message_only(
    server: Served, tmp_path: Path
) -> None:
    token = await server.token_for("cb-failing", "rotate:cbf-*")

    def broken(name: str) -> str:
        raise RuntimeError(f"could not set {CANARY}")

    await SecretsRotation(server.app).register_secret(
        RotationConfig("cbf-key", rotation_days=30, worker=True)
    )
    async with RemoteClient(
        RemoteConfig.from_settings(remote_settings(server, token, tmp_path))
    ) as client:
        worker = RotationWorker(client, WorkerOptions(wait_seconds=0))
        worker.attach("cbf-key", broken, None)
        outcomes = await worker.run_once()
    assert [(o["name"], o["rotated"]) for o in outcomes] == [("cbf-key", False)]
    status = await status_of(server, "cbf-key")
    assert status["last_error"] == "rotation worker: rotation callback raised RuntimeError"
    assert (status["last_result"], status["attempts"]) == ("FAILURE", 1)
    trail = await SecretsAudit(server.app).get_audit_trail("cbf-key", None, 10)
    assert ("ROTATE", "FAILURE", "cb-failing") in [
        (e["action"], e["result"], e["actor_id"]) for e in trail
    ]
    assert CANARY not in repr(trail) + repr(status) + repr(outcomes)


async def test_a_worker_without_the_rotate_grant_is_refused(server: Served, tmp_path: Path) -> None:
    await SecretsManager(server.app).create_secret("cbg-key", "first")
    await SecretsRotation(server.app).register_secret(
        RotationConfig("cbg-key", rotation_days=30, generator="password", worker=True)
    )
    await SecretsRotation(server.app).force_rotation("cbg-key")
    reader = await server.token_for("cbg-reader", "read,list:cbg-*")
    elsewhere = await server.token_for("cbg-elsewhere", "rotate:other-*")
    home = tmp_path / "c"
    async with (
        RemoteClient(RemoteConfig.from_settings(remote_settings(server, reader, home))) as r,
        RemoteClient(RemoteConfig.from_settings(remote_settings(server, elsewhere, home))) as e,
    ):
        generated = WorkerOptions(generated=True, name_glob="cbg-*", wait_seconds=0)
        with pytest.raises(PermissionDeniedError) as caught:
            await RotationWorker(r, generated).claim()  # holds rotate nowhere
        # The 403 names the policies that refused, in the message and as a field.
        (policy,) = caught.value.policies
        assert policy.startswith("p-")
        assert f"no grant of its policies ({policy}) allows it" in str(caught.value)
        named = RotationWorker(e, WorkerOptions(wait_seconds=0))
        named.attach("cbg-key", lambda name: "x", None)
        with pytest.raises(PermissionDeniedError) as refused:  # a named secret it may not rotate
            await named.claim()
        # A glob that covers secrets it may not rotate claims none of them.
        assert await RotationWorker(e, generated).claim() == []
        body = {"worker": "e" * 16, "value": "forged"}
        with pytest.raises(PermissionDeniedError):
            await e.request("POST", "/v1/rotation/cbg-key/complete", json=body)
    async with server.client(elsewhere) as raw:
        answer = await raw.post("/v1/rotation/cbg-key/complete", json=body)
    assert answer.status_code == 403
    assert len(refused.value.policies) == 1
    assert answer.json()["error"]["policies"] == list(refused.value.policies)
    assert "forged" not in answer.text
    refusals = await SecretsAudit(server.app).get_audit_trail("cbg-key", None, 20)
    refused = {(x["actor_id"], x["error_code"]) for x in refusals if x["result"] == "FAILURE"}
    assert {("cbg-elsewhere", "forbidden")} <= refused
    status = await status_of(server, "cbg-key")
    assert (status["attempts"], status["last_result"]) == (0, None)  # nothing changed


async def test_a_worker_renews_its_lease_while_a_slow_callback_runs(
    server: Served, tmp_path: Path
) -> None:
    token = await server.token_for("cb-slow", "rotate,read:cbs-*")
    await SecretsRotation(server.app).register_secret(
        RotationConfig("cbs-key", rotation_days=30, worker=True)
    )
    release = asyncio.Event()

    async def slow(name: str) -> str:
        await release.wait()  # a target system that takes longer than half the lease
        return "slow-value-1"

    async def lease_until() -> Any:
        return (await server.app.rotation_store.get("cbs-key"))["lease_until"]

    async with RemoteClient(
        RemoteConfig.from_settings(remote_settings(server, token, tmp_path))
    ) as client:
        worker = RotationWorker(client, WorkerOptions(lease_seconds=2, wait_seconds=0))
        worker.attach("cbs-key", slow, None)
        (item,) = await worker.claim()
        first = await lease_until()
        rotating = asyncio.get_running_loop().create_task(worker.rotate_all([item]))
        await until(lambda: _later(lease_until, first))  # renewed at half the lease
        release.set()
        (outcome,) = await rotating
    assert outcome["rotated"] is True
    assert await SecretsManager(server.app).get_secret("cbs-key") == "slow-value-1"
    trail = await SecretsAudit(server.app).get_audit_trail("cbs-key", None, 20)
    assert "rotation.renew" in [e["details"].get("operation") for e in trail]


async def _later(read: Callable[[], Awaitable[Any]], than: Any) -> bool:
    found = await read()
    return found is not None and found > than
