"""``strongroom edge`` as a process: it serves the site, survives ``kill -9``, and starts again
while its upstream is cut off, serving its replica within the bound."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from helpers_serve import free_socket, serve, server_settings
from strongroom import Strongroom

VALUE = "gateway-boot-secret-91c2"


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[tuple[Strongroom, Path]]:
    app = await Strongroom.open(server_settings("memory", tmp_path / "central"))
    try:
        yield app, tmp_path
    finally:
        await app.close()


def edge_env(home: Path, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRONGROOM_", "DATABASE_URL", "AZURE_"))}  # fmt: skip
    env.update(STRONGROOM_HOME=str(home), STRONGROOM_EDGE_TOKEN=token, LOG_LEVEL="WARNING")
    return env


async def cli(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "strongroom.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def start_edge(
    env: dict[str, str], upstream: str, ca: Path, port: int
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "strongroom.cli", "edge", "--upstream", upstream,
        "--scope", "site-*", "--upstream-cacert", str(ca), "--port", str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probe:
        for _ in range(600):
            if process.returncode is not None:
                assert process.stderr is not None
                raise AssertionError((await process.stderr.read()).decode())
            try:
                if (await probe.get("/healthz")).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the edge did not start")


async def read(port: int, token: str) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        return await client.get("/v1/secrets/site-radio")


async def test_the_edge_process_survives_kill_9_and_restarts_during_a_cut(
    central: tuple[Strongroom, Path],
) -> None:
    app, tmp = central
    tls = tmp / "tls"
    tls.mkdir()
    home = tmp / "edge"
    with free_socket() as sock:
        port = sock.getsockname()[1]
    async with serve(app, tls_dir=tls) as served:
        async with served.admin() as admin:
            created = await admin.post("/v1/secrets", json={"name": "site-radio", "value": VALUE})
            assert created.status_code == 201
        env = edge_env(home, await served.token_for("site", "read,list:site-*"))
        assert served.ca_path is not None
        upstream, ca = served.base_url, served.ca_path
        edge = await start_edge(env, upstream, ca, port)
        try:
            await cli(env, "policy", "set", "consoles", "--grant", "read:site-*")
            token = await cli(env, "token", "create", "console-1", "--policy", "consoles")
            answer = await read(port, token)
            assert answer.status_code == 200, answer.text
            assert answer.json()["value"] == VALUE
        finally:
            edge.send_signal(signal.SIGKILL)
            await edge.wait()
    # The uplink is down; the edge starts again from its replica and serves within the bound.
    edge = await start_edge(env, upstream, ca, port)
    try:
        answer = await read(port, token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["value"] == VALUE
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probe:
            figures = (await probe.get("/readyz")).json()["edge"]
        assert figures["online"] is False
        assert figures["seconds_left"] > 0
    finally:
        edge.send_signal(signal.SIGTERM)
        assert await edge.wait() == 0
