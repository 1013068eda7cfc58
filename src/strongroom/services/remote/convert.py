"""JSON answers back into the shapes the local profile returns (datetimes, opaque values)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from strongroom.core.models import SecretBundle, SecretType, SecretValue, VersionProperties
from strongroom.core.validation import encode_value

__all__ = ["bundle_from", "dated", "dated_list", "iso", "properties_from"]

#: Date fields that do not end in ``_at`` (those all are dates).
_DATE_KEYS = frozenset(
    {"not_before", "last_rotation", "next_rotation", "last_rotated", "timestamp", "since", "until"}
)


def _is_date(key: str) -> bool:
    return key.endswith("_at") or key in _DATE_KEYS


def _date(value: Any) -> Any:
    if isinstance(value, str) and "T" in value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def dated(doc: dict[str, Any]) -> dict[str, Any]:
    """A server document with its date fields as datetimes again."""
    return {k: (_date(v) if _is_date(k) else v) for k, v in doc.items()}


def dated_list(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dated(d) for d in docs]


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def properties_from(doc: dict[str, Any]) -> VersionProperties:
    """A version's properties (only its own date fields are parsed: this runs on every read)."""
    return VersionProperties(
        name=doc["name"],
        version=doc["version"],
        secret_type=SecretType(doc["secret_type"]),
        content_type=doc.get("content_type"),
        tags=dict(doc.get("metadata") or {}),
        enabled=bool(doc["enabled"]),
        created_at=_date(doc["created_at"]),
        updated_at=_date(doc["updated_at"]),
        expires_at=_date(doc.get("expires_at")),
        not_before=_date(doc.get("not_before")),
        current=bool(doc.get("current", True)),
        revoked_at=_date(doc.get("revoked_at")),
    )


def bundle_from(doc: dict[str, Any]) -> SecretBundle:
    """The value arrives decoded (JSON secrets as objects); it is held as bytes again, encoded
    as the library encodes it, inside the opaque type."""
    props = properties_from(doc)
    value = doc["value"]
    if isinstance(value, str):
        data = value.encode("utf-8")
    else:
        data, _ = encode_value(value, props.content_type, check_json=False)
    return SecretBundle(props, SecretValue(props.name, props.version, data, props.content_type))
