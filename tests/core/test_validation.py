"""Input rules (pure functions): what is accepted, what is refused, and how."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from strongroom.core.errors import ValidationError
from strongroom.core.models import JSON_CONTENT_TYPE, SecretType
from strongroom.core.validation import (
    MAX_VALUE_BYTES,
    encode_value,
    expiry_from_days,
    validate_aware,
    validate_name,
    validate_secret_type,
    validate_tags,
    validate_version,
)


@pytest.mark.parametrize("name", ["a", "A-1", "x" * 127, "production-fleet-api-key"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 128,
        "has space",
        "../x",
        "a_b",
        "a.b",
        "x'; DROP TABLE secrets;--",
        "naïve",
        None,
        7,
    ],
)
def test_invalid_names(name: object) -> None:
    with pytest.raises(ValidationError, match="invalid secret name"):
        validate_name(name)


def test_versions_are_32_lowercase_hex() -> None:
    assert validate_version("a" * 32)
    for bad in ["A" * 32, "a" * 31, "../" + "a" * 29]:
        with pytest.raises(ValidationError):
            validate_version(bad)


def test_text_and_json_values() -> None:
    assert encode_value("héllo", None) == ("héllo".encode(), None)
    data, ctype = encode_value({"user": "u", "n": [1, 2]}, None)
    assert ctype == JSON_CONTENT_TYPE
    assert data == b'{"user":"u","n":[1,2]}'


def test_value_size_limit_is_in_utf8_bytes() -> None:
    assert len(encode_value("é" * (MAX_VALUE_BYTES // 2), None)[0]) == MAX_VALUE_BYTES
    with pytest.raises(ValidationError, match="25001 bytes") as caught:
        encode_value("é" * (MAX_VALUE_BYTES // 2) + "x", None)
    assert "é" not in str(caught.value)


@pytest.mark.parametrize("value", ["", b"bytes", 12, None, {1: object()}])
def test_refused_values(value: object) -> None:
    with pytest.raises(ValidationError):
        encode_value(value, None)


def test_json_content_type_requires_json_text() -> None:
    assert encode_value('{"a": 1}', JSON_CONTENT_TYPE)[1] == JSON_CONTENT_TYPE
    with pytest.raises(ValidationError, match="not JSON") as caught:
        encode_value("s3cr3t-not-json", JSON_CONTENT_TYPE)
    assert "s3cr3t" not in str(caught.value)


def test_tags_limits() -> None:
    assert validate_tags({f"k{i}": "v" for i in range(15)})
    with pytest.raises(ValidationError, match="at most 15"):
        validate_tags({f"k{i}": "v" for i in range(16)})
    with pytest.raises(ValidationError):
        validate_tags({"k" * 257: "v"})
    with pytest.raises(ValidationError):
        validate_tags({"k": "v" * 257})
    with pytest.raises(ValidationError):
        validate_tags({"k": 3})
    assert validate_tags(None) == {}


def test_secret_types() -> None:
    assert validate_secret_type("API_KEY") is SecretType.API_KEY
    assert validate_secret_type(SecretType.JWT_SECRET) is SecretType.JWT_SECRET
    with pytest.raises(ValidationError, match="unknown secret type"):
        validate_secret_type("banana")


def test_expiry_days() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert expiry_from_days(90, now) == now + timedelta(days=90)
    assert expiry_from_days(None, now) is None
    for bad in [0, -1, 1.5, True, "3", 36_501]:
        with pytest.raises(ValidationError):
            expiry_from_days(bad, now)


def test_datetimes_must_be_aware_and_come_back_in_utc() -> None:
    local = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert validate_aware(local, "x") == datetime(2026, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(ValidationError, match="timezone-aware"):
        validate_aware(datetime(2026, 1, 1), "not_before")  # noqa: DTZ001
