"""Concurrent new versions of one secret are committed in batches (SQLite, PostgreSQL): each
lands with its value, and a batch sealed under a keyring version that a key rotation (here,
another process's) retired meanwhile is sealed again, never half written."""

from __future__ import annotations

import asyncio

import pytest

from strongroom import SecretsManager, Settings, Strongroom

pytestmark = pytest.mark.stores("sqlite", "postgres")

NAME = "batched-dispatch-key"


async def test_a_batch_sealed_under_a_retired_keyring_version_is_sealed_again(
    app: Strongroom, store_settings: Settings
) -> None:
    ours = SecretsManager(app)
    await ours.create_secret(NAME, "v0")
    async with await Strongroom.open(store_settings) as other:
        await SecretsManager(other).rotate_master_key()  # retires the keyring version we hold
    values = [f"v{i}" for i in range(1, 9)]
    written = await asyncio.gather(*(ours.update_secret(NAME, value) for value in values))
    async with await Strongroom.open(store_settings) as reader:
        check = SecretsManager(reader)
        for props, value in zip(written, values, strict=True):
            assert await check.get_secret(NAME, props["version"]) == value
        versions = await check.get_secret_versions(NAME)
    assert len(versions) == 1 + len(values)
    assert await ours.get_secret(NAME) in values


async def test_a_batch_of_versions_lands_in_order_with_every_value(app: Strongroom) -> None:
    manager = SecretsManager(app)
    await manager.create_secret(NAME, "v0")
    values = [f"v{i}" for i in range(1, 21)]
    written = await asyncio.gather(*(manager.update_secret(NAME, value) for value in values))
    listed = await manager.get_secret_versions(NAME)
    assert {p["version"] for p in written} <= {p["version"] for p in listed}
    for props, value in zip(written, values, strict=True):
        assert await manager.get_secret(NAME, props["version"]) == value
    newest = listed[0]["version"]
    assert (
        await manager.get_secret(NAME)
        == dict(zip([p["version"] for p in written], values, strict=True))[newest]
    )
