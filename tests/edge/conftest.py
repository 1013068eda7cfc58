"""The central server the edge tests share (one per module)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from helpers_edge import Central
from helpers_serve import server_settings
from strongroom import Strongroom


@pytest.fixture(scope="module")
async def central(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Central]:
    home = tmp_path_factory.mktemp("central")
    tls = home / "tls"
    tls.mkdir()
    # Keep-alives every 0.2 s: an edge hears its upstream (and checks its credential) often.
    app = await Strongroom.open(server_settings("memory", home, feed_heartbeat_seconds=0.2))
    site = Central(app, tls)
    await site.start()
    try:
        yield site
    finally:
        await site.stop()
        await app.close()
