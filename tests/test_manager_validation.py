"""Bad input through SecretsManager on every store: a typed error, nothing stored, and never the
secret's value in the error."""

from __future__ import annotations

import pickle
import secrets
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from helpers_settings import LOCAL_STORES
from strongroom import (
    SecretNotFoundError,
    SecretsManager,
    SecretType,
    StrongroomError,
    ValidationError,
)

LIMIT = 25_000
JSON_CT = "application/json"


def token() -> str:
    return f"sv-{secrets.token_hex(12)}"


async def assert_nothing_stored(manager: SecretsManager, name: str = "refused") -> None:
    assert await manager.list_secrets() == []
    with pytest.raises(SecretNotFoundError):
        await manager.get_secret(name)


def assert_value_hidden(exc: BaseException, value: str) -> None:
    """Neither the error, its repr, nor its formatted traceback (with causes) shows the value."""
    assert value not in str(exc)
    assert value not in repr(exc)
    assert value not in "".join(traceback.format_exception(exc))


# -- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "a" * LIMIT,
        "€" * 8333 + "a",  # 3 bytes x 8333 + 1
        "🚒" * 6250,  # 4 bytes each
        "é" * 12_499 + "zz",  # 2 bytes x 12,499 + 2
    ],
    ids=["ascii", "euro", "emoji", "latin"],
)
async def test_value_of_exactly_the_limit_round_trips(manager: SecretsManager, value: str) -> None:
    assert len(value.encode("utf-8")) == LIMIT
    await manager.create_secret("big", value)
    assert await manager.get_secret("big") == value


@pytest.mark.parametrize(
    "value",
    [
        "🔑🚒🚓 keys",
        "密码是秘密",
        "كلمة السر",
        "שלום\u200f",
        "nul\x00inside",
        "\x00",
        "tab\tnewline\ncr\r",
        "combining e\u0301 and zwj 👩\u200d🚒",
        " leading and trailing ",
    ],
)
async def test_unicode_values_round_trip(manager: SecretsManager, value: str) -> None:
    await manager.create_secret("uni", value)
    assert await manager.get_secret("uni") == value
    await manager.update_secret("uni", value + value)
    assert await manager.get_secret("uni") == value + value


async def test_unicode_in_json_and_metadata_round_trips(manager: SecretsManager) -> None:
    value = {"密码": "🔑", "rtl": "كلمة", "nul": "a\x00b"}
    await manager.create_secret("uni-json", value, metadata={"équipe": "répartition 🚒"})
    assert await manager.get_secret("uni-json") == value
    props = await manager.get_secret_properties("uni-json")
    assert props["metadata"] == {"équipe": "répartition 🚒"}


@pytest.mark.parametrize(
    "value",
    ["a" * (LIMIT + 1), "🚒" * 6250 + "a", "€" * 8334],
    ids=["ascii", "emoji", "euro"],
)
async def test_value_over_the_limit_is_refused(manager: SecretsManager, value: str) -> None:
    assert len(value.encode("utf-8")) > LIMIT
    with pytest.raises(ValidationError) as caught:
        await manager.create_secret("refused", value)
    assert_value_hidden(caught.value, value)
    await assert_nothing_stored(manager)


async def test_oversized_json_is_refused(manager: SecretsManager) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("refused", {"blob": "x" * LIMIT})
    await assert_nothing_stored(manager)


async def test_oversized_update_adds_no_version(manager: SecretsManager) -> None:
    value = token()
    await manager.create_secret("kept", value)
    big = token() + "x" * LIMIT
    with pytest.raises(ValidationError) as caught:
        await manager.update_secret("kept", big)
    assert_value_hidden(caught.value, big)
    assert await manager.get_secret("kept") == value
    assert len(await manager.get_secret_versions("kept")) == 1


async def test_empty_value_is_refused(manager: SecretsManager) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("refused", "")
    await assert_nothing_stored(manager)


@pytest.mark.parametrize(
    "value",
    [12345, b"bytes-secret", None, 1.5, ("a", "b"), {"a", "b"}],
    # A set's repr follows the hash seed, which differs between test processes (-n).
    ids=lambda v: f"set{sorted(v)}" if isinstance(v, set) else repr(v),
)
async def test_value_of_the_wrong_type_is_refused(manager: SecretsManager, value: object) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("refused", value)  # type: ignore[arg-type]
    await assert_nothing_stored(manager)


@pytest.mark.parametrize(
    "value",
    [{"k": object()}, {"k": float("nan")}, ["x", float("inf")]],
    ids=["object", "nan", "inf"],
)
async def test_value_that_is_not_json_is_refused(manager: SecretsManager, value: Any) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("refused", value)
    await assert_nothing_stored(manager)


async def test_lone_surrogate_is_refused(manager: SecretsManager) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("refused", "bad\ud800text")
    await assert_nothing_stored(manager)


# -- names ------------------------------------------------------------------------------------

