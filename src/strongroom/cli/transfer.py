"""File formats of ``strongroom secret import|export``: pure functions, no I/O.

- ``.env``: ``KEY=VALUE`` lines, ``export`` prefixes, comments, single quotes (literal) and
  double quotes (``\\n \\r \\t \\" \\\\`` escapes), values over several lines inside quotes. No
  variable expansion. Names allow only ``[0-9a-zA-Z-]``, so ``_`` becomes ``-``.
- A plain JSON object ``{"name": "value", ...}`` (object or array values are stored as JSON).
- strongroom's own document (``strongroom-secrets/1``): values with type, content type, tags,
  expiry and not-before, so an export and re-import keeps everything but the version history.
- The encrypted export (``strongroom-export/1``): that document sealed under a passphrase
  (``export_crypto.py``: Argon2id and AES-256-GCM; strength checked; scrypt exports of earlier
  releases still open).

Values travel in :class:`Item`, whose ``repr`` leaves the value out. Error messages name a line
and a key, never a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from strongroom.cli.export_crypto import (
    EXPORT_FORMAT,
    check_passphrase,
    decrypt_export,
    encrypt_export,
)
from strongroom.core.errors import ValidationError
from strongroom.core.validation import validate_name

__all__ = [
    "DOCUMENT_FORMAT",
    "EXPORT_FORMAT",
    "Item",
    "check_passphrase",
    "decrypt_export",
    "detect",
    "dumps_document",
    "encrypt_export",
    "from_document",
    "parse_env",
    "parse_input",
    "parse_json_map",
    "render_env",
    "to_document",
]

DOCUMENT_FORMAT = "strongroom-secrets/1"
JSON_CONTENT_TYPE = "application/json"
_MAX_PROBLEMS = 5
_ENV_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}

Format = Literal["env", "json", "document", "encrypted"]


@dataclass(frozen=True, slots=True)
class Item:
    """One secret to import or that was exported."""

    name: str
    value: str = field(repr=False)
    #: The key it had in the file (an env variable name), when that differs from ``name``.
    source: str | None = None
    line: int | None = None
    secret_type: str | None = None
    content_type: str | None = None
    tags: dict[str, str] | None = None
    expires_at: datetime | None = None
    not_before: datetime | None = None


class _Problems:
    """Collects what is wrong with an input, to report it in one line."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.found: list[str] = []

    def add(self, message: str) -> None:
        self.found.append(message)

    def raise_if_any(self) -> None:
        if not self.found:
            return
        shown = "; ".join(self.found[:_MAX_PROBLEMS])
        more = len(self.found) - _MAX_PROBLEMS
        extra = f" (and {more} more)" if more > 0 else ""
        count = len(self.found)
        raise ValidationError(
            f"{count} problem{'s' if count != 1 else ''} in the {self.what}: {shown}{extra}"
        )


def _name_from_key(key: str) -> str:
    return key.replace("_", "-").replace(".", "-")


def _check_names(items: list[Item], problems: _Problems) -> None:
    seen: dict[str, Item] = {}
    for item in items:
        where = f"line {item.line}: " if item.line else ""
        label = item.source or item.name
        try:
            validate_name(item.name)
        except ValidationError:
            problems.add(f"{where}{label!r} is not a valid secret name")
            continue
        if not item.value:
            problems.add(f"{where}{label!r} has an empty value")
        other = seen.get(item.name.lower())
        if other is not None:
            problems.add(
                f"{where}{label!r} and {(other.source or other.name)!r} are the same secret name"
            )
        seen[item.name.lower()] = item


# -- .env ----------------------------------------------------------------------------------


def _quoted(text: str, pos: int, quote: str) -> tuple[str, int] | None:
    """The value inside quotes starting at ``pos`` (after the opening quote) and the index after
    the closing quote; None when it is never closed."""
    if quote == "'":
        end = text.find("'", pos)
        return None if end < 0 else (text[pos:end], end + 1)
    out: list[str] = []
    i = pos
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return None


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def parse_env(text: str) -> list[Item]:
    """Parse a ``.env`` file into items (names with ``_`` become ``-``)."""
    problems = _Problems(".env input")
    items: list[Item] = []
    pos = 1 if text.startswith("\ufeff") else 0
    next_line = 1
    while pos < len(text):
        line = next_line
        end = _line_end(text, pos)
        next_line = line + 1
        i = pos
        while i < end and text[i] in " \t\r":
            i += 1
        if i >= end or text[i] == "#":
            pos = end + 1
            continue
        if text.startswith("export", i) and text[i + 6 : i + 7] in (" ", "\t"):
            i += 7
            while i < end and text[i] in " \t":
                i += 1
        match = _ENV_KEY.match(text, i, end)
        j = match.end() if match else i
        while j < end and text[j] in " \t":
            j += 1
        if match is None or j >= end or text[j] != "=":
            problems.add(f"line {line}: expected KEY=VALUE")
            pos = end + 1
            continue
        key = match.group()
        j += 1
        while j < end and text[j] in " \t":
            j += 1
        if j < end and text[j] in "'\"":
            # A quoted value may run over several lines: parse on from the file text itself.
            found = _quoted(text, j + 1, text[j])
            if found is None:
                problems.add(f"line {line}: {key!r} has an unclosed quote")
                break
            value, after = found
            next_line += text.count("\n", end, after)
            end = _line_end(text, after)
            tail = text[after:end].strip()
            if tail and not tail.startswith("#"):
                problems.add(f"line {line}: unexpected text after the quoted value of {key!r}")
        else:
            value = re.split(r"\s#", text[j:end], maxsplit=1)[0].strip()
        pos = end + 1
        name = _name_from_key(key)
        items.append(Item(name=name, value=value, source=key if key != name else None, line=line))
    _check_names(items, problems)
    problems.raise_if_any()
    return items


