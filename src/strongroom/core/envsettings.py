"""Typed settings read from environment variables, without a validation framework.

Every ``strongroom`` command reads its settings, so what reading them costs is paid at each
start: pydantic-settings alone took about 70 ms of imports and class building, more than the
rest of a ``strongroom secret get``. Settings are flat (strings, numbers, flags, paths, secrets,
a few choices), so a table of :func:`setting` declarations and one loop do the same job.

A bad value is a :class:`~strongroom.core.errors.ConfigurationError` that names the variable,
never its value (it may be a key, a token or a URL with a password).
"""

from __future__ import annotations

import copy
import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from strongroom.core.errors import ConfigurationError

__all__ = ["EnvSettings", "SecretStr", "Setting", "setting"]

_MASK = "**********"
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class SecretStr:
    """A setting's secret text: ``repr`` and ``str`` show a mask, never the value."""

    __slots__ = ("_secret_value",)

    def __init__(self, secret_value: str) -> None:
        self._secret_value = secret_value

    def get_secret_value(self) -> str:
        return self._secret_value

    def __repr__(self) -> str:
        return f"SecretStr('{_MASK if self._secret_value else ''}')"

    def __str__(self) -> str:
        return _MASK if self._secret_value else ""

    def __len__(self) -> int:
        return len(self._secret_value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other._secret_value == self._secret_value

    def __hash__(self) -> int:
        return hash(self._secret_value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("not text")


def _secret(value: Any) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if hasattr(value, "get_secret_value"):  # another library's secret string type
        return SecretStr(_text(value.get_secret_value()))
    return SecretStr(_text(value))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = _text(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("not a flag")


def _int(value: Any) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = _text(value).strip()
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "5.0" is 5, as it was; "5.5" is refused
        if not number.is_integer():
            raise
        return int(number)


def _float(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return float(_text(value).strip())


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, os.PathLike):
        return Path(value)
    return Path(_text(value))


def _parser(kind: type | tuple[str, ...]) -> Callable[[Any], Any]:
    if isinstance(kind, tuple):  # a choice of literal words
        choices = kind

        def choose(value: Any) -> str:
            if value not in choices:
                raise ValueError("not one of the choices")
            return str(value)

        return choose
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind  # Backend("sqlite"); a member stays itself
    parsers: dict[type, Callable[[Any], Any]] = {
        str: _text, int: _int, float: _float, bool: _bool, Path: _path, SecretStr: _secret,
    }  # fmt: skip
    return parsers[kind]


@dataclass(frozen=True, slots=True)
class Setting:
    """One attribute of a settings class: its variable, its type and its limits."""

    env: str
    parse: Callable[[Any], Any]
    default: Any = None
    factory: Callable[[], Any] | None = None
    empty_is_unset: bool = False
    checks: tuple[Callable[[Any], bool], ...] = ()

    def read(self, raw: Any) -> Any:
        """The typed value of ``raw`` (ValueError or TypeError when it is refused)."""
        if raw is None or (self.empty_is_unset and raw == ""):
            return None
        value = self.parse(raw)
        if not all(check(value) for check in self.checks):
            raise ValueError("out of range")
        return value

    def initial(self) -> Any:
        return self.factory() if self.factory is not None else self.default


def setting(
    env: str,
    kind: type | tuple[str, ...],
    default: Any = None,
    *,
    factory: Callable[[], Any] | None = None,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    pattern: str | None = None,
    empty_is_unset: bool = False,
    check: Callable[[Any], bool] | None = None,
) -> Any:
    """Declare a setting read from ``env`` (typed ``Any`` so a class body can annotate it)."""
    checks: list[Callable[[Any], bool]] = []
    if gt is not None:
        checks.append(lambda v: v > gt)
    if ge is not None:
        checks.append(lambda v: v >= ge)
    if le is not None:
        checks.append(lambda v: v <= le)
    if pattern is not None:
        compiled = re.compile(pattern)
        checks.append(lambda v: compiled.search(v) is not None)
    if check is not None:
        checks.append(lambda v: v is None or check(v))
    return Setting(env, _parser(kind), default, factory, empty_is_unset, tuple(checks))


class EnvSettings:
    """Settings from keyword arguments (by variable name), else the environment (names matched
    without regard to case), else defaults. Defaults are not checked; everything read is."""

    _settings: ClassVar[dict[str, Setting]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found = {k: v for k, v in vars(cls).items() if isinstance(v, Setting)}
        cls._settings = {**cls._settings, **found}

    def __init__(self, **values: Any) -> None:
        environ = {key.lower(): value for key, value in os.environ.items()}
        refused: list[str] = []
        for attribute, spec in self._settings.items():
            if spec.env in values:
                raw = values[spec.env]
            elif spec.env.lower() in environ:
                raw = environ[spec.env.lower()]
            else:
                setattr(self, attribute, spec.initial())
                continue
            try:
                setattr(self, attribute, spec.read(raw))
            except (ValueError, TypeError):
                refused.append(spec.env)
        if refused:
            # The names only: a value may be a key, a token or a URL with a password.
            raise ConfigurationError(
                f"invalid configuration in the environment: {', '.join(refused)}"
            )

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self:
        """A copy with some attributes replaced (by attribute name, taken as given)."""
        copied = copy.copy(self)
        for attribute, value in (update or {}).items():
            setattr(copied, attribute, value)
        return copied

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._settings)
        return f"{type(self).__name__}({shown})"
