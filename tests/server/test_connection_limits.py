"""Slow and greedy clients over real sockets: trickled headers, a stalled body, a silent or
idle connection are closed by the server (408 where a request was under way), and one address
holds at most the configured number of connections (429 beyond), unless it is a trusted proxy.

Each wait is bounded by ``CAP``, far above the configured timeouts: a server that never closes
fails the test, and no test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from served import Served, serve, server_settings

from strongroom import Strongroom

CAP = 15.0
FAST = {
    "http_header_timeout_seconds": 0.5,
    "http_body_timeout_seconds": 0.5,
    "http_keep_alive_seconds": 1,
}


@asynccontextmanager
async def limited(tmp_path: Path, **changes: Any) -> AsyncIterator[Served]:
    app = await Strongroom.open(server_settings("sqlite", tmp_path, **changes))
    try:
        async with serve(app) as running:
            yield running
    finally:
        await app.close()


async def connect(served: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", served.port)


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded by CAP)."""
    return await asyncio.wait_for(reader.read(), CAP)


async def trickle(writer: asyncio.StreamWriter, pieces: list[bytes]) -> None:
    """Send one piece every 0.1 s, for as long as the connection lasts."""
    with contextlib.suppress(ConnectionError):
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.1)


async def trickled_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Headers sent one line every 0.1 s: what the server answers before it closes."""
    headers = [b"GET /healthz HTTP/1.1\r\n"] + [b"X-Slow: a\r\n"] * 1000
    sender = asyncio.create_task(trickle(writer, headers))
    answer = await until_closed(reader)
    sender.cancel()
    writer.close()
    return answer


async def test_trickled_headers_are_cut_with_408(tmp_path: Path) -> None:
    async with limited(tmp_path, **FAST) as served:
        answer = await trickled_headers(*await connect(served))
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'"request_timeout"' in answer


async def test_a_later_requests_trickled_headers_are_cut_with_408(tmp_path: Path) -> None:
    """The header clock of a keep-alive connection's second request starts with its first
    byte, even though the first request arrived whole (and armed no timer at all)."""
    async with limited(tmp_path, **{**FAST, "http_keep_alive_seconds": 30}) as served:
        reader, writer = await connect(served)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"}"), CAP)
        assert first.startswith(b"HTTP/1.1 200 "), first
        answer = await trickled_headers(reader, writer)
        assert answer.startswith(b"HTTP/1.1 408 "), answer


async def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    async with limited(tmp_path, **FAST) as served:
        reader, writer = await connect(served)
        answer = await until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer


async def test_a_stalled_body_is_cut_with_408_and_changes_nothing(tmp_path: Path) -> None:
    async with limited(tmp_path, **FAST) as served:
        reader, writer = await connect(served)
        body = b'{"name": "app-stalled", "value": "the-value-that-never-arrives"}'
        writer.write(
            b"POST /v1/secrets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + served.admin_token.encode() + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:20]
        )
        await writer.drain()
        answer = await until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        async with served.admin() as c:
            assert (await c.get("/v1/secrets/app-stalled")).status_code == 404
            assert (await c.get("/healthz")).status_code == 200  # the server goes on


async def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    async with limited(tmp_path, **FAST) as served:
        reader, writer = await connect(served)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        answer = await until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 "), answer  # answered, then closed when idle
        assert answer.count(b"HTTP/1.1") == 1


async def test_a_complete_request_is_not_cut(tmp_path: Path) -> None:
    """A body that keeps coming but completes in time is served normally."""
    async with limited(tmp_path, http_body_timeout_seconds=5) as served:
        reader, writer = await connect(served)
        body = b'{"name": "app-slow-ok", "value": "v"}'
        writer.write(
            b"POST /v1/secrets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nAuthorization: Bearer " + served.admin_token.encode() +
            b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        )  # fmt: skip
        await trickle(writer, [body[i : i + 10] for i in range(0, len(body), 10)])
        answer = await until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 201 "), answer


async def test_one_address_holds_at_most_the_configured_connections(tmp_path: Path) -> None:
    async with limited(tmp_path, http_max_connections_per_address=3) as served:
        held = [await connect(served) for _ in range(3)]
        for reader, writer in held:  # each is open and served
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), CAP)).startswith(b"HTTP/1.1 200")
        reader, writer = await connect(served)
        answer = await until_closed(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 429 "), answer
        assert b"retry-after: 1" in answer.lower()
        # One leaves: another may come in (once the server has seen it go).
        first_reader, first_writer = held.pop(0)
        first_writer.close()
        await until_closed(first_reader)
        async with served.client() as c:
            for _ in range(100):
                response = await c.get("/healthz")
                if response.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert response.status_code == 200
        for _, writer in held:
            writer.close()


async def test_trusted_proxies_are_not_capped(tmp_path: Path) -> None:
    async with limited(
        tmp_path, http_max_connections_per_address=2, trusted_proxies="127.0.0.0/8"
    ) as served:
        held = [await connect(served) for _ in range(4)]
        for reader, writer in held:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert (await asyncio.wait_for(reader.readline(), CAP)).startswith(b"HTTP/1.1 200")
        for _, writer in held:
            writer.close()