def _env_value(value: str) -> str:
    if "'" not in value and not any(c in value for c in "\n\r"):
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def render_env(items: Iterable[Item]) -> str:
    """A ``.env`` file (names with ``-`` become ``_``), which :func:`parse_env` reads back."""
    lines = ["# strongroom export: plaintext secrets, handle with care"]
    lines += [f"{item.name.replace('-', '_')}={_env_value(item.value)}" for item in items]
    return "\n".join(lines) + "\n"


# -- JSON ----------------------------------------------------------------------------------


def _json_value(value: object) -> tuple[str, str | None] | None:
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False), JSON_CONTENT_TYPE
    return None


def parse_json_map(data: Mapping[str, Any]) -> list[Item]:
    """A plain ``{"name": "value"}`` object (``_`` in names becomes ``-``)."""
    problems = _Problems("JSON input")
    items: list[Item] = []
    for key, raw in data.items():
        converted = _json_value(raw)
        if converted is None:
            problems.add(f"{key!r}: a value must be a string, an object or an array")
            continue
        name = _name_from_key(key)
        items.append(
            Item(
                name=name,
                value=converted[0],
                content_type=converted[1],
                source=key if key != name else None,
            )
        )
    _check_names(items, problems)
    problems.raise_if_any()
    return items


def _when(value: object, label: str, problems: _Problems) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        problems.add(f"{label}: not a timezone-aware ISO date")
        return None
    return moment


def from_document(data: Mapping[str, Any]) -> list[Item]:
    """strongroom's own document (``strongroom-secrets/1``)."""
    problems = _Problems("strongroom document")
    entries = data.get("secrets")
    if not isinstance(entries, list):
        raise ValidationError("the strongroom document has no list of secrets")
    items: list[Item] = []
    for index, entry in enumerate(entries):
        label = f"secret {index + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.add(f"{label}: expected an object with a name")
            continue
        label = repr(entry["name"])
        value = entry.get("value")
        tags = entry.get("tags") or {}
        if not isinstance(value, str) or not isinstance(tags, dict):
            problems.add(f"{label}: value must be a string and tags an object")
            continue
        items.append(
            Item(
                name=entry["name"],
                value=value,
                secret_type=entry.get("secret_type"),
                content_type=entry.get("content_type"),
                tags={str(k): str(v) for k, v in tags.items()},
                expires_at=_when(entry.get("expires_at"), label, problems),
                not_before=_when(entry.get("not_before"), label, problems),
            )
        )
    _check_names(items, problems)
    problems.raise_if_any()
    return items


def to_document(items: Iterable[Item], *, exported_at: datetime) -> dict[str, Any]:
    return {
        "format": DOCUMENT_FORMAT,
        "exported_at": exported_at.isoformat(),
        "secrets": [
            {
                "name": item.name,
                "value": item.value,
                "secret_type": item.secret_type,
                "content_type": item.content_type,
                "tags": item.tags or {},
                "expires_at": item.expires_at.isoformat() if item.expires_at else None,
                "not_before": item.not_before.isoformat() if item.not_before else None,
            }
            for item in items
        ],
    }


def dumps_document(items: Iterable[Item], *, exported_at: datetime) -> str:
    return (
        json.dumps(to_document(items, exported_at=exported_at), indent=2, ensure_ascii=False) + "\n"
    )


# -- detection -----------------------------------------------------------------------------


def detect(text: str) -> tuple[Format, Any]:
    """What an input is, with its parsed JSON when it is JSON."""
    if text.lstrip("\ufeff \t\r\n").startswith("{"):
        try:
            data = json.loads(text.lstrip("\ufeff"))
        except ValueError:
            raise ValidationError("the input starts like JSON but is not valid JSON") from None
        if not isinstance(data, dict):
            raise ValidationError("JSON input must be an object")
        if data.get("format") == EXPORT_FORMAT:
            return "encrypted", data
        if data.get("format") == DOCUMENT_FORMAT:
            return "document", data
        return "json", data
    return "env", None


def parse_input(kind: Format, text: str, data: Any) -> list[Item]:
    """Items from an input already known to be ``kind`` (not encrypted)."""
    if kind == "env":
        return parse_env(text)
    if kind == "document":
        return from_document(data)
    if kind == "json":
        return parse_json_map(data)
    raise ValidationError("an encrypted export needs its passphrase")
