"""The remote client's transport: addresses, TLS, retries of idempotent calls only, the
credential file, and a token that never shows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from helpers_remote import remote_server, remote_settings
from helpers_serve import Served, free_socket
from strongroom import SecretsManager, Settings
from strongroom.client import credentials
from strongroom.client.transport import RemoteClient, RemoteConfig, check_addr
from strongroom.core.errors import (
    AuthenticationError,
    ConfigurationError,
    InsecureKeyFileError,
    RateLimitedError,
    StoreUnavailableError,
)

TOKEN = "srt_00112233445566aa_" + "Z" * 43


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with remote_server(tmp_path_factory.mktemp("transport")) as running:
        yield running


def test_addresses_need_https_except_on_loopback() -> None:
    assert check_addr("https://vault.example:8200/") == "https://vault.example:8200"
    assert check_addr("http://127.0.0.1:8200") == "http://127.0.0.1:8200"
    assert check_addr("http://localhost:8200") == "http://localhost:8200"
    assert check_addr("http://[::1]:8200") == "http://[::1]:8200"
    for bad in ("http://10.0.0.5:8200", "ftp://vault:1", "vault:8200", "https://h/v1"):
        with pytest.raises(ConfigurationError):
            check_addr(bad)


def test_the_token_never_shows_in_a_repr(tmp_path: Path) -> None:
    config = RemoteConfig(addr="https://vault.example:8200", token=TOKEN)
    client = RemoteClient(config)
    stored = credentials.Credential("https://vault.example:8200", TOKEN)
    for text in (repr(config), str(config), repr(client), repr(stored), str(stored)):
        assert TOKEN not in text
        assert "Z" * 20 not in text
    asyncio.run(client.close())


class Counter:
    """A TCP port that accepts connections and drops them at once (a server going away),
    counting how many connections each call made."""

    def __init__(self) -> None:
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


async def test_idempotent_calls_retry_with_back_off_and_posts_never(tmp_path: Path) -> None:
    counter = Counter()
    sock = free_socket()
    listener = await asyncio.start_server(counter.handle, sock=sock)
    addr = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = RemoteConfig(addr=addr, token=TOKEN, retries=2, timeout=5)
    try:
        async with RemoteClient(config) as client:
            with pytest.raises(StoreUnavailableError) as failed:
                await client.request("GET", "/v1/secrets")
            assert counter.connections == 3  # the first try and two retries
            assert addr in str(failed.value)
            assert TOKEN not in str(failed.value)
            counter.connections = 0
            with pytest.raises(StoreUnavailableError):
                await client.request("POST", "/v1/secrets", json={"name": "x", "value": "y"})
            assert counter.connections == 1  # may have reached the server: sent once
    finally:
        listener.close()
        await listener.wait_closed()


async def test_nothing_listening_is_store_unavailable_naming_the_address(tmp_path: Path) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    settings = Settings(
        STRONGROOM_ADDR=f"http://127.0.0.1:{port}",
        STRONGROOM_TOKEN=TOKEN,
        STRONGROOM_HOME=tmp_path,
        STRONGROOM_REMOTE_RETRIES=0,
    )
    async with SecretsManager(settings=settings) as manager:
        with pytest.raises(StoreUnavailableError) as failed:
            await manager.get_secret("anything")
    assert f"127.0.0.1:{port}" in str(failed.value)


async def test_an_untrusted_certificate_names_strongroom_cacert(
    server: Served, tmp_path: Path
) -> None:
    settings = remote_settings(server, TOKEN, tmp_path, STRONGROOM_CACERT=None)
    async with SecretsManager(settings=settings) as manager:
        with pytest.raises(ConfigurationError) as failed:
            await manager.list_secrets()
    assert "STRONGROOM_CACERT" in str(failed.value)


def test_the_credential_file_is_private_and_bound_to_its_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config" / "strongroom" / "credentials"
    monkeypatch.setenv("STRONGROOM_CREDENTIALS", str(path))
    assert credentials.load() is None
    credentials.save("https://vault.example:8200/", TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = credentials.load()
    assert loaded is not None
    assert (loaded.addr, loaded.token) == ("https://vault.example:8200", TOKEN)
    same = Settings(STRONGROOM_ADDR="https://vault.example:8200", STRONGROOM_HOME=tmp_path)
    assert RemoteConfig.from_settings(same).token == TOKEN
    other = Settings(STRONGROOM_ADDR="https://elsewhere.example:8200", STRONGROOM_HOME=tmp_path)
    assert RemoteConfig.from_settings(other).token is None  # never sent to another server
    explicit = Settings(
        STRONGROOM_ADDR="https://vault.example:8200",
        STRONGROOM_TOKEN="srt_from_env",
        STRONGROOM_HOME=tmp_path,
    )
    assert RemoteConfig.from_settings(explicit).token == "srt_from_env"  # the variable wins
    os.chmod(path, 0o644)
    with pytest.raises(InsecureKeyFileError):
        credentials.load()
    assert credentials.forget() is True
    assert credentials.forget() is False


class Scripted:
    """A plain HTTP/1.1 server on a real socket that answers from a script, one answer per
    request, and records each request line and its headers."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while self.answers:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *fields = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v for k, _, v in (f.partition(": ") for f in fields if f)}
            await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((line, headers))
            status, body = self.answers.pop(0)
            extra = "retry-after: 7\r\n" if status == 429 else ""
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}"
                f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def scripted(*answers: tuple[int, bytes]) -> AsyncIterator[tuple[Scripted, RemoteClient]]:
    """A scripted server and a client of it (loopback http, one retry)."""
    server = Scripted(*answers)
    sock = free_socket()
    listener = await asyncio.start_server(server.handle, sock=sock)
    config = RemoteConfig(addr=f"http://127.0.0.1:{sock.getsockname()[1]}", token=TOKEN,
                          retries=1, timeout=5)  # fmt: skip
    try:
        async with RemoteClient(config) as client:
            yield server, client
    finally:
        listener.close()
        await listener.wait_closed()


