"""SecretsRotation over HTTPS (``/v1/rotation``): schedules, status, history, forced and
immediate rotation, compliance. The server schedules; a callback is code, which runs only
where it was registered: a process that registers one becomes a rotation worker for that
secret (``services.remote.worker``), claiming its due rotations and submitting the values."""

from __future__ import annotations

import asyncio
from typing import Any

from strongroom.backends.base import name_key
from strongroom.core.errors import ValidationError
from strongroom.core.logging import get_logger
from strongroom.core.models import SecretType
from strongroom.core.rotation import RotationCallback, RotationConfig
from strongroom.core.validation import validate_name
from strongroom.services.remote.convert import dated, dated_list
from strongroom.services.remote.session import RemoteFacadeMixin
from strongroom.services.remote.worker import RotationWorker, WorkerOptions
from strongroom.services.rotation.secrets_rotation import SecretsRotation

__all__ = ["RemoteSecretsRotation"]

log = get_logger("strongroom.client.rotation")


def _path(name: str, *rest: str) -> str:
    validate_name(name)
    return "/".join(("/v1/rotation", name, *rest))


class RemoteSecretsRotation(RemoteFacadeMixin, SecretsRotation):
    """The seed's SecretsRotation answered by a strongroom server; its callbacks run here."""

    _worker: RotationWorker | None = None
    _worker_task: asyncio.Task[None] | None = None

    async def register_secret(self, config: RotationConfig) -> dict[str, Any]:
        """Store the schedule on the server. With a ``rotation_callback`` (or one attached
        with ``register_callback``) the schedule is left to workers, and this process is one."""
        config.validate()
        if config.rotation_callback is not None and not callable(config.rotation_callback):
            raise ValidationError("rotation_callback must be callable")
        worker = self._worker
        attached = worker is not None and name_key(config.name) in worker.callbacks
        served_here = config.rotation_callback is not None or (
            attached and config.generator is None
        )
        body = {
            "rotation_days": config.rotation_days,
            "rotation_hours_before_expiry": config.rotation_hours_before_expiry,
            "enabled": config.enabled,
            "description": config.description,
            "generator": config.generator,
            "generator_options": dict(config.generator_options or {}),
            "rotator": config.rotator,
            "grace_period_hours": config.grace_period_hours,
            "secret_type": getattr(config.secret_type, "value", config.secret_type),
            "worker": config.worker or served_here,
        }
        client = await self._client()
        status = dated(await client.request("PUT", _path(config.name), json=body))
        if config.rotation_callback is not None:
            await self._serve(config.name, config.rotation_callback, config.verify_callback)
        return status

    async def unregister_secret(self, name: str) -> bool:
        from strongroom.core.errors import RotationNotConfiguredError  # noqa: PLC0415

        if self._worker is not None:
            self._worker.detach(name)
        client = await self._client()
        try:
            await client.request("DELETE", _path(name))
        except RotationNotConfiguredError:
            return False
        return True

    async def register_callback(self, name: str, callback: RotationCallback) -> None:
        """Attach a callback (after a restart, say): this process then claims the secret's
        due rotations, if its schedule is left to workers, and runs the callback for them."""
        validate_name(name)
        if not callable(callback):
            raise ValidationError("callback must be callable")
        await self._serve(name, callback, None)

    async def _serve(self, name: str, callback: RotationCallback, verifier: Any) -> None:
        """Attach the callback to this process's worker, and start the worker if it is not
        running (a task in the current event loop)."""
        if self._worker is None:
            self._worker = RotationWorker(await self._client(), WorkerOptions())
        self._worker.attach(name, callback, verifier)
        task = self._worker_task
        if task is None or task.done():
            self._worker_task = asyncio.get_running_loop().create_task(self._work(self._worker))

    @staticmethod
    async def _work(worker: RotationWorker) -> None:
        try:
            await worker.run()
        except Exception as exc:  # a refused token or grant ends the worker; said once
            log.error("rotation worker stopped", error=getattr(exc, "code", type(exc).__name__))

    async def force_rotation(self, name: str) -> dict[str, Any]:
        client = await self._client()
        return dated(await client.request("POST", _path(name, "force"), idempotent=True))

    async def get_rotation_status(self, name: str) -> dict[str, Any]:
        client = await self._client()
        return dated(await client.request("GET", _path(name)))

    async def list_rotation_configs(self) -> list[dict[str, Any]]:
        client = await self._client()
        return dated_list(await client.request("GET", "/v1/rotation"))

    async def get_rotation_history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        client = await self._client()
        found = await client.request("GET", _path(name, "history"), params={"limit": limit})
        return dated_list(found)

    async def rotate_secret(self, name: str, force: bool = False) -> dict[str, Any]:
        client = await self._client()
        return dated(await client.request("POST", _path(name, "rotate")))

    async def run_check(self) -> dict[str, Any]:
        client = await self._client()
        found: dict[str, Any] = await client.request("POST", "/v1/rotation/check")
        return found

    async def compliance_report(
        self, policies: dict[SecretType, int] | None = None
    ) -> dict[str, Any]:
        client = await self._client()
        found: dict[str, Any] = await client.request("GET", "/v1/rotation/compliance")
        return found

    async def start_rotation_scheduler(self, check_interval_seconds: int = 3600) -> None:
        """The server schedules; this process's worker (started when a callback was
        registered) claims what is due for its callbacks."""
        if isinstance(check_interval_seconds, bool) or not check_interval_seconds > 0:
            raise ValidationError("check_interval_seconds must be positive")
        log.info("rotations are scheduled by the server", addr=(await self._client()).addr)
        worker = self._worker
        if worker is not None and worker.callbacks:
            task = self._worker_task
            if task is None or task.done():
                self._worker_task = asyncio.get_running_loop().create_task(self._work(worker))

    async def stop_rotation_scheduler(self) -> None:
        """Stop this process's worker: rotations under way finish, claimed ones not yet
        started are released for another worker."""
        task, self._worker_task = self._worker_task, None
        if self._worker is not None:
            self._worker.stop()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if self._worker is not None:
            self._worker = RotationWorker(
                self._worker.client, WorkerOptions(), self._worker.callbacks,
                self._worker.verifiers,
            )  # fmt: skip

    async def close(self) -> None:
        await self.stop_rotation_scheduler()
        await super().close()
