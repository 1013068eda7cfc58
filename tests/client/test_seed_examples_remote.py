"""The seed's examples, unchanged but for the import line, on a machine that has only
STRONGROOM_ADDR, a CA bundle and a token: no key file, no database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers_remote import remote_server
from helpers_serve import Served
from strongroom import (
    AuditAction,
    EmergencyRevoke,
    RevocationReason,
    RevocationRequest,
    RotationConfig,
    SecretsAudit,
    SecretsManager,
    SecretsRotation,
    SecretType,
)
from strongroom.services.remote.session import reset_default_client


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with remote_server(tmp_path_factory.mktemp("seed")) as running:
        yield running


def files_in(path: Path) -> list[Path]:
    return list(path.rglob("*"))


async def test_the_seeds_examples_run_with_only_an_address_and_a_token(
    server: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.ca_path is not None
    home = tmp_path  # exists, and stays empty
    for key, value in {
        "STRONGROOM_ADDR": server.base_url,
        "STRONGROOM_TOKEN": server.admin_token,
        "STRONGROOM_CACERT": str(server.ca_path),
        "STRONGROOM_HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("DATABASE_URL", "STRONGROOM_MASTER_KEY", "STRONGROOM_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    try:
        # Quick start
        secrets_manager = SecretsManager()
        audit = SecretsAudit()
        await audit.initialize()
        rotation = SecretsRotation(secrets_manager, audit)
        await rotation.initialize()
        revoke = EmergencyRevoke(secrets_manager, audit)
        await revoke.initialize()

        # Create and manage secrets
        await secrets_manager.create_secret(
            name="production-api-key",
            value="sk-prod-abc123xyz789",
            secret_type=SecretType.API_KEY,
            metadata={"environment": "production", "service": "external-api"},
            expires_in_days=90,
        )
        assert await secrets_manager.get_secret("production-api-key") == "sk-prod-abc123xyz789"
        await secrets_manager.update_secret(name="production-api-key", value="sk-prod-new-value")
        versions = await secrets_manager.get_secret_versions("production-api-key")
        assert len(versions) == 2
        assert "production-api-key" in [s["name"] for s in await secrets_manager.list_secrets()]

        # Rotation: the callback runs here (this process becomes the secret's rotation worker)
        def generate_new_api_key() -> str:
            return "sk-prod-" + secrets.token_hex(16)

        await rotation.register_secret(
            RotationConfig(
                name="production-api-key",
                rotation_days=90,
                rotation_hours_before_expiry=24,
                enabled=True,
                rotation_callback=lambda name: generate_new_api_key(),
                description="Production API key with 90-day rotation",
            )
        )
        await rotation.start_rotation_scheduler(check_interval_seconds=3600)
        status = await rotation.get_rotation_status("production-api-key")
        assert "days_until_rotation" in status
        assert status["worker"] is True
        assert [c["name"] for c in await rotation.list_rotation_configs()] == ["production-api-key"]

        # Audit
        trail = await audit.get_audit_trail(
            resource_name="production-api-key", action=AuditAction.READ, limit=100
        )
        assert len(trail) == 1
        summary = await audit.get_audit_summary(resource_name="production-api-key", days=30)
        assert summary["total_events"] >= 4
        threats = await audit.detect_suspicious_activity(
            resource_name="production-api-key", failure_threshold=5, time_window_minutes=30
        )
        assert threats["threats_detected"] == 0

        # Emergency revocation (break-glass)
        await secrets_manager.create_secret("compromised-api-key", "leaked-value")
        request = RevocationRequest(
            secret_name="compromised-api-key",
            reason=RevocationReason.SECURITY_INCIDENT,
            requested_by="security-admin",
            severity="critical",
            description="Key potentially compromised in data breach",
            notify_recipients=["security@example.com", "ops@example.com"],
            immediate=True,
        )
        result = await revoke.request_revocation(request)
        revocation_id = result["revocation_id"]
        status = await revoke.get_revocation_status(revocation_id)
        assert status["status"] == "COMPLETED"
        history = await revoke.get_revocation_history(secret_name="compromised-api-key", limit=50)
        assert [h["revocation_id"] for h in history] == [revocation_id]

        await secrets_manager.delete_secret("production-api-key", immediate=False)
        await rotation.stop_rotation_scheduler()
    finally:
        await reset_default_client()
    assert files_in(home) == []  # nothing written locally: no key, no database, no cache file
