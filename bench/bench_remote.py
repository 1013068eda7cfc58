"""The remote profile (``python -m bench --only remote``): a real ``strongroom serve`` over
HTTPS on loopback (a subprocess, embedded store) and clients in this process.

- ``get_secret`` served from the client's cache (the change feed connected): goal 50,000/s
  from one task;
- ``get_secret`` uncached (STRONGROOM_CACHE_TTL_SECONDS=0), one task, keep-alive: goal 1,500/s,
  beside the same GET with bare aiohttp, the client's transport (the ratio is what the client
  itself costs), and with bare httpx, its transport before; the server's audit log runs without
  fsync here, so the row measures the client and the network path. Only 200 answers count: a
  refusal raises and ends the run. One more row is the ceiling of any Python server here: bare
  aiohttp against the hello-world app (``bench_http``: FastAPI, one JSON route, the same uvicorn
  options) over HTTPS with the same certificate; no audited read can be faster than it;
- change to invalidation: another client updates the secret; the time from the start of that
  call until the cached reader's entry is gone (the feed delivered the change): goal p99 < 100 ms;
- rotation workers draining due rotations, one worker then two (``bench_workers``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx

from bench.bench_http import HELLO_PATH
from bench.bench_workers import run_workers
from bench.harness import Goal, Measurement, ResultRow, run_async, summarize
from strongroom import SecretsManager, Settings

__all__ = ["run_remote"]

CACHED_GOAL = Goal(">=50k/s", min_ops_per_s=50_000)
UNCACHED_GOAL = Goal(">=1.5k/s", min_ops_per_s=1_500)
INVALIDATION_GOAL = Goal("p99<100ms", max_p99_ms=100.0)
CHANGES, CHANGES_QUICK = 200, 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "strongroom.cli", *args],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@contextmanager
def _server(home: Path) -> Iterator[tuple[str, str, Path]]:
    """``strongroom serve`` over HTTPS with a development CA: (address, admin token, CA)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STRONGROOM_", "DATABASE_URL", "AZURE_"))}  # fmt: skip
    env.update(STRONGROOM_HOME=str(home), LOG_LEVEL="ERROR", STRONGROOM_AUDIT_FSYNC="false")
    # The one identity here reads faster than the per-identity default (500/s, bursts of
    # 1,000) allows; a 429 would end the run, so the limit is raised for this server only.
    env["STRONGROOM_RATE_LIMIT_PER_SECOND"] = "100000"
    _cli(env, "init")
    token = _cli(env, "token", "create", "bench-remote", "--policy", "admin")
    certs = home / "tls"
    _cli(env, "dev-cert", str(certs))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli", "serve", "--port", str(port),
         "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    addr = f"https://127.0.0.1:{port}"
    try:
        _wait_for(f"{addr}/healthz", certs / "ca.pem", "strongroom serve")
        yield addr, token, certs / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(30)


def _wait_for(url: str, ca: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    trust = ssl.create_default_context(cafile=str(ca))
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, verify=trust, timeout=2).is_success:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


@contextmanager
def _hello(certs: Path) -> Iterator[str]:
    """The hello-world app (bench_http) over HTTPS with the server's certificate: its address."""
    port = _free_port()
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_http", "--serve-hello", "--port", str(port),
         "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem")],
        env={**os.environ, "PYTHONPATH": str(root)}, cwd=root,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    addr = f"https://127.0.0.1:{port}"
    try:
        _wait_for(f"{addr}{HELLO_PATH}", certs / "ca.pem", "the hello-world app")
        yield addr
    finally:
        proc.terminate()
        proc.wait(30)


async def _bare_aiohttp(
    addr: str, path: str, ca: Path, token: str, *, seconds: float, rounds: int
) -> Measurement:
    """GET ``path`` from one task with aiohttp alone (keep-alive), every answer checked."""
    async with aiohttp.ClientSession(
        base_url=addr,
        connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca))),
        headers={"Authorization": f"Bearer {token}"},
    ) as session:

        async def get(_slot: int) -> None:
            async with session.get(path) as answer:
                answer.raise_for_status()
                await answer.read()

        return await run_async(get, label=f"aiohttp {path}", seconds=seconds, rounds=rounds)


def _settings(addr: str, token: str, ca: Path, home: Path, ttl: float) -> Settings:
    return Settings(
        STRONGROOM_ADDR=addr,
        STRONGROOM_TOKEN=token,
        STRONGROOM_CACERT=ca,
        STRONGROOM_HOME=home,
        STRONGROOM_CACHE_TTL_SECONDS=ttl,
    )  # type: ignore[call-arg]


