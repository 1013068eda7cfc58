"""Versions opened once are reused only for the very row they came from (SQLite, PostgreSQL).

The stores keep the bundle they checked and decrypted for a row and serve it again while the
fetched row is identical. These tests warm that map with a read, then change the secret from a
second process's wiring (another ``Strongroom`` over the same database) or tamper with its row
directly, and check the next read sees the change exactly as a cold read would (on PostgreSQL,
the next read once the read window has passed: see test_recent_rows).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from helpers_raw import past_read_window
from strongroom import (
    DecryptionError,
    EmergencyRevoke,
    RevocationRequest,
    SecretDisabledError,
    SecretRevokedError,
    SecretsManager,
    Settings,
    Strongroom,
)
from strongroom.backends.opened import OpenedVersions
from strongroom.core.errors import SecretIsDeletedError
from strongroom.core.models import SecretBundle
from test_tamper import read_sealed, write_sealed

pytestmark = pytest.mark.stores("sqlite", "postgres")  # the stores that keep opened versions

NAME = "opened-dispatch-key"


def _bundle() -> SecretBundle:
    return object()  # type: ignore[return-value]  # identity is all the map looks at


# -- the map alone ------------------------------------------------------------------------------


def test_an_entry_serves_only_an_equal_row_and_only_until_its_ttl() -> None:
    now = [100.0]
    opened = OpenedVersions(ttl_seconds=30, max_entries=8, clock=lambda: now[0])
    bundle = _bundle()
    opened.put("k", None, ("row", 1), bundle)

    assert opened.get("k", None, ("row", 1)) is bundle
    assert opened.get("k", None, ("row", 2)) is None  # any changed column: opened again
    assert opened.get("k", "v1", ("row", 1)) is None  # another requested version
    now[0] = 129.9
    assert opened.get("k", None, ("row", 1)) is bundle
    now[0] = 130.0
    assert opened.get("k", None, ("row", 1)) is None


def test_drop_forgets_one_secret_and_the_map_stays_bounded() -> None:
    opened = OpenedVersions(ttl_seconds=30, max_entries=3)
    kept = _bundle()
    opened.put("a", None, 1, _bundle())
    opened.put("a", "v1", 1, _bundle())
    opened.put("b", None, 1, kept)
    opened.drop("a")
    assert len(opened) == 1
    assert opened.get("b", None, 1) is kept
    for index in range(10):
        opened.put(f"c{index}", None, 1, _bundle())
    assert len(opened) <= 3


def test_a_zero_ttl_keeps_nothing() -> None:
    opened = OpenedVersions(ttl_seconds=0)
    opened.put("k", None, 1, _bundle())
    assert len(opened) == 0


# -- on the stores, with a second process's wiring -----------------------------------------------


@pytest.fixture
async def other(store_settings: Settings) -> AsyncIterator[Strongroom]:
    """A second wiring over the same database and master key: another worker process."""
    instance = await Strongroom.open(store_settings)
    yield instance
    await instance.close()


async def _warm(manager: SecretsManager) -> SecretBundle:
    first = await manager.get_secret_bundle(NAME)
    again = await manager.get_secret_bundle(NAME)
    assert again is first  # served from the map: the row did not change
    return first


async def test_a_new_version_elsewhere_is_read_by_the_next_read(
    manager: SecretsManager, other: Strongroom, store_settings: Settings
) -> None:
    await manager.create_secret(NAME, "first")
    await _warm(manager)
    await SecretsManager(other).update_secret(NAME, "second")
    await past_read_window(store_settings)
    assert await manager.get_secret(NAME) == "second"


async def test_a_revocation_elsewhere_is_refused_by_the_next_read(
    manager: SecretsManager, other: Strongroom, store_settings: Settings
) -> None:
    created = await manager.create_secret(NAME, "to-be-revoked")
    await _warm(manager)
    pinned = await manager.get_secret_bundle(NAME, created["version"])
    assert await manager.get_secret_bundle(NAME, created["version"]) is pinned
    await EmergencyRevoke(other).request_revocation(
        RevocationRequest(NAME, "key_compromise", "alice", immediate=True)
    )
    await past_read_window(store_settings)
    with pytest.raises(SecretRevokedError):
        await manager.get_secret(NAME)
    with pytest.raises(SecretRevokedError):
        await manager.get_secret(NAME, created["version"])


async def test_a_disable_or_delete_elsewhere_is_refused_by_the_next_read(
    manager: SecretsManager, other: Strongroom, store_settings: Settings
) -> None:
    await manager.create_secret(NAME, "value")
    await _warm(manager)
    elsewhere = SecretsManager(other)
    await elsewhere.update_secret_properties(NAME, None, enabled=False)
    await past_read_window(store_settings)
    with pytest.raises(SecretDisabledError):
        await manager.get_secret(NAME)
    await elsewhere.update_secret_properties(NAME, None, enabled=True)
    await past_read_window(store_settings)
    assert await manager.get_secret(NAME) == "value"
    await elsewhere.delete_secret(NAME)
    await past_read_window(store_settings)
    with pytest.raises(SecretIsDeletedError):
        await manager.get_secret(NAME)


@pytest.mark.parametrize("where", [0, 14, -1])  # nonce, body, tag
async def test_a_tampered_row_after_a_warm_read_still_fails(
    manager: SecretsManager, store_settings: Settings, where: int
) -> None:
    value = f"OPENED-CANARY-{secrets.token_hex(8)}"
    await manager.create_secret(NAME, value)
    await _warm(manager)
    ciphertext, wrapped = await read_sealed(store_settings, NAME)
    flipped = bytearray(ciphertext)
    flipped[where] ^= 0x01
    await write_sealed(store_settings, NAME, bytes(flipped), wrapped)
    with pytest.raises(DecryptionError) as caught:
        await manager.get_secret(NAME)
    assert value not in str(caught.value)


async def test_a_row_copied_from_another_secret_after_a_warm_read_still_fails(
    manager: SecretsManager, store_settings: Settings
) -> None:
    await manager.create_secret(NAME, "mine")
    await manager.create_secret("opened-other", "theirs")
    await _warm(manager)
    await write_sealed(store_settings, NAME, *await read_sealed(store_settings, "opened-other"))
    with pytest.raises(DecryptionError):
        await manager.get_secret(NAME)
