"""SecretsManager's lifecycle on every store: create, read, version, delete, recover, purge.

Every test here runs on memory, SQLite and PostgreSQL (``store_settings`` is parametrized in
conftest), so the stores cannot drift apart.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest

from strongroom import (
    DeletedSecretConflictError,
    ManualClock,
    SecretAlreadyExistsError,
    SecretIsDeletedError,
    SecretNotDeletedError,
    SecretNotFoundError,
    SecretsManager,
    SecretType,
    ValidationError,
)

JSON = "application/json"


def token() -> str:
    return f"sv-{secrets.token_hex(12)}"


def contains(obj: Any, needle: str) -> bool:
    """Whether ``needle`` occurs in any key or value of a nested structure."""
    if isinstance(obj, dict):
        return any(contains(k, needle) or contains(v, needle) for k, v in obj.items())
    if isinstance(obj, list | tuple | set):
        return any(contains(item, needle) for item in obj)
    if isinstance(obj, bytes):
        return needle.encode() in obj
    return needle in str(obj)


# -- create, read, update, versions -----------------------------------------------------------


async def test_update_adds_a_current_version_and_keeps_the_old_one(
    manager: SecretsManager,
) -> None:
    first, second = token(), token()
    created = await manager.create_secret("db-password", first)
    assert created["name"] == "db-password"
    assert await manager.get_secret("db-password") == first

    updated = await manager.update_secret("db-password", second)
    assert updated["version"] != created["version"]
    assert updated["current"] is True
    assert await manager.get_secret("db-password") == second
    assert await manager.get_secret("db-password", version=created["version"]) == first
    assert await manager.get_secret("db-password", version=updated["version"]) == second
    props = await manager.get_secret_properties("db-password")
    assert props["version"] == updated["version"]


async def test_get_secret_versions_lists_newest_first_with_one_current(
    manager: SecretsManager, clock: ManualClock
) -> None:
    ids = [(await manager.create_secret("rotating", token()))["version"]]
    for _ in range(3):
        clock.advance(minutes=1)
        ids.append((await manager.update_secret("rotating", token()))["version"])

    versions = await manager.get_secret_versions("rotating")
    assert len(versions) == 4
    assert [v["version"] for v in versions] == list(reversed(ids))
    assert [v["current"] for v in versions] == [True, False, False, False]
    created = [v["created_at"] for v in versions]
    assert created == sorted(created, reverse=True)
    assert all(v["name"] == "rotating" for v in versions)


async def test_unknown_version_is_not_found(manager: SecretsManager) -> None:
    await manager.create_secret("one", token())
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("one", version="0" * 32)


async def test_list_secrets_gives_names_and_never_a_value(manager: SecretsManager) -> None:
    values = {"alpha": token(), "beta": token(), "gamma": token()}
    for name, value in values.items():
        await manager.create_secret(name, value, metadata={"team": "dispatch"})
    await manager.update_secret("beta", token())
    values["beta-old"] = values["beta"]

    listed = await manager.list_secrets()
    assert sorted(item["name"] for item in listed) == ["alpha", "beta", "gamma"]
    for value in values.values():
        assert not contains(listed, value)
    assert all("value" not in item for item in listed)


# -- delete, recover, purge -------------------------------------------------------------------


async def test_soft_delete_then_recover_brings_every_version_back(
    manager: SecretsManager, clock: ManualClock
) -> None:
    first, second = token(), token()
    v1 = (await manager.create_secret("fleet-key", first))["version"]
    await manager.update_secret("fleet-key", second)

    deleted = await manager.delete_secret("fleet-key")
    assert deleted["deleted"] is True
    assert deleted["purged"] is False
    with pytest.raises(SecretIsDeletedError):
        await manager.get_secret("fleet-key")
    assert issubclass(SecretIsDeletedError, SecretNotFoundError)
    with pytest.raises(DeletedSecretConflictError):
        await manager.create_secret("fleet-key", token())
    assert [s["name"] for s in await manager.list_secrets()] == []

    deleted_at = clock()
    (listed,) = await manager.list_deleted_secrets()
    assert listed["name"] == "fleet-key"
    assert listed["deleted_at"] == deleted_at
    assert listed["scheduled_purge_at"] == deleted_at + timedelta(days=90)
    assert listed["recoverable_days"] == 90
    assert not contains(listed, first)
    assert not contains(listed, second)

    clock.advance(days=30)
    await manager.recover_deleted_secret("fleet-key")
    assert await manager.get_secret("fleet-key") == second
    assert await manager.get_secret("fleet-key", version=v1) == first
    assert len(await manager.get_secret_versions("fleet-key")) == 2
    assert await manager.list_deleted_secrets() == []
    assert [s["name"] for s in await manager.list_secrets()] == ["fleet-key"]


async def test_update_of_a_deleted_secret_is_refused(manager: SecretsManager) -> None:
    await manager.create_secret("gone", token())
    await manager.delete_secret("gone")
    with pytest.raises(SecretIsDeletedError):
        await manager.update_secret("gone", token())


async def test_purge_of_a_deleted_secret_frees_the_name(manager: SecretsManager) -> None:
    old, new = token(), token()
    old_version = (await manager.create_secret("reusable", old))["version"]
    await manager.delete_secret("reusable")
    await manager.purge_deleted_secret("reusable")

    assert await manager.list_deleted_secrets() == []
    with pytest.raises(SecretNotFoundError):
        await manager.get_deleted_secret("reusable")
    with pytest.raises(SecretNotFoundError):
        await manager.recover_deleted_secret("reusable")

    await manager.create_secret("reusable", new)
    assert await manager.get_secret("reusable") == new
    assert len(await manager.get_secret_versions("reusable")) == 1
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("reusable", version=old_version)


async def test_purge_refuses_a_live_secret(manager: SecretsManager) -> None:
    value = token()
    await manager.create_secret("live", value)
    with pytest.raises(SecretNotDeletedError, match="is live, not deleted"):
        await manager.purge_deleted_secret("live")
    assert await manager.get_secret("live") == value


async def test_recover_and_get_deleted_say_a_live_secret_is_not_deleted(
    manager: SecretsManager,
) -> None:
    value = token()
    await manager.create_secret("still-live", value)
    with pytest.raises(SecretNotDeletedError, match="still-live"):
        await manager.recover_deleted_secret("still-live")
    with pytest.raises(SecretNotDeletedError):
        await manager.get_deleted_secret("still-live")
    assert await manager.get_secret("still-live") == value
    # A name that is neither live nor deleted stays "not found".
    with pytest.raises(SecretNotFoundError) as missing:
        await manager.recover_deleted_secret("never-there")
    assert not isinstance(missing.value, SecretNotDeletedError)


async def test_a_unique_version_prefix_names_its_version(manager: SecretsManager) -> None:
    first, second = token(), token()
    created = await manager.create_secret("by-prefix", first)
    await manager.update_secret("by-prefix", second)
    prefix = created["version"][:8]
    assert await manager.get_secret("by-prefix", version=prefix) == first
    props = await manager.get_secret_properties("by-prefix", version=created["version"][:12])
    assert props["version"] == created["version"]
    disabled = await manager.update_secret_properties("by-prefix", prefix, enabled=False)
    assert disabled["version"] == created["version"]
    assert disabled["enabled"] is False
    assert (await manager.get_secret_properties("by-prefix"))["enabled"] is True


async def test_a_version_prefix_shorter_than_eight_or_unknown_is_refused(
    manager: SecretsManager,
) -> None:
    created = await manager.create_secret("short-prefix", token())
    with pytest.raises(ValidationError, match="at least 8"):
        await manager.get_secret("short-prefix", version=created["version"][:7])
    unknown = "0" * 8 if not created["version"].startswith("0" * 8) else "f" * 8
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("short-prefix", version=unknown)


async def test_immediate_delete_purges_at_once(manager: SecretsManager) -> None:
    await manager.create_secret("burn", token())
    result = await manager.delete_secret("burn", immediate=True)
    assert result["purged"] is True

    assert await manager.list_deleted_secrets() == []
    with pytest.raises(SecretNotFoundError) as caught:
        await manager.get_secret("burn")
    assert not isinstance(caught.value, SecretIsDeletedError)
    fresh = token()
    await manager.create_secret("burn", fresh)
    assert await manager.get_secret("burn") == fresh


async def test_names_are_case_insensitive(manager: SecretsManager) -> None:
    value = token()
    await manager.create_secret("api-key", value)
    assert await manager.get_secret("API-KEY") == value
    assert await manager.get_secret("Api-Key") == value
    with pytest.raises(SecretAlreadyExistsError) as caught:
        await manager.create_secret("API-KEY", token())
    assert not isinstance(caught.value, DeletedSecretConflictError)

    newer = token()
    await manager.update_secret("API-key", newer)
    assert await manager.get_secret("api-key") == newer
    assert [s["name"] for s in await manager.list_secrets()] == ["api-key"]
    assert len(await manager.get_secret_versions("API-KEY")) == 2

    await manager.delete_secret("API-KEY")
    with pytest.raises(DeletedSecretConflictError):
        await manager.create_secret("Api-Key", token())
    await manager.recover_deleted_secret("aPI-kEY")
    assert await manager.get_secret("api-key") == newer


# -- the recovery window ----------------------------------------------------------------------


async def test_recovery_window_expiry_drops_it_from_the_deleted_list(
    manager: SecretsManager, clock: ManualClock
) -> None:
    await manager.create_secret("short-lived", token())
    await manager.delete_secret("short-lived")
    clock.advance(days=89)
    assert [d["name"] for d in await manager.list_deleted_secrets()] == ["short-lived"]

    clock.advance(days=2)
    assert await manager.list_deleted_secrets() == []
    fresh = token()
    await manager.create_secret("short-lived", fresh)
    assert await manager.get_secret("short-lived") == fresh


async def test_name_is_free_once_the_recovery_window_has_passed(
    manager: SecretsManager, clock: ManualClock
) -> None:
    """No one has to list deleted secrets first: past its purge date the name is free."""
    await manager.create_secret("lapsed", token())
    await manager.delete_secret("lapsed")
    clock.advance(days=91)
    fresh = token()
    await manager.create_secret("lapsed", fresh)
    assert await manager.get_secret("lapsed") == fresh


async def test_a_secret_past_its_recovery_window_cannot_be_recovered(
    manager: SecretsManager, clock: ManualClock
) -> None:
    """Past scheduled_purge_at the secret is gone: recovering must not resurrect it."""
    await manager.create_secret("lapsed", token())
    await manager.delete_secret("lapsed")
    clock.advance(days=91)
    with pytest.raises(SecretNotFoundError):
        await manager.get_deleted_secret("lapsed")
    with pytest.raises(SecretNotFoundError):
        await manager.recover_deleted_secret("lapsed")
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("lapsed")


async def test_recover_alone_refuses_a_secret_past_its_recovery_window(
    manager: SecretsManager, clock: ManualClock
) -> None:
    """Recover checks the window itself: nothing else is called first to purge the secret."""
    await manager.create_secret("lapsed-alone", token())
    await manager.delete_secret("lapsed-alone")
    clock.advance(days=91)
    with pytest.raises(SecretNotFoundError):
        await manager.recover_deleted_secret("lapsed-alone")
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("lapsed-alone")


async def test_recover_inside_the_recovery_window_brings_the_value_back(
    manager: SecretsManager, clock: ManualClock
) -> None:
    value = token()
    await manager.create_secret("nearly-lapsed", value)
    await manager.delete_secret("nearly-lapsed")
    clock.advance(days=89)
    await manager.recover_deleted_secret("nearly-lapsed")
    assert await manager.get_secret("nearly-lapsed") == value


# -- create and update rules ------------------------------------------------------------------


async def test_create_on_an_existing_name_changes_nothing(manager: SecretsManager) -> None:
    original = token()
    created = await manager.create_secret(
        "taken", original, SecretType.API_KEY, metadata={"owner": "ops"}
    )
    intruder = token()
    with pytest.raises(SecretAlreadyExistsError):
        await manager.create_secret("taken", intruder, metadata={"owner": "mallory"})

    assert await manager.get_secret("taken") == original
    versions = await manager.get_secret_versions("taken")
    assert [v["version"] for v in versions] == [created["version"]]
    assert versions[0]["metadata"] == {"owner": "ops"}
    assert versions[0]["secret_type"] == "api_key"


async def test_update_of_an_unknown_name_is_not_found(manager: SecretsManager) -> None:
    with pytest.raises(SecretNotFoundError):
        await manager.update_secret("nobody", token())
    assert await manager.list_secrets() == []
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret("nobody")


async def test_update_carries_over_type_and_metadata(manager: SecretsManager) -> None:
    await manager.create_secret(
        "carried", token(), SecretType.DATABASE_CREDENTIAL, metadata={"env": "prod", "db": "x"}
    )
    updated = await manager.update_secret("carried", token())
    assert updated["secret_type"] == "database_credential"
    assert updated["metadata"] == {"env": "prod", "db": "x"}
    props = await manager.get_secret_properties("carried")
    assert props["secret_type"] == "database_credential"
    assert props["metadata"] == {"env": "prod", "db": "x"}


async def test_update_replaces_metadata_and_type_when_given(manager: SecretsManager) -> None:
    first = await manager.create_secret(
        "replaced", token(), SecretType.API_KEY, metadata={"env": "prod", "old": "yes"}
    )
    await manager.update_secret(
        "replaced", token(), {"env": "staging"}, secret_type=SecretType.JWT_SECRET
    )
    props = await manager.get_secret_properties("replaced")
    assert props["metadata"] == {"env": "staging"}
    assert props["secret_type"] == "jwt_secret"
    old = await manager.get_secret_properties("replaced", version=first["version"])
    assert old["metadata"] == {"env": "prod", "old": "yes"}

    await manager.update_secret("replaced", token(), {})
    assert (await manager.get_secret_properties("replaced"))["metadata"] == {}


# -- JSON values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"username": "dispatch", "password": "p@ss", "port": 5432, "tls": True, "x": None},
        ["a", 1, 2.5, {"nested": ["ü", "🚒"]}, False],
    ],
    ids=["dict", "list"],
)
async def test_json_values_come_back_decoded(manager: SecretsManager, value: Any) -> None:
    created = await manager.create_secret("structured", value)
    assert created["content_type"] == JSON
    got = await manager.get_secret("structured")
    assert got == value
    assert type(got) is type(value)
    assert (await manager.get_secret_properties("structured"))["content_type"] == JSON


async def test_update_of_json_with_plain_text_gives_a_text_version(
    manager: SecretsManager,
) -> None:
    first = await manager.create_secret("mixed", {"k": "v"})
    plain = '{"looks": "like json"}'
    second = await manager.update_secret("mixed", plain)
    assert second["content_type"] != JSON
    assert await manager.get_secret("mixed") == plain
    assert await manager.get_secret("mixed", version=first["version"]) == {"k": "v"}

    third = await manager.update_secret("mixed", ["back", "to", "json"])
    assert third["content_type"] == JSON
    assert await manager.get_secret("mixed") == ["back", "to", "json"]


async def test_immediate_delete_of_a_soft_deleted_secret_purges_it(
    manager: SecretsManager,
) -> None:
    """Every store must agree: immediate=True removes the secret for good, deleted or not."""
    await manager.create_secret("parked", token())
    await manager.delete_secret("parked")
    result = await manager.delete_secret("parked", immediate=True)
    assert result["purged"] is True
    assert await manager.list_deleted_secrets() == []
    fresh = token()
    await manager.create_secret("parked", fresh)
    assert await manager.get_secret("parked") == fresh
