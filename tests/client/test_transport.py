"""The remote client's transport: addresses, TLS, retries of idempotent calls only, the
credential file, and a token that never shows."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers_remote import remote_server, remote_settings
from helpers_serve import Served, free_socket
from strongroom import SecretsManager, Settings
from strongroom.client import credentials
from strongroom.client.transport import RemoteClient, RemoteConfig, check_addr
from strongroom.core.errors import (
    ConfigurationError,
    InsecureKeyFileError,
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
