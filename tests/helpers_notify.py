"""Real notification endpoints for tests: an aiosmtpd SMTP server and a tiny asyncio HTTP
receiver, both on 127.0.0.1 (shared by the notification, revocation and event tests)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

__all__ = [
    "Capture",
    "Receiver",
    "Request",
    "field_lines",
    "free_port",
    "http_receiver",
    "smtp_server",
]


def free_port() -> int:
    """A port nothing listens on (bound, then released): a closed port for "server down"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- SMTP server


class Capture:
    """aiosmtpd handler: keeps every envelope and refuses the addresses in ``refuse``."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def message(self, index: int = 0) -> EmailMessage:
        raw = self.envelopes[index].original_content or self.envelopes[index].content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    def raw(self, index: int = 0) -> bytes:
        envelope = self.envelopes[index]
        return bytes(envelope.original_content or envelope.content)


@contextmanager
def smtp_server() -> Iterator[tuple[Capture, int]]:
    """A real SMTP server on 127.0.0.1; yields its handler and port."""
    handler = Capture()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def field_lines(msg: EmailMessage) -> dict[str, str]:
    """The ``key: value`` lines of the fields section (between the header block and the
    signature), which must hold exactly the notification's fields."""
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    blocks = body.get_content().replace("\r\n", "\n").split("\n\n")
    # blocks: subject, event/priority/occurred_at, fields, signature
    return dict(line.split(": ", 1) for line in blocks[2].splitlines())


# ---------------------------------------------------------------- HTTP receiver


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server: answers each request with the next scripted status.

    A request whose ``X-Strongroom-Event`` is in ``hold`` is kept waiting (``held`` is set)
    until the test sets ``release``; ``hang`` keeps every request waiting until the client
    gives up."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hang: bool = False
    hold: set[str] = field(default_factory=set)
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None
    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None

    def url(self, path: str = "/hook") -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}{path}"

    async def start(self) -> None:
        """Listen on ``host`` at ``port`` (0: a free one), over TLS if ``tls`` is set."""
        self.server = await asyncio.start_server(self._handle, self.host, self.port, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release.set()  # nothing stays held once the test is over
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _method, path, _version = (await reader.readline()).decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                key, value = line.decode().split(":", 1)
                headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(path, headers, body))
            if headers.get("x-strongroom-event") in self.hold:
                self.held.set()
                await self.release.wait()
            if self.hang:
                await reader.read()  # until the client gives up and closes
                return
            status, extra = self.script.pop(0) if self.script else (200, {})
            head = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            response = f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n"
            writer.write(f"{response}{head}\r\n".encode())
            await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def http_receiver() -> AsyncIterator[Receiver]:
    """A started :class:`Receiver` on 127.0.0.1, closed afterwards."""
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()