BAD_NAMES = [
    "",
    "x" * 128,
    "has space",
    "../x",
    "x'; DROP TABLE secrets;--",
    'a"b',
    "naïve",
    "a_b",
    "a.b",
    "trailing\n",
    "tab\t",
    "\uff46\uff55\uff4c\uff4c",  # fullwidth "full"
    None,
    42,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_bad_names_are_refused(manager: SecretsManager, name: Any) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret(name, token())
    assert await manager.list_secrets() == []
    for call in (manager.get_secret, manager.delete_secret, manager.get_secret_versions):
        with pytest.raises(ValidationError):
            await call(name)


async def test_names_of_one_and_127_characters_are_accepted(manager: SecretsManager) -> None:
    long_name, value = "n" * 126 + "7", token()
    await manager.create_secret(long_name, value)
    await manager.create_secret("x", "short")
    await manager.create_secret("0-Az-9", "mixed")
    assert await manager.get_secret(long_name) == value
    assert await manager.get_secret(long_name.upper()) == value
    names = sorted(s["name"] for s in await manager.list_secrets())
    assert names == sorted(["0-Az-9", long_name, "x"])


# -- metadata ---------------------------------------------------------------------------------


@pytest.mark.stores(*LOCAL_STORES)
async def test_fifteen_tags_are_accepted(manager: SecretsManager) -> None:
    tags = {f"k{i}": f"v{i}" for i in range(15)}
    await manager.create_secret("tagged", token(), metadata=tags)
    assert (await manager.get_secret_properties("tagged"))["metadata"] == tags


async def test_tags_of_256_characters_are_accepted(manager: SecretsManager) -> None:
    tags = {"k" * 256: "v" * 256, "empty": ""}
    await manager.create_secret("tagged", token(), metadata=tags)
    assert (await manager.get_secret_properties("tagged"))["metadata"] == tags


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(16)},
        {"k" * 257: "v"},
        {"k": "v" * 257},
        {"port": 5432},
        {"flag": True},
        {"none": None},
        {"list": ["a"]},
        {7: "seven"},
        {"": "empty key"},
        ["not", "a", "mapping"],
        "env=prod",
    ],
    ids=[
        "16-tags",
        "long-key",
        "long-value",
        "int",
        "bool",
        "none",
        "list",
        "int-key",
        "empty-key",
        "list-metadata",
        "str-metadata",
    ],
)
async def test_bad_metadata_is_refused(manager: SecretsManager, metadata: Any) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("refused", token(), metadata=metadata)
    await assert_nothing_stored(manager)


async def test_bad_metadata_on_update_adds_no_version(manager: SecretsManager) -> None:
    value = token()
    await manager.create_secret("kept", value, metadata={"a": "b"})
    with pytest.raises(ValidationError):
        await manager.update_secret("kept", token(), {"k": "v" * 257})
    assert await manager.get_secret("kept") == value
    versions = await manager.get_secret_versions("kept")
    assert len(versions) == 1
    assert versions[0]["metadata"] == {"a": "b"}


# -- secret type ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (SecretType.API_KEY, "api_key"),
        ("api_key", "api_key"),
        ("API_KEY", "api_key"),
        ("Database_Credential", "database_credential"),
        (SecretType.CERTIFICATE, "certificate"),
    ],
)
async def test_secret_type_accepts_enum_and_string(
    manager: SecretsManager, given: Any, stored: str
) -> None:
    created = await manager.create_secret("typed", token(), given)
    assert created["secret_type"] == stored
    assert (await manager.get_secret_properties("typed"))["secret_type"] == stored


@pytest.mark.parametrize("given", ["password", "api-key", "", None, 3])
async def test_unknown_secret_type_is_refused(manager: SecretsManager, given: Any) -> None:
    with pytest.raises(ValidationError):
        await manager.create_secret("refused", token(), given)
    await assert_nothing_stored(manager)


# -- no value in any error --------------------------------------------------------------------


async def test_errors_never_show_the_value(manager: SecretsManager) -> None:
    marker = token()
    await manager.create_secret("exists", "something else")
    attempts: list[Callable[[], Awaitable[Any]]] = [
        lambda: manager.create_secret("refused", marker + "x" * LIMIT),
        lambda: manager.create_secret("refused", f"not json {marker}", content_type=JSON_CT),
        lambda: manager.create_secret("refused", f"{marker}\ud800"),
        lambda: manager.create_secret("refused", {marker: object()}),
        lambda: manager.create_secret("refused", {marker: float("nan")}),
        lambda: manager.create_secret("refused", marker, content_type="bad\ncontent"),
        lambda: manager.create_secret("refused", marker, "no-such-type"),
        lambda: manager.create_secret("refused", marker, expires_in_days=0),
        lambda: manager.create_secret("refused", marker, metadata={"k": 1}),  # type: ignore[dict-item]
        lambda: manager.create_secret("exists", marker),
        lambda: manager.update_secret("missing", marker),
        lambda: manager.update_secret("exists", marker + "x" * LIMIT),
        lambda: manager.update_secret("exists", f"{marker}", content_type=JSON_CT),
    ]
    for attempt in attempts:
        with pytest.raises(StrongroomError) as caught:
            await attempt()
        assert_value_hidden(caught.value, marker)
    assert [s["name"] for s in await manager.list_secrets()] == ["exists"]
    assert await manager.get_secret("exists") == "something else"


# -- SecretValue ------------------------------------------------------------------------------


async def test_secret_value_hides_its_value(manager: SecretsManager) -> None:
    value = token()
    await manager.create_secret("opaque", value)
    bundle = await manager.get_secret_bundle("opaque")
    shown = [repr(bundle.value), str(bundle.value), f"{bundle.value}", repr(bundle)]
    for text in shown:
        assert value not in text
    assert "opaque" in repr(bundle.value)
    assert bundle.properties.version in repr(bundle.value)
    assert str(bundle.value) == repr(bundle.value)
    assert bundle.value.reveal() == value

    with pytest.raises(TypeError):
        pickle.dumps(bundle.value)
    with pytest.raises(TypeError):
        pickle.dumps(bundle)
