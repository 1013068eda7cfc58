"""Structured logs with an allowlist: a field not named here never reaches a log line.

JSON lines in production, a console renderer with ``DEBUG``. A value cannot leak through a
log call by mistake, because unknown keys are dropped rather than known-bad ones filtered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

# structlog imports rich, when it is installed (typer brings it), for its console renderer's
# tracebacks and pretty-printing: about 45 ms of CPU at every process start, a seventh of a
# `strongroom secret get`. strongroom formats exceptions itself (format_exc_info) before any
# renderer sees them, so rich is hidden while structlog is imported and structlog falls back
# to its plain formatting; rich stays importable for the CLI's tables.
_HIDE_RICH = "rich" not in sys.modules and "structlog" not in sys.modules
if _HIDE_RICH:
    sys.modules["rich"] = None  # type: ignore[assignment]  # import rich: ImportError
try:
    import structlog
finally:
    if _HIDE_RICH:
        del sys.modules["rich"]

__all__ = ["LOGGED_FIELDS", "allowlist_fields", "configure_logging", "get_logger", "is_configured"]

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
    return bool(structlog.is_configured())


def configure_logging(level: str = "INFO", *, debug: bool = False) -> None:
    """Configure structlog for strongroom processes (the CLI, the server, the library default)."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
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
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "strongroom") -> Any:
    return structlog.get_logger(name)
