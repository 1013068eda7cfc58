"""``make run``: open the configured profile (the embedded default unless told otherwise) and
report where it lives and what it holds."""

from __future__ import annotations

import asyncio

from strongroom.app import Strongroom
from strongroom.core.config import Settings
from strongroom.core.logging import configure_logging


async def _status() -> None:
    settings = Settings()
    configure_logging(settings.log_level, debug=settings.debug)
    async with await Strongroom.open(settings) as app:
        where = settings.sqlite_path if app.profile == "sqlite" else app.profile
        print(f"strongroom: profile {app.profile} at {where}")  # noqa: T201
        print(f"  key version {await app.store.key_version()}")  # noqa: T201
        print(f"  secrets     {await app.store.count()}")  # noqa: T201


def main() -> None:
    asyncio.run(_status())


if __name__ == "__main__":
    main()