async def _invalidation(reader: SecretsManager, writer: SecretsManager, count: int) -> list[int]:
    """Nanoseconds from the start of each update until the reader's cache dropped the value."""
    follower = reader._follower()  # type: ignore[attr-defined]
    assert follower is not None
    await asyncio.wait_for(follower.connected.wait(), 10)
    latencies: list[int] = []
    for k in range(count):
        await reader.get_secret("bench-remote")
        assert len(follower.cache) == 1
        started = time.monotonic_ns()
        await writer.update_secret("bench-remote", f"value-{k}")
        for _ in range(100_000):  # polled every 0.2 ms: a bound of 20 s, never reached
            if not len(follower.cache):
                break
            await asyncio.sleep(0.0002)
        latencies.append(time.monotonic_ns() - started)
    return latencies


async def _measure(
    addr: str, token: str, ca: Path, home: Path, *, seconds: float, rounds: int, quick: bool
) -> list[ResultRow]:
    rows: list[ResultRow] = []
    async with (
        SecretsManager(settings=_settings(addr, token, ca, home, 300)) as cached,
        SecretsManager(settings=_settings(addr, token, ca, home, 0)) as uncached,
    ):
        await uncached.create_secret("bench-remote", "first-value")
        await cached.get_secret("bench-remote")
        follower = cached._follower()  # type: ignore[attr-defined]
        await asyncio.wait_for(follower.connected.wait(), 10)

        async def cached_get(_slot: int) -> None:
            await cached.get_secret("bench-remote")

        async def uncached_get(_slot: int) -> None:
            await uncached.get_secret("bench-remote")

        m = await run_async(cached_get, label="remote cached get", seconds=seconds, rounds=rounds)
        hits = f"{follower.cache.hits:,} cache hits"
        rows.append(ResultRow("remote", "get_secret, cached (feed connected)", m,
                              goal=CACHED_GOAL, note=hits))  # fmt: skip
        m = await run_async(uncached_get, label="remote get", seconds=seconds, rounds=rounds)
        bare = await _bare_aiohttp(
            addr, "/v1/secrets/bench-remote", ca, token, seconds=seconds, rounds=rounds
        )
        with _hello(ca.parent) as hello_addr:
            hello = await _bare_aiohttp(
                hello_addr, HELLO_PATH, ca, token, seconds=seconds, rounds=rounds
            )
        rows.append(ResultRow("remote", "GET hello-world (no store, no audit), bare aiohttp",
                              hello, note="the ceiling of any Python server here"))  # fmt: skip
        ratio = bare.ops_per_s / hello.ops_per_s
        rows.append(ResultRow("remote", "GET /v1/secrets/NAME, bare aiohttp", bare,
                              reference="hello-world", ratio=ratio))  # fmt: skip
        async with httpx.AsyncClient(
            base_url=addr,
            verify=ssl.create_default_context(cafile=str(ca)),
            headers={"Authorization": f"Bearer {token}"},
        ) as raw:

            async def raw_get(_slot: int) -> None:
                (await raw.get("/v1/secrets/bench-remote")).raise_for_status()

            ref = await run_async(raw_get, label="raw get", seconds=seconds, rounds=rounds)
        rows.append(ResultRow("remote", "GET /v1/secrets/NAME, bare httpx", ref))
        rows.append(ResultRow("remote", "get_secret, uncached (HTTPS keep-alive)", m,
                              reference="bare aiohttp", ratio=m.ops_per_s / bare.ops_per_s,
                              goal=UNCACHED_GOAL))  # fmt: skip
        latencies = await _invalidation(cached, uncached, CHANGES_QUICK if quick else CHANGES)
        m = summarize("remote invalidation", 1, latencies, sum(latencies))
        note = f"{len(latencies)} changes"
        rows.append(ResultRow("remote", "change -> other client's cache dropped", m,
                              goal=INVALIDATION_GOAL, note=note))  # fmt: skip
    rows.extend(await run_workers(addr, token, ca, home, quick=quick))
    return rows


async def run_remote(*, quick: bool = False, rounds: int = 5) -> list[ResultRow]:
    """The remote profile's rows (a server subprocess for the run)."""
    seconds = 1.0 if quick else 4.0
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        home = Path(tmp)
        with _server(home / "server") as (addr, token, ca):
            return await _measure(
                addr, token, ca, home / "client", seconds=seconds, rounds=rounds, quick=quick
            )
