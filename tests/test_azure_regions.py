"""Azure Key Vault in several regions: reads fail over (unavailable or throttled), writes reach
every vault through the durable outbox (none lost while a vault is down), a vault that has not
caught up never serves a secret, and reconcile reports and repairs drift.

The vaults are strongroom's own Key Vault-compatible endpoints over HTTPS (helpers_regions),
reached through the official SDK; one is stopped mid-run and started again.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from helpers_regions import Regions, regions
from strongroom import SecretsManager, Strongroom
from strongroom.backends.azure_regions import RegionalVaults
from strongroom.core.errors import (
    SecretRevokedError,
    StoreUnavailableError,
    ValidationError,
)
from strongroom.services.secrets.regions import reconcile_vaults, regional_vaults, vault_health

pytestmark = pytest.mark.slow

VALUE = "regional-canary-value-51c2"


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[Regions]:
    async with regions(tmp_path / "vaults") as running:
        yield running


async def _caught_up(store: RegionalVaults, *, only: str | None = None) -> None:
    """Wait until the outbox holds nothing for any secondary (or for the one at ``only``)."""
    deadline = time.monotonic() + 30
    while any(h.backlog for h in await store.health() if only in (None, h.url)):
        assert time.monotonic() < deadline, await store.health()
        await asyncio.sleep(0.05)


async def _views(store: RegionalVaults, name: str) -> list[list[tuple[object, ...]]]:
    """Each vault's versions of ``name`` as callers see them (ids, state, current, tags)."""
    return [
        [(p.version, p.enabled, p.current, p.revoked_at is not None, p.tags)
         for p in await vault.list_versions(name)]
        for vault in store.vaults
    ]  # fmt: skip


async def test_writes_reach_every_vault_with_the_primarys_version_ids(
    three: Regions, tmp_path: Path
) -> None:
    async with await Strongroom.open(three.settings(tmp_path / "app")) as app:
        manager, store = SecretsManager(app), regional_vaults(app)
        await manager.create_secret("fleet-db", VALUE, metadata={"team": "dispatch"})
        await manager.update_secret("fleet-db", VALUE + "-2")
        await manager.update_secret("fleet-db", VALUE + "-3")
        await manager.create_secret("radio-key", "r1")
        await _caught_up(store)
        await manager.delete_secret("radio-key")
        await _caught_up(store)
        views = await _views(store, "fleet-db")
        assert len(views[0]) == 3
        assert views[0] == views[1] == views[2]
        for vault in store.vaults:  # each vault holds the current value under the same id
            bundle = await vault.get_version("fleet-db")
            assert bundle.value.reveal_bytes() == (VALUE + "-3").encode()
            assert bundle.properties.version == views[0][0][0]
            old = await vault.get_version("fleet-db", views[0][2][0])
            assert old.value.reveal_bytes() == VALUE.encode()
            assert (await vault.get_deleted("radio-key")).properties.name == "radio-key"
        assert await reconcile_vaults(app, repair=False) == []


async def test_reads_fail_over_when_the_primary_stops_and_writes_are_refused(
    three: Regions, tmp_path: Path
) -> None:
    async with await Strongroom.open(three.settings(tmp_path / "app")) as app:
        manager, store = SecretsManager(app), regional_vaults(app)
        await manager.create_secret("fleet-db", VALUE)
        await _caught_up(store)
        version = (await manager.get_secret_properties("fleet-db"))["version"]
        await three.vaults[0].stop()
        assert await manager.get_secret("fleet-db") == VALUE  # from the first secondary
        assert (await manager.get_secret_properties("fleet-db"))["version"] == version
        health = {h.url: h for h in await store.health()}
        assert not health[three.vaults[0].url].available
        with pytest.raises(StoreUnavailableError) as refused:
            await manager.update_secret("fleet-db", "written-while-primary-is-down")
        assert "written-while-primary-is-down" not in str(refused.value)
        await three.vaults[0].start()
        deadline = time.monotonic() + 30
        while True:  # writes wait out the primary's cool-down (2 s here), then go through
            try:
                await manager.update_secret("fleet-db", VALUE + "-after")
                break
            except StoreUnavailableError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        assert await manager.get_secret("fleet-db") == VALUE + "-after"


async def test_a_secondary_down_mid_run_loses_no_write(three: Regions, tmp_path: Path) -> None:
    async with await Strongroom.open(three.settings(tmp_path / "app")) as app:
        manager, store = SecretsManager(app), regional_vaults(app)
        for i in range(5):
            await manager.create_secret(f"unit-{i}", f"{VALUE}-{i}")
        await three.vaults[2].stop()  # mid-run
        for i in range(5, 15):
            await manager.create_secret(f"unit-{i}", f"{VALUE}-{i}")
        await manager.update_secret("unit-0", "changed-while-down")
        await manager.delete_secret("unit-1")
        await store.revoke_all("unit-2", datetime.now(UTC))
        await _caught_up(store, only=three.vaults[1].url)
        backlog = {h.url: h.backlog for h in await store.health()}
        assert 13 <= backlog[three.vaults[2].url] <= 15  # each name once, however often written
        await three.vaults[2].start()
        await _caught_up(store)
        assert await reconcile_vaults(app, repair=False) == []
        late = store.vaults[2]
        for i in range(3, 15):
            assert (
                await late.get_version(f"unit-{i}")
            ).value.reveal_bytes() == f"{VALUE}-{i}".encode()
        assert (await late.get_version("unit-0")).value.reveal_bytes() == b"changed-while-down"
        with pytest.raises(SecretRevokedError):
            await late.get_version("unit-2")


