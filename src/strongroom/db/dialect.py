"""SQL written once for SQLite and PostgreSQL: ``:name`` parameters become each driver's
placeholders. Only fixed fragments are ever joined into SQL text; values are parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["POSTGRES", "SQLITE", "Dialect", "Prepared"]

_PARAM = re.compile(r"(?<!:):([a-z_]+)")


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    day: str
    hour: str
    json_param: str

    def compile(self, sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
        """``:name`` parameters to positional ones, in order of appearance."""
        order: list[str] = []

        def placeholder(match: re.Match[str]) -> str:
            key = match.group(1)
            if self.name == "sqlite":
                order.append(key)
                return "?"
            if key not in order:
                order.append(key)
            return f"${order.index(key) + 1}"

        text = _PARAM.sub(placeholder, sql)
        return text, [params[key] for key in order]

    def prepare(self, sql: str) -> Prepared:
        """Compile once (module import), bind many times (the hot path skips the regex)."""
        names: list[str] = []

        def placeholder(match: re.Match[str]) -> str:
            key = match.group(1)
            if self.name == "sqlite":
                names.append(key)
                return "?"
            if key not in names:
                names.append(key)
            return f"${names.index(key) + 1}"

        return Prepared(_PARAM.sub(placeholder, sql), tuple(names))


@dataclass(frozen=True, slots=True)
class Prepared:
    """SQL text in a driver's placeholders, and the parameter names in binding order."""

    text: str
    names: tuple[str, ...]

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


SQLITE = Dialect(
    name="sqlite",
    day="date(timestamp / 1000000, 'unixepoch')",
    hour="(timestamp / 900000000) * 900000000",
    json_param=":details",
)
POSTGRES = Dialect(
    name="postgres",
    day="to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    hour="date_bin('15 minutes', timestamp, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    json_param=":details::jsonb",
)
