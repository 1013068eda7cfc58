"""Conversions shared by the SQL stores: timestamps, tags and version rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from strongroom.core.models import SecretType, VersionProperties

__all__ = ["from_micros", "props_from_row", "tags_from_json", "tags_to_json", "to_micros"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(when: datetime | None) -> int | None:
    if when is None:
        return None
    return (when - _EPOCH) // timedelta(microseconds=1)


def from_micros(value: int | None) -> datetime | None:
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=value)


def tags_to_json(tags: dict[str, str]) -> str:
    return json.dumps(tags, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def tags_from_json(text: str | None) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(text) if text else {}
    return loaded


def _same(value: Any) -> Any:
    return value


def _required(value: datetime | None) -> datetime:
    if value is None:
        raise ValueError("a required timestamp column is NULL")
    return value


def props_from_row(row: Any, *, micros: bool, current: bool) -> VersionProperties:
    """Build properties from a row with the columns of ``secret_versions`` plus ``name``."""
    conv = from_micros if micros else _same
    return VersionProperties(
        name=row["name"],
        version=row["version"],
        secret_type=SecretType(row["secret_type"]),
        content_type=row["content_type"],
        tags=tags_from_json(row["tags"]),
        enabled=bool(row["enabled"]),
        created_at=_required(conv(row["created_at"])),
        updated_at=_required(conv(row["updated_at"])),
        expires_at=conv(row["expires_at"]),
        not_before=conv(row["not_before"]),
        revoked_at=conv(row["revoked_at"]),
        current=current,
    )
