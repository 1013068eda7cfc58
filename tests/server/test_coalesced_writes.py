"""An answer's writes leave together: uvicorn writes the head and the body of an answer
separately, and :class:`CoalescedWrites` joins the writes of one loop turn into one send (one TLS
record, one wake-up of the client). Real sockets and the running loop's own transport."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from strongroom.server.protocol import CoalescedWrites

CAP = 10.0


class _Quiet(asyncio.Protocol):
    pass


@pytest.fixture
async def pair() -> AsyncIterator[tuple[CoalescedWrites, asyncio.Transport, socket.socket]]:
    """(the wrapped transport, the transport under it, the peer's socket)."""
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(_Quiet, sock=ours)
    try:
        yield CoalescedWrites(transport, loop), transport, peer  # type: ignore[arg-type]
    finally:
        transport.abort()
        peer.close()


def _pending(peer: socket.socket) -> bytes:
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


async def _received(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = b""
    while len(got) < size:
        got += await asyncio.wait_for(loop.sock_recv(peer, 65536), CAP)
    return got


async def test_writes_of_one_turn_leave_together_in_order(
    pair: tuple[CoalescedWrites, asyncio.Transport, socket.socket],
) -> None:
    wrapped, _, peer = pair
    wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    wrapped.write(b"{}")
    assert wrapped.get_write_buffer_size() == 40  # held, and counted, until the turn ends
    assert _pending(peer) == b""
    got = await _received(peer, 40)
    assert got == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    wrapped.write(b"later")  # a later turn's writes leave at the end of theirs
    assert await _received(peer, 5) == b"later"


@pytest.mark.parametrize(("ending", "received"), [("close", b"pending"), ("abort", b"")])
async def test_close_sends_what_is_pending_and_abort_drops_it(
    pair: tuple[CoalescedWrites, asyncio.Transport, socket.socket], ending: str, received: bytes
) -> None:
    wrapped, transport, peer = pair
    wrapped.write(b"pending")
    getattr(wrapped, ending)()
    assert transport.is_closing()
    loop = asyncio.get_running_loop()
    got = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(peer, 100), CAP):  # until closed
        got += chunk
    assert got == received


async def test_other_calls_reach_the_transport_under_it(
    pair: tuple[CoalescedWrites, asyncio.Transport, socket.socket],
) -> None:
    wrapped, transport, _ = pair
    assert wrapped.get_extra_info("socket") is transport.get_extra_info("socket")
    assert wrapped.is_closing() is False
