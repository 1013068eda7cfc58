"""SecretsRotation over HTTPS (``/v1/rotation``): schedules with built-in generators, status,
history, forced and immediate rotation, compliance. The server schedules and rotates; a
callback is code, which runs only where it was registered (see ``register_callback``)."""

from __future__ import annotations

from typing import Any

from strongroom.core.errors import ConfigurationError
from strongroom.core.logging import get_logger
from strongroom.core.models import SecretType
from strongroom.core.rotation import RotationCallback, RotationConfig
from strongroom.core.validation import validate_name
from strongroom.services.remote.convert import dated, dated_list
from strongroom.services.remote.session import RemoteFacadeMixin
from strongroom.services.rotation.secrets_rotation import SecretsRotation

__all__ = ["RemoteSecretsRotation"]

log = get_logger("strongroom.client.rotation")


def _path(name: str, *rest: str) -> str:
    validate_name(name)
    return "/".join(("/v1/rotation", name, *rest))


class RemoteSecretsRotation(RemoteFacadeMixin, SecretsRotation):
    """The seed's SecretsRotation answered by a strongroom server."""

    async def register_secret(self, config: RotationConfig) -> dict[str, Any]:
        if config.rotation_callback is not None:
            raise ConfigurationError(
                "a rotation callback runs in the process that holds it; in the remote profile "
                "register a built-in generator or rotator (rotation workers that run callbacks "
                "for the server are not built yet)"
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
        }
        client = await self._client()
        return dated(await client.request("PUT", _path(config.name), json=body))

    async def unregister_secret(self, name: str) -> bool:
        from strongroom.core.errors import RotationNotConfiguredError  # noqa: PLC0415

        client = await self._client()
        try:
            await client.request("DELETE", _path(name))
        except RotationNotConfiguredError:
            return False
        return True

    async def register_callback(self, name: str, callback: RotationCallback) -> None:
        raise ConfigurationError(
            "rotation callbacks cannot be registered in the remote profile yet (rotation "
            "workers are not built); use a built-in generator or rotator"
        )

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
        """Nothing to start: in the remote profile the server schedules rotations."""
        log.info("rotations are scheduled by the server", addr=(await self._client()).addr)

    async def stop_rotation_scheduler(self) -> None:
        """Nothing to stop (see :meth:`start_rotation_scheduler`)."""
