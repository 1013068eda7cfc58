"""Input rules (pure functions): what is accepted, what is refused, and how."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest

from strongroom.core.errors import ValidationError
from strongroom.core.models import JSON_CONTENT_TYPE, SecretType
from strongroom.core.validation import (
    MAX_CONTENT_TYPE_LENGTH,
    MAX_EXPIRES_IN_DAYS,
    MAX_TIME,
    MAX_VALUE_BYTES,
    MIN_TIME,
    bad_text,
    encode_value,
    expiry_from_days,
    validate_aware,
    validate_content_type,
    validate_name,
    validate_secret_type,
    validate_tags,
    validate_text,
    validate_version,
    validate_version_ref,
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


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-12))),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
        datetime(9999, 12, 31, 0, 0, 1, tzinfo=UTC),
    ],
)
def test_dates_outside_the_supported_range_name_the_field(when: datetime) -> None:
    with pytest.raises(ValidationError, match="expires_at must lie between"):
        validate_aware(when, "expires_at")


def test_dates_at_the_ends_of_the_range_are_kept_in_utc() -> None:
    assert validate_aware(MIN_TIME, "x") == MIN_TIME
    plus_two = timezone(timedelta(hours=2))
    assert validate_aware(datetime(9999, 12, 31, 2, tzinfo=plus_two), "x") == MAX_TIME


@pytest.mark.parametrize("text", ["a\x00b", "lone \ud800", "\udfff"])
def test_free_text_with_nul_or_a_lone_surrogate_is_refused(text: str) -> None:
    assert bad_text(text)
    with pytest.raises(ValidationError, match="description must be valid Unicode"):
        validate_text(text, "description", 100)
    with pytest.raises(ValidationError, match="without NUL"):
        validate_tags({"k": text})
    with pytest.raises(ValidationError, match="without NUL"):
        validate_tags({text: "v"})


def test_free_text_keeps_any_other_unicode() -> None:
    text = "naïve 🚨 \u2028 dispatch"
    assert not bad_text(text)
    assert validate_text(text, "description", 100) == text
    with pytest.raises(ValidationError, match="at most 3 characters"):
        validate_text("four", "description", 3)


# -- boundaries and shapes, one rule at a time -------------------------------------------------


def test_json_values_keep_non_ascii_characters_as_they_are() -> None:
    data, content_type = encode_value({"city": "Zürich"}, None)
    assert data == '{"city":"Zürich"}'.encode()
    assert content_type == JSON_CONTENT_TYPE


@pytest.mark.parametrize("days", [1, MAX_EXPIRES_IN_DAYS])
def test_expiry_days_at_both_ends_are_accepted(days: int) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert expiry_from_days(days, now) == now + timedelta(days=days)


class _NoOffset(tzinfo):
    """A time zone that does not know its offset: as good as none."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None


@pytest.mark.parametrize("when", ["2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=_NoOffset())])
def test_a_date_that_is_not_an_aware_datetime_is_refused(when: object) -> None:
    with pytest.raises(ValidationError, match="expires_at must be a timezone-aware datetime"):
        validate_aware(when, "expires_at")


def test_an_aware_datetime_comes_back_in_utc_itself() -> None:
    east = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    kept = validate_aware(east, "not_before")
    assert kept is not None
    assert kept.tzinfo is UTC
    assert kept == datetime(2030, 1, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("content_type", ["", 5, "x" * (MAX_CONTENT_TYPE_LENGTH + 1), "a\nb"])
def test_bad_content_types_are_refused(content_type: object) -> None:
    with pytest.raises(ValidationError, match="content type must be printable text"):
        validate_content_type(content_type)


def test_the_longest_content_type_is_accepted() -> None:
    longest = "x" * MAX_CONTENT_TYPE_LENGTH
    assert validate_content_type(longest) == longest


def test_an_unknown_secret_type_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as refused:
        validate_secret_type("telepathy")
    assert "expected one of " + ", ".join(t.value for t in SecretType) in str(refused.value)


def test_free_text_at_its_limit_is_accepted() -> None:
    assert validate_text("r" * 100, "a reason", 100) == "r" * 100
    with pytest.raises(ValidationError, match="a reason must be text of at most 100"):
        validate_text("r" * 101, "a reason", 100)


@pytest.mark.parametrize("ref", ["0123abcd", "0123456789abcdef0123456789abcdef"])
def test_version_references_are_8_to_32_lowercase_hex(ref: str) -> None:
    assert validate_version_ref(ref) == ref


@pytest.mark.parametrize(
    "ref", ["0123abc", "0123456789abcdef0123456789abcdef0", "0123ABCD", 12345678]
)
def test_bad_version_references_are_refused(ref: object) -> None:
    with pytest.raises(ValidationError, match="unique prefix of at least 8"):
        validate_version_ref(ref)
