"""JSON answers built directly (no per-response model validation on hot paths)."""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import Any

from starlette.responses import Response

__all__ = ["json_bytes", "json_response"]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(data), status, headers=headers, media_type="application/json")
