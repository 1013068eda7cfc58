"""When a secret may be read (expiry, not-before, enabled) and changing its properties, on every
store. Time moves only through the ManualClock the app uses."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from helpers_settings import LOCAL_STORES
from strongroom import (
    ManualClock,
    SecretDisabledError,
    SecretExpiredError,
    SecretNotFoundError,
    SecretNotReadableError,
    SecretNotYetValidError,
    SecretsManager,
    ValidationError,
)


def token() -> str:
    return f"sv-{secrets.token_hex(12)}"


async def assert_nothing_stored(manager: SecretsManager, name: str) -> None:
    assert await manager.list_secrets() == []
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret(name)


# -- expiry -----------------------------------------------------------------------------------


async def test_secret_expires_after_its_days(manager: SecretsManager, clock: ManualClock) -> None:
    value = token()
    created = await manager.create_secret("expiring", value, expires_in_days=1)
    assert created["expires_at"] == clock() + timedelta(days=1)
    assert await manager.get_secret("expiring") == value

    clock.advance(hours=23, minutes=59)
    assert await manager.get_secret("expiring") == value

    clock.advance(minutes=1, seconds=1)
    with pytest.raises(SecretExpiredError) as caught:
        await manager.get_secret("expiring")
    assert isinstance(caught.value, SecretNotReadableError)
    assert value not in str(caught.value)
    with pytest.raises(SecretExpiredError):
        await manager.get_secret_bundle("expiring")

    props = await manager.get_secret_properties("expiring")
    assert props["name"] == "expiring"
    assert props["expires_at"] == created["expires_at"]
    assert [s["name"] for s in await manager.list_secrets()] == ["expiring"]


async def test_an_expired_secret_is_readable_again_after_an_update(
    manager: SecretsManager, clock: ManualClock
) -> None:
    old = await manager.create_secret("renewed", token(), expires_in_days=1)
    clock.advance(days=2)
    fresh = token()
    await manager.update_secret("renewed", fresh)
    assert await manager.get_secret("renewed") == fresh
    with pytest.raises(SecretExpiredError):
        await manager.get_secret("renewed", version=old["version"])


@pytest.mark.parametrize("days", [0, -1, 1.5, True, "1"])
async def test_bad_expires_in_days_is_refused(manager: SecretsManager, days: object) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("bad-expiry", token(), expires_in_days=days)  # type: ignore[arg-type]
    await assert_nothing_stored(manager, "bad-expiry")


async def test_bad_expires_in_days_on_update_adds_no_version(manager: SecretsManager) -> None:
    value = token()
    await manager.create_secret("keep", value)
    with pytest.raises(ValidationError):
        await manager.update_secret("keep", token(), expires_in_days=0)
    assert await manager.get_secret("keep") == value
    assert len(await manager.get_secret_versions("keep")) == 1


# -- not before -------------------------------------------------------------------------------


async def test_not_before_blocks_reads_until_the_clock_passes_it(
    manager: SecretsManager, clock: ManualClock
) -> None:
    value = token()
    start = clock() + timedelta(hours=2)
    created = await manager.create_secret("future", value, not_before=start)
    assert created["not_before"] == start
    with pytest.raises(SecretNotYetValidError) as caught:
        await manager.get_secret("future")
    assert value not in str(caught.value)

    clock.advance(hours=1, minutes=59)
    with pytest.raises(SecretNotYetValidError):
        await manager.get_secret("future")
    assert (await manager.get_secret_properties("future"))["not_before"] == start

    clock.advance(minutes=1, seconds=1)
    assert await manager.get_secret("future") == value


async def test_naive_not_before_is_refused(manager: SecretsManager) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("naive", token(), not_before=datetime(2030, 1, 1))  # noqa: DTZ001
    await assert_nothing_stored(manager, "naive")


# -- enabled ----------------------------------------------------------------------------------


async def test_disabling_blocks_reads_and_enabling_restores_them(
    manager: SecretsManager,
) -> None:
    value = token()
    await manager.create_secret("switch", value)
    props = await manager.update_secret_properties("switch", enabled=False)
    assert props["enabled"] is False
    with pytest.raises(SecretDisabledError) as caught:
        await manager.get_secret("switch")
    assert value not in str(caught.value)
    assert (await manager.get_secret_properties("switch"))["enabled"] is False

    await manager.update_secret_properties("switch", enabled=True)
    assert await manager.get_secret("switch") == value
    assert (await manager.get_secret_properties("switch"))["enabled"] is True


async def test_disabling_an_old_version_affects_only_that_version(
    manager: SecretsManager,
) -> None:
    first, second = token(), token()
    v1 = (await manager.create_secret("versioned", first))["version"]
    v2 = (await manager.update_secret("versioned", second))["version"]

    await manager.update_secret_properties("versioned", v1, enabled=False)
    with pytest.raises(SecretDisabledError):
        await manager.get_secret("versioned", version=v1)
    assert await manager.get_secret("versioned") == second
    assert await manager.get_secret("versioned", version=v2) == second
    enabled = {v["version"]: v["enabled"] for v in await manager.get_secret_versions("versioned")}
    assert enabled == {v1: False, v2: True}


async def test_enabled_must_be_a_bool(manager: SecretsManager) -> None:
    value = token()
    await manager.create_secret("strict", value)
    with pytest.raises(ValidationError):
        await manager.update_secret_properties("strict", enabled=0)  # type: ignore[arg-type]
    assert await manager.get_secret("strict") == value


# -- update_secret_properties -----------------------------------------------------------------


@pytest.mark.stores(*LOCAL_STORES)
async def test_properties_update_changes_only_the_fields_given(
    manager: SecretsManager, clock: ManualClock
) -> None:
    value = token()
    created = await manager.create_secret(
        "props", value, "api_key", metadata={"env": "prod"}, expires_in_days=30
    )

    new_expiry = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    clock.advance(minutes=5)
    after_expiry = await manager.update_secret_properties("props", expires_at=new_expiry)
    assert after_expiry["expires_at"] == new_expiry
    assert after_expiry["metadata"] == {"env": "prod"}
    assert after_expiry["enabled"] is True
    assert after_expiry["updated_at"] == clock()

    await manager.update_secret_properties("props", metadata={"env": "dr", "owner": "sec"})
    stored = await manager.get_secret_properties("props")
    assert stored["metadata"] == {"env": "dr", "owner": "sec"}
    assert stored["expires_at"] == new_expiry
    assert stored["enabled"] is True
    assert stored["secret_type"] == "api_key"
    assert stored["version"] == created["version"]
    assert stored["created_at"] == created["created_at"]
    assert stored["content_type"] == created["content_type"]
    assert len(await manager.get_secret_versions("props")) == 1
    assert await manager.get_secret("props") == value

    await manager.update_secret_properties("props", expires_at=None)
    assert (await manager.get_secret_properties("props"))["expires_at"] is None
    assert (await manager.get_secret_properties("props"))["metadata"] == {
        "env": "dr",
        "owner": "sec",
    }


async def test_properties_update_can_expire_a_secret(
    manager: SecretsManager, clock: ManualClock
) -> None:
    await manager.create_secret("cut-off", token())
    await manager.update_secret_properties("cut-off", expires_at=clock() + timedelta(hours=1))
    clock.advance(hours=1)
    with pytest.raises(SecretExpiredError):
        await manager.get_secret("cut-off")


async def test_properties_update_refuses_bad_input_and_changes_nothing(
    manager: SecretsManager,
) -> None:
    created = await manager.create_secret("guarded", token(), metadata={"a": "b"})
    with pytest.raises(ValidationError):
        await manager.update_secret_properties("guarded", metadata={str(i): "x" for i in range(16)})
    with pytest.raises(ValidationError):
        await manager.update_secret_properties("guarded", expires_at=datetime(2030, 1, 1))  # noqa: DTZ001
    with pytest.raises(SecretNotFoundError):
        await manager.update_secret_properties("nobody", enabled=False)
    stored = await manager.get_secret_properties("guarded")
    assert stored["metadata"] == {"a": "b"}
    assert stored["expires_at"] is None
    assert stored["updated_at"] == created["updated_at"]
