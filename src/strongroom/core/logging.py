"""Structured logs with an allowlist: a field not named here never reaches a log line.

JSON lines in production, a console renderer with ``DEBUG``. A value cannot leak through a
log call by mistake, because unknown keys are dropped rather than known-bad ones filtered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from types import ModuleType
from typing import Any

__all__ = ["LOGGED_FIELDS", "allowlist_fields", "configure_logging", "get_logger", "is_configured"]

#: A configuration asked for before structlog was imported, applied when it is: a command that
#: logs nothing (``strongroom secret get`` at its default level) never imports structlog.
_pending: tuple[int, bool] | None = None
#: The level and wrapper class :func:`configure_logging` applied last: while structlog still
#: runs with that wrapper, a call below the level is dropped here without a logger built for
#: it (building one costs microseconds, and the access log asks on every request).
_applied: tuple[int, Any] | None = None


def _structlog() -> ModuleType:
    """structlog, imported on first use, with any configuration asked for meanwhile."""
    global _pending  # noqa: PLW0603 (one pending configuration per process)
    if "structlog" not in sys.modules:
        # structlog imports rich, when it is installed (typer brings it), for its console
        # renderer's tracebacks and pretty-printing: about 45 ms of CPU. strongroom formats
        # exceptions itself (format_exc_info) before any renderer sees them, so rich is hidden
        # while structlog is imported and structlog falls back to its plain formatting; rich
        # stays importable for the CLI's tables.
        hide_rich = "rich" not in sys.modules
        if hide_rich:
            sys.modules["rich"] = None  # type: ignore[assignment]  # import rich: ImportError
        try:
            import structlog  # noqa: PLC0415
        finally:
            if hide_rich:
                del sys.modules["rich"]
    import structlog  # noqa: PLC0415 (now only a lookup in sys.modules)

    if _pending is not None:
        level, debug = _pending
        _pending = None
        if not structlog.is_configured():  # a host that configured it since keeps its own
            _apply(structlog, level, debug=debug)
    return structlog


#: The levels of a filtering bound logger's methods (structlog.make_filtering_bound_logger).
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR,
           "critical": logging.CRITICAL, "fatal": logging.CRITICAL}  # fmt: skip


def _drop(*_args: Any, **_kwargs: Any) -> None:
    return None


class _Logger:
    """A named logger that imports structlog on its first call: every module holds one from
    import time, and most processes that import them (a CLI read) never log a line."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        level = _LEVELS.get(attribute)
        if level is not None:
            if _pending is not None and level < _pending[0] and "structlog" not in sys.modules:
                # Below the level configured but not yet applied: dropped, as the filtering
                # logger would drop it, without importing structlog for it.
                return _drop
            applied = _applied
            if (
                applied is not None
                and level < applied[0]
                and _structlog().get_config()["wrapper_class"] is applied[1]
            ):
                return _drop  # as the filtering logger configured would drop it
        return getattr(_structlog().get_logger(self._name), attribute)

    def enabled(self, level: str) -> bool:
        """Whether a call at ``level`` would be written: a caller whose fields cost something to
        build (the access log, on every request) asks first."""
        return self.__getattr__(level) is not _drop

    def __repr__(self) -> str:
        return f"<logger {self._name}>"


#: Keys a strongroom log line may carry. Add here deliberately, never a "value".
LOGGED_FIELDS = frozenset(
    {
        "event", "level", "timestamp", "logger", "log_level",
        "name", "version", "versions", "secret_type", "backend", "profile", "path",
        "actor", "ip", "user_agent", "action", "result", "duration_ms", "error", "error_code",
        "count", "kek_version", "from_version", "rewrapped", "purged", "batch", "attempt",
        # notifications (services.notify): identifiers and delivery results, never a value
        "kind", "priority", "subject", "field_names", "revocation_id", "severity", "channel",
        "target", "status", "attempts",
        # the HTTP service: who called what; never a token, a body or a query string
        "identity", "token_id", "method", "request_id", "code", "host", "port", "workers",
        "tls",
        # custody (services.custody): counts and outcomes, never a share or a key byte
        "threshold", "progress", "unsealed", "attempts_audited",
    }
)  # fmt: skip


def allowlist_fields(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop every key that is not on :data:`LOGGED_FIELDS` (the names of dropped keys are kept
    so the omission is visible)."""
    dropped = [key for key in event_dict if key not in LOGGED_FIELDS]
    for key in dropped:
        del event_dict[key]
    if dropped:
        event_dict["dropped_fields"] = sorted(dropped)
    return event_dict


def is_configured() -> bool:
    """Whether logging was configured in this process (a host application may have)."""
    if _pending is not None:
        return True
    return "structlog" in sys.modules and bool(_structlog().is_configured())


def configure_logging(level: str = "INFO", *, debug: bool = False) -> None:
    """Configure structlog for strongroom processes (the CLI, the server, the library default);
    applied when structlog is first needed, if it is not imported yet."""
    global _pending  # noqa: PLW0603 (one pending configuration per process)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    if "structlog" in sys.modules:
        _pending = None
        _apply(_structlog(), numeric, debug=debug)
    else:
        _pending = (numeric, debug)


def _apply(structlog: ModuleType, numeric: int, *, debug: bool) -> None:
    global _applied  # noqa: PLW0603 (the configuration this process applied last)
    wrapper = structlog.make_filtering_bound_logger(numeric)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if debug
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            allowlist_fields,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=wrapper,
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _applied = (numeric, wrapper)


def get_logger(name: str = "strongroom") -> Any:
    return _Logger(name)