async def test_a_secondary_that_has_not_caught_up_never_serves_a_revoked_secret(
    three: Regions, tmp_path: Path
) -> None:
    async with await Strongroom.open(three.settings(tmp_path / "app")) as app:
        manager, store = SecretsManager(app), regional_vaults(app)
        await manager.create_secret("fleet-db", VALUE)
        await _caught_up(store)
        for vault in three.vaults[1:]:
            await vault.stop()
        await store.revoke_all("fleet-db", datetime.now(UTC))  # the secondaries miss it
        await three.vaults[0].stop()
        for vault in three.vaults[1:]:
            await vault.start()
        with pytest.raises(StoreUnavailableError) as refused:
            await manager.get_secret("fleet-db")  # the stale copies hold the value: refused
        assert VALUE not in str(refused.value)
        await three.vaults[0].start()
        await _caught_up(store)
        await three.vaults[0].stop()
        with pytest.raises(SecretRevokedError):
            await manager.get_secret("fleet-db")  # from a secondary, which knows now


async def test_a_throttling_primary_sends_reads_to_a_secondary(tmp_path: Path) -> None:
    tight = {"rate_limit_per_second": 0.1, "rate_limit_burst": 4}
    async with (
        regions(tmp_path / "vaults", 2, primary_changes=tight) as two,
        await Strongroom.open(two.settings(tmp_path / "app")) as app,
    ):
        manager, store = SecretsManager(app), regional_vaults(app)
        await manager.create_secret("fleet-db", VALUE)
        await _caught_up(store)
        for _ in range(6):  # the primary's burst runs out; every read still succeeds
            assert await manager.get_secret("fleet-db") == VALUE
        health = {h.url: h for h in await store.health()}
        assert not health[two.vaults[0].url].available


async def test_reconcile_reports_and_repairs_drift(three: Regions, tmp_path: Path) -> None:
    async with await Strongroom.open(three.settings(tmp_path / "app")) as app:
        manager, store = SecretsManager(app), regional_vaults(app)
        await manager.create_secret("fleet-db", VALUE)
        await manager.create_secret("radio-key", "r1")
        await _caught_up(store)
        secondary = store.secondaries[0]
        await secondary.client.set_secret("stray", "written-to-the-secondary-only")
        await secondary.client.delete_secret("radio-key")
        native = (await secondary.client.get_secret("fleet-db")).properties.version
        await secondary.client.update_secret_properties("fleet-db", native, enabled=False)
        drift = await reconcile_vaults(app, repair=False)
        found = {(d["vault"], d["name"]) for d in drift}
        url = secondary.vault_url
        assert found == {(url, "fleet-db"), (url, "radio-key"), (url, "stray")}
        assert "written-to-the-secondary-only" not in repr(drift)
        assert len(await reconcile_vaults(app)) == 3
        assert await reconcile_vaults(app, repair=False) == []
        assert (await secondary.get_version("radio-key")).value.reveal_bytes() == b"r1"
        assert (await secondary.get_version("fleet-db")).value.reveal_bytes() == VALUE.encode()
        assert "stray" not in {p.name for p in await secondary.list_secrets()}


async def test_metadata_is_limited_and_strongroom_tags_are_refused(
    three: Regions, tmp_path: Path
) -> None:
    async with await Strongroom.open(three.settings(tmp_path / "app")) as app:
        manager = SecretsManager(app)
        with pytest.raises(ValidationError, match="at most 13"):
            await manager.create_secret("many", VALUE, metadata={f"k{i}": "v" for i in range(14)})
        with pytest.raises(ValidationError, match="strongroom's own"):
            await manager.create_secret(
                "forged", VALUE, metadata={"strongroom-origin-version": "a" * 32}
            )
        assert await manager.list_secrets() == []
        health = await vault_health(app)
        assert [h["role"] for h in health] == ["primary", "secondary", "secondary"]
        assert all(h["backlog"] == 0 for h in health)


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "strongroom.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_the_cli_shows_the_vaults_and_reconciles_them(three: Regions, tmp_path: Path) -> None:
    home = tmp_path / "app"
    async with await Strongroom.open(three.settings(home)) as app:
        await SecretsManager(app).create_secret("fleet-db", VALUE)
        await _caught_up(regional_vaults(app))
    env = {**os.environ, **three.environment(home), "LOG_LEVEL": "ERROR"}
    await three.vaults[2].app.store.delete(
        "fleet-db", deleted_at=datetime.now(UTC), purge_at=datetime.now(UTC)
    )  # drift made behind strongroom's back, in the third vault's own store
    code, out = await _cli(env, "vaults", "status", "--json")
    assert code == 0, out
    assert [v["role"] for v in json.loads(out)] == ["primary", "secondary", "secondary"]
    code, out = await _cli(env, "vaults", "reconcile", "--check", "--json")
    assert code == 1, out
    report = json.loads(out)
    assert report["repaired"] is False
    assert [(d["vault"], d["name"]) for d in report["drift"]] == [(three.vaults[2].url, "fleet-db")]
    code, out = await _cli(env, "vaults", "reconcile")
    assert code == 0, out
    assert "1 secret names with drift repaired" in out
    code, out = await _cli(env, "vaults", "reconcile", "--check")
    assert (code, VALUE in out) == (0, False), out
