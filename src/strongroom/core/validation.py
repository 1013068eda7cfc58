"""Input rules, checked before anything is written (Azure Key Vault's limits, so a secret
valid here is valid on every backend)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from strongroom.core.errors import ValidationError
from strongroom.core.models import JSON_CONTENT_TYPE, SecretType

__all__ = [
    "MAX_CONTENT_TYPE_LENGTH",
    "MAX_EXPIRES_IN_DAYS",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_TIME",
    "MAX_VALUE_BYTES",
    "MIN_TIME",
    "MIN_VERSION_PREFIX",
    "bad_text",
    "encode_value",
    "expiry_from_days",
    "validate_aware",
    "validate_content_type",
    "validate_name",
    "validate_secret_type",
    "validate_tags",
    "validate_text",
    "validate_version",
    "validate_version_ref",
]

_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
_VERSION = re.compile(r"[0-9a-f]{32}")
_VERSION_REF = re.compile(r"[0-9a-f]{8,32}")
#: The shortest version prefix taken for a version id (the CLI prints eight characters).
MIN_VERSION_PREFIX = 8
MAX_VALUE_BYTES = 25_000
MAX_TAGS = 15
MAX_TAG_LENGTH = 256
MAX_CONTENT_TYPE_LENGTH = 255
MAX_EXPIRES_IN_DAYS = 36_500
#: Dates a secret, token or query may carry: Unix time's start to the last day of year 9999 (a
#: day short of the calendar's end, so arithmetic on a stored date can never overflow).
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 31, tzinfo=UTC)
# NUL (which PostgreSQL cannot store) and UTF-16 surrogates (which no UTF-8 encoder accepts):
# text with either is refused at the edge, so it is the same 400 on every store.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def bad_text(text: str) -> bool:
    """True if ``text`` holds NUL or a lone surrogate: text no store can keep as given."""
    return _BAD_TEXT.search(text) is not None


def validate_text(value: object, field_name: str, max_length: int) -> str:
    """Free text (descriptions, reasons, filters): a string of at most ``max_length``
    characters, valid Unicode without NUL."""
    if not isinstance(value, str) or len(value) > max_length:
        raise ValidationError(f"{field_name} must be text of at most {max_length} characters")
    if bad_text(value):
        raise ValidationError(f"{field_name} must be valid Unicode text without NUL characters")
    return value


def validate_name(name: object) -> str:
    """A secret name: 1-127 ASCII letters, digits and dashes."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise ValidationError(
            f"invalid secret name {shown!r}: use 1-127 characters from 0-9, a-z, A-Z and '-'"
        )
    return name


def validate_version(version: object) -> str:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ValidationError("invalid version id: expected 32 lowercase hex characters")
    return version


def validate_version_ref(version: object) -> str:
    """A version id or a prefix of one: 8 to 32 lowercase hex characters."""
    if not isinstance(version, str) or not _VERSION_REF.fullmatch(version):
        raise ValidationError(
            "invalid version id: expected 32 lowercase hex characters, or a unique prefix of at "
            f"least {MIN_VERSION_PREFIX}"
        )
    return version


def encode_value(
    value: object, content_type: str | None, *, check_json: bool = True
) -> tuple[bytes, str | None]:
    """Turn a caller's value into the bytes to encrypt and the content type to record.

    Text is stored as UTF-8; dicts and lists as compact JSON with ``application/json``. Text
    labelled ``application/json`` must be JSON unless ``check_json`` is false (the Key
    Vault-compatible API, where the content type is only a hint).
    """
    if content_type is not None:
        validate_content_type(content_type)
    if isinstance(value, dict | list):
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValidationError("secret value is not JSON-serialisable") from exc
        content_type = JSON_CONTENT_TYPE
    elif isinstance(value, str):
        text = value
        if content_type == JSON_CONTENT_TYPE and check_json:
            try:
                json.loads(text)
            except ValueError as exc:
                raise ValidationError(
                    "content type is application/json but the value is not JSON"
                ) from exc
    else:
        raise ValidationError(f"secret value must be str, dict or list, not {type(value).__name__}")
    if not text:
        raise ValidationError("secret value must not be empty")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("secret value is not valid Unicode text") from None
    if len(data) > MAX_VALUE_BYTES:
        raise ValidationError(
            f"secret value is {len(data)} bytes in UTF-8; the limit is {MAX_VALUE_BYTES}"
        )
    return data, content_type


def validate_content_type(content_type: object) -> str:
    if (
        not isinstance(content_type, str)
        or not content_type
        or len(content_type) > MAX_CONTENT_TYPE_LENGTH
        or not content_type.isprintable()
    ):
        raise ValidationError("content type must be printable text of 1-255 characters")
    return content_type


def validate_tags(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Metadata become tags: at most 15, keys and values strings of at most 256 characters."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValidationError("metadata must be a mapping of strings to strings")
    if len(metadata) > MAX_TAGS:
        raise ValidationError(f"at most {MAX_TAGS} metadata entries, got {len(metadata)}")
    tags: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_TAG_LENGTH:
            raise ValidationError(f"metadata keys must be strings of 1-{MAX_TAG_LENGTH} characters")
        if bad_text(key) or (isinstance(value, str) and bad_text(value)):
            raise ValidationError("metadata must be valid Unicode text without NUL characters")
        if not isinstance(value, str) or len(value) > MAX_TAG_LENGTH:
            raise ValidationError(
                f"metadata value of {key[:40]!r} must be a string of at most "
                f"{MAX_TAG_LENGTH} characters"
            )
        tags[key] = value
    return tags


def validate_secret_type(secret_type: object) -> SecretType:
    if isinstance(secret_type, SecretType):
        return secret_type
    if isinstance(secret_type, str):
        try:
            return SecretType(secret_type.lower())
        except ValueError:
            pass
    allowed = ", ".join(t.value for t in SecretType)
    raise ValidationError(f"unknown secret type; expected one of {allowed}")


def expiry_from_days(expires_in_days: object, now: datetime) -> datetime | None:
    if expires_in_days is None:
        return None
    if (
        isinstance(expires_in_days, bool)
        or not isinstance(expires_in_days, int)
        or not 1 <= expires_in_days <= MAX_EXPIRES_IN_DAYS
    ):
        raise ValidationError(
            f"expires_in_days must be a whole number from 1 to {MAX_EXPIRES_IN_DAYS}"
        )
    return now + timedelta(days=expires_in_days)


def validate_aware(when: object, field_name: str) -> datetime | None:
    """Datetimes must carry a time zone and lie between 1970 and the end of 9999 (UTC); they
    are kept in UTC."""
    if when is None:
        return None
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise ValidationError(f"{field_name} must be a timezone-aware datetime")
    try:
        utc = when.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59-12:00 is past the calendar's end in UTC
        utc = None
    if utc is None or not MIN_TIME <= utc <= MAX_TIME:
        raise ValidationError(
            f"{field_name} must lie between {MIN_TIME:%Y-%m-%d} and {MAX_TIME:%Y-%m-%d} (UTC)"
        )
    return utc
