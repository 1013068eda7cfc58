"""Text as every store can keep it: shared by audit rows and the actor they name.

Kept apart from ``core.audit`` so the actor (read at every CLI start) does not pull in the
audit chain's cryptography.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TEXT", "clean_text"]

MAX_TEXT = 1024

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(value: object, limit: int = MAX_TEXT) -> str | None:
    """Text as stored: NUL (refused by PostgreSQL) and lone surrogates (refused by every UTF-8
    encoder) become U+FFFD, so no text can fail an audit write; long text is cut."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if not text.isascii() or "\x00" in text:  # the scan only where it can find something
        text = _UNSTORABLE.sub("\ufffd", text)
    return text[:limit]
