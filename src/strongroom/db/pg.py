"""Pool settings shared by strongroom's PostgreSQL stores."""

from __future__ import annotations

from typing import Any

__all__ = ["keep_session"]


async def keep_session(_conn: Any) -> None:
    """Pool reset hook that skips asyncpg's default reset query (one round trip per release).

    asyncpg still rolls back any open transaction before calling it. strongroom sets no session
    state beyond the pool's start-up ``search_path``, and releases its advisory locks itself.
    """
    return
