"""The "on behalf of" note of remote clients (``acting_as``/``--as`` in the remote profile).

The token decides who acts; a name the client claims is recorded beside its user agent, so the
audit trail keeps it, and is never used for authorization or separation of duties.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["HEADER", "with_note"]

#: The header remote clients send (``strongroom.client.transport.ON_BEHALF_OF_HEADER``).
HEADER = "x-strongroom-on-behalf-of"
_UNSAFE = re.compile(r"[^0-9A-Za-z@._:/ -]")


def with_note(user_agent: str | None, claimed: str | None) -> str | None:
    """The user agent as audited, with the claimed name (cleaned, at most 128 characters)."""
    if not claimed:
        return user_agent
    name = _UNSAFE.sub("?", unquote(claimed))[:128]
    return f"{user_agent or '-'} (on behalf of {name})"