UNAVAILABLE = (503, b'{"error": {"code": "store_unavailable", "message": "try later"}}')


async def test_a_get_answered_503_is_sent_again_and_succeeds() -> None:
    async with scripted(UNAVAILABLE, (200, b'{"name": "one"}')) as (server, client):
        assert await client.request("GET", "/v1/secrets/one") == {"name": "one"}
    assert [line for line, _ in server.requests] == ["GET /v1/secrets/one HTTP/1.1"] * 2


async def test_a_post_answered_503_is_not_sent_again() -> None:
    async with scripted(UNAVAILABLE, (201, b"{}")) as (server, client):
        with pytest.raises(StoreUnavailableError, match="try later"):
            await client.request("POST", "/v1/secrets", json={"name": "x", "value": "y"})
    assert len(server.requests) == 1


async def test_a_put_marked_sent_once_is_never_resent_on_a_dropped_connection() -> None:
    """aiohttp resends a PUT whose connection dropped; a new version must not be added twice."""
    counter = Counter()
    sock = free_socket()
    listener = await asyncio.start_server(counter.handle, sock=sock)
    config = RemoteConfig(addr=f"http://127.0.0.1:{sock.getsockname()[1]}", token=TOKEN,
                          retries=2, timeout=5)  # fmt: skip
    try:
        async with RemoteClient(config) as client:
            with pytest.raises(StoreUnavailableError):
                await client.request("PUT", "/v1/secrets/x", json={"value": "v"}, idempotent=False)
            assert counter.connections == 1
    finally:
        listener.close()
        await listener.wait_closed()


async def test_errors_come_back_typed_and_the_query_is_text() -> None:
    refused = (401, b'{"error": {"code": "unauthorized", "message": "token revoked"}}')
    throttled = (429, b'{"error": {"code": "throttled", "message": "slow down"}}')
    async with scripted(refused, throttled, (204, b"")) as (server, client):
        with pytest.raises(AuthenticationError, match="strongroom login"):
            await client.request("GET", "/v1/auth/self")
        with pytest.raises(RateLimitedError) as limited:
            await client.request("GET", "/v1/secrets", params={"all": True, "limit": 5})
        assert limited.value.retry_after == 7
        params = {"name": ["a", "b"], "pending": False, "since": None}
        assert await client.request("GET", "/v1/revocations", params=params) is None
    lines = [line for line, _ in server.requests]
    assert lines[1] == "GET /v1/secrets?all=true&limit=5 HTTP/1.1"
    assert lines[2] == "GET /v1/revocations?name=a&name=b&pending=false HTTP/1.1"
    for _, headers in server.requests:
        assert headers["authorization"] == f"Bearer {TOKEN}"
        assert "cookie" not in headers


async def test_a_certificate_from_another_ca_names_strongroom_cacert(
    server: Served, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(other)
    config = RemoteConfig(addr=server.base_url, token=TOKEN, cacert=other, retries=2)
    async with RemoteClient(config) as client:
        with pytest.raises(ConfigurationError, match="STRONGROOM_CACERT"):
            await client.request("GET", "/v1/auth/self")
        with pytest.raises(ConfigurationError, match="STRONGROOM_CACERT"):
            async with client.stream("/v1/events/feed"):
                pass


async def test_a_stream_cut_midway_is_store_unavailable(server: Served) -> None:
    token = await server.token_for("stream-cut", "read,list:sc-*")
    assert server.ca_path is not None
    config = RemoteConfig(addr=server.base_url, token=token, cacert=server.ca_path)
    async with RemoteClient(config) as client:
        async with client.stream("/v1/events/feed", headers={"Last-Event-ID": "0"}) as answer:
            assert answer.status_code == 200
            lines = answer.aiter_lines()
            await anext(lines)  # the stream is open and speaking
            await client.reset_connections()  # every connection of the pool goes
            with pytest.raises(StoreUnavailableError, match=server.base_url):
                async for _ in lines:
                    pass
        who = await client.request("GET", "/v1/auth/self")  # a new pool on the next call
        assert who["identity"] == "stream-cut"
