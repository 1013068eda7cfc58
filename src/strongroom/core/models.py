"""Plain data that travels between layers: secret types, properties and opaque values."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NoReturn

__all__ = [
    "JSON_CONTENT_TYPE",
    "UNSET",
    "DeletedSecret",
    "NewVersion",
    "PropertyChanges",
    "SecretBundle",
    "SecretType",
    "SecretValue",
    "VersionProperties",
]

JSON_CONTENT_TYPE = "application/json"


class SecretType(enum.StrEnum):
    """What a secret is for; the seed's kinds plus a generic one."""

    API_KEY = "api_key"
    DATABASE_CREDENTIAL = "database_credential"
    JWT_SECRET = "jwt_secret"  # noqa: S105 (a type name, not a secret)
    ENCRYPTION_KEY = "encryption_key"
    THIRD_PARTY_CREDENTIAL = "third_party_credential"
    CERTIFICATE = "certificate"
    GENERIC = "generic"


class SecretValue:
    """A secret's plaintext, which shows only its name and version when printed or logged.

    Call :meth:`reveal` to get the text; pickling is refused so a value cannot leak through
    a cache or a queue by accident.
    """

    __slots__ = ("_data", "content_type", "name", "version")

    def __init__(self, name: str, version: str, data: bytes, content_type: str | None) -> None:
        self.name = name
        self.version = version
        self.content_type = content_type
        self._data = data

    def reveal_bytes(self) -> bytes:
        return self._data

    def reveal(self) -> Any:
        """The value as the caller stored it: text, or decoded JSON for JSON content.

        The content type is a hint (Key Vault's rule: a value may be labelled JSON without
        being JSON): a labelled value that does not decode is answered as its text, so no
        read ever fails because of its label."""
        text = self._data.decode("utf-8")
        if self.content_type == JSON_CONTENT_TYPE:
            try:
                return json.loads(text)
            except ValueError:
                return text
        return text

    def __repr__(self) -> str:
        return f"SecretValue(name={self.name!r}, version={self.version!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretValue cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class VersionProperties:
    """Everything about one version except its value (Key Vault's SecretProperties)."""

    name: str
    version: str
    secret_type: SecretType
    content_type: str | None
    tags: dict[str, str]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    not_before: datetime | None
    current: bool = True
    revoked_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "secret_type": self.secret_type.value,
            "content_type": self.content_type,
            "metadata": dict(self.tags),
            "enabled": self.enabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "not_before": self.not_before,
            "current": self.current,
            "revoked": self.revoked_at is not None,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class SecretBundle:
    """A version's properties with its opaque value.

    ``encoded`` holds answers an interface already encoded from this very bundle (the HTTP
    service's JSON body), so a bundle a store reuses is not encoded again; it lives and dies
    with the bundle, and like the value it never shows in a ``repr``."""

    properties: VersionProperties
    value: SecretValue
    encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DeletedSecret:
    """A soft-deleted secret: its last properties and when it will be purged."""

    properties: VersionProperties
    deleted_at: datetime
    scheduled_purge_at: datetime

    def to_dict(self) -> dict[str, Any]:
        data = self.properties.to_dict()
        data.update(
            deleted_at=self.deleted_at,
            scheduled_purge_at=self.scheduled_purge_at,
            recoverable_days=max(0, (self.scheduled_purge_at - self.deleted_at).days),
        )
        return data


@dataclass(frozen=True, slots=True)
class NewVersion:
    """The properties of a version about to be written (the value travels beside it)."""

    name: str
    version: str
    secret_type: SecretType
    content_type: str | None
    tags: dict[str, str]
    created_at: datetime
    expires_at: datetime | None = None
    not_before: datetime | None = None
    enabled: bool = True

    def written_as(self, name: str) -> VersionProperties:
        """Its properties once written: the current version of ``name`` (the stored spelling
        of the name, which may differ in case from the one asked for)."""
        return VersionProperties(
            name=name, version=self.version, secret_type=self.secret_type,
            content_type=self.content_type, tags=dict(self.tags), enabled=self.enabled,
            created_at=self.created_at, updated_at=self.created_at, expires_at=self.expires_at,
            not_before=self.not_before, current=True,
        )  # fmt: skip


class _Unset(enum.Enum):
    UNSET = "UNSET"


UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class PropertyChanges:
    """A partial update of a version's properties; UNSET fields stay as they are."""

    updated_at: datetime
    enabled: bool | _Unset = UNSET
    expires_at: datetime | _Unset | None = UNSET
    not_before: datetime | _Unset | None = UNSET
    tags: dict[str, str] | _Unset = UNSET
    content_type: str | _Unset | None = UNSET

    def apply(self, props: VersionProperties) -> VersionProperties:
        """The properties after this change (used by stores that hold rows in memory)."""
        out = replace(props, updated_at=self.updated_at)
        if self.enabled is not UNSET:
            out = replace(out, enabled=self.enabled)
        if self.expires_at is not UNSET:
            out = replace(out, expires_at=self.expires_at)
        if self.not_before is not UNSET:
            out = replace(out, not_before=self.not_before)
        if self.tags is not UNSET:
            out = replace(out, tags=dict(self.tags))
        if self.content_type is not UNSET:
            out = replace(out, content_type=self.content_type)
        return out
