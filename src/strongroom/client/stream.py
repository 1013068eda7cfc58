"""The answer of a streaming request (the change feed): status, headers, then lines."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from strongroom.core.errors import StoreUnavailableError

__all__ = ["TRANSPORT_ERRORS", "StreamAnswer"]

#: What aiohttp raises when the server cannot be reached or the connection breaks.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
#: A body read from a connection the pool has closed (``reset_connections``) raises
#: RuntimeError in aiohttp: for the reader, the stream was cut all the same.
_CUT = (*TRANSPORT_ERRORS, RuntimeError)


class StreamAnswer:
    """An open streaming answer (the change feed): its status and headers, then its body read
    whole (an error answer) or line by line."""

    __slots__ = ("_addr", "_response", "content", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse, addr: str) -> None:
        self._response = response
        self._addr = addr
        self.status_code = response.status
        self.headers = response.headers
        self.content = b""

    async def aread(self) -> bytes:
        try:
            self.content = await self._response.read()
        except _CUT as exc:
            raise self._lost(exc) from None
        return self.content

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines without their ending (LF or CRLF), as they arrive."""
        reader = self._response.content
        pending = b""
        while True:
            try:
                chunk = await reader.readany()
            except _CUT as exc:
                raise self._lost(exc) from None
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", "replace")

    def _lost(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(f"the stream from {self._addr} was cut ({type(exc).__name__})")
