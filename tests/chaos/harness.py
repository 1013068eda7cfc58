"""What the chaos scenarios share: the real ``strongroom serve`` in a subprocess that can be
killed, a load of concurrent clients that records every answer, PostgreSQL backends to
terminate (only this run's, by application name) and a small tmpfs to fill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import httpx

from helpers_settings import PG_URL, new_master_key
from strongroom import Settings, Strongroom

CAP = 30.0  # no wait is longer; a request slower than HUNG counts as hung
HUNG = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_application_name(dsn: str, name: str) -> str:
    """``dsn`` whose connections carry ``name`` as application_name (found again in
    pg_stat_activity, so a scenario terminates its own server's backends and nobody else's)."""
    parts = urlsplit(dsn)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"application_name": name})))


def service_env(backend: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a service on ``backend`` whose data lives in ``home`` (and, on
    PostgreSQL, in a schema and an application name of its own)."""
    tag = secrets.token_hex(5)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")},
        "STRONGROOM_BACKEND": backend,
        "STRONGROOM_HOME": str(home),
        "STRONGROOM_MASTER_KEY": new_master_key(),
        "STRONGROOM_RATE_LIMIT_PER_SECOND": "0",
        "STRONGROOM_AUDIT_TIMEOUT_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    if backend == "postgres":
        env["DATABASE_URL"] = with_application_name(PG_URL, f"chaos-{tag}")
        env["STRONGROOM_PG_SCHEMA"] = f"chaos_{tag}"
    else:
        env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


async def admin_token(env: dict[str, str]) -> str:
    """An admin token, issued through the library against the service's own store."""
    settings = Settings(**{k: v for k, v in env.items() if k.startswith(("STRONGROOM_", "DATA"))})
    app = await Strongroom.open(settings)
    try:
        return (await app.access.create_token("chaos-admin", policies=["admin"])).token
    finally:
        await app.close()


async def drop_schema_of(env: dict[str, str]) -> None:
    schema = env.get("STRONGROOM_PG_SCHEMA")
    if schema is None:
        return
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@dataclass
class Service:
    """``strongroom serve`` in a subprocess; ``kill9`` ends it as a crash would."""

    env: dict[str, str]
    log_dir: Path | None = None  # default: beside STRONGROOM_HOME
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = free_port()
        folder = self.log_dir or Path(self.env["STRONGROOM_HOME"]).parent
        log = folder / f"serve-{self.port}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once: the server runs on)
                [sys.executable, "-m", "strongroom.cli", "serve", "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited:\n{self.log()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise AssertionError(f"serve did not answer:\n{self.log()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(CAP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(CAP)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())


@dataclass
class Tally:
    """Every answer a load saw: statuses, hung requests, 503s without Retry-After."""

    statuses: dict[int, int] = field(default_factory=dict)
    hung: int = 0
    errors: int = 0  # connection errors (the server was down or closed the connection)
    no_retry_after: int = 0
    last_success: float = 0.0

    def record(self, response: httpx.Response) -> None:
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if response.status_code == 503 and "retry-after" not in response.headers:
            self.no_retry_after += 1
        if response.status_code < 400:
            self.last_success = time.monotonic()

    def count(self, *codes: int) -> int:
        return sum(self.statuses.get(c, 0) for c in codes)

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500 and code != 503)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


async def timed(tally: Tally, call: Awaitable[httpx.Response]) -> httpx.Response | None:
    """One request, recorded; None if it failed to connect or hung (counted)."""
    try:
        response = await asyncio.wait_for(call, HUNG)
    except TimeoutError:
        tally.hung += 1
        return None
    except httpx.HTTPError:
        tally.errors += 1
        return None
    tally.record(response)
    return response


async def run_until(stop: asyncio.Event, workers: list[Callable[[], Awaitable[None]]]) -> None:
    """Run each worker in a loop until ``stop`` is set."""

    async def loop(work: Callable[[], Awaitable[None]]) -> None:
        while not stop.is_set():
            await work()

    await asyncio.gather(*(loop(w) for w in workers))


async def wait_for(condition: Callable[[], bool], what: str, limit: float = CAP) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def terminate_backends(application_name: str) -> int:
    """Terminate every PostgreSQL backend of this service (found by application name)."""
    conn = await asyncpg.connect(PG_URL)
    try:
        killed: list[Any] = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> pg_backend_pid()",
            application_name,
        )
        return len(killed)
    finally:
        await conn.close()


def application_name(env: dict[str, str]) -> str:
    query = urlsplit(env["DATABASE_URL"]).query
    return dict(p.split("=", 1) for p in query.split("&"))["application_name"]


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the block; unmounted even on failure."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True, capture_output=True, timeout=CAP)  # fmt: skip
    try:
        yield path
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, timeout=CAP, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=CAP,
                           check=False)  # fmt: skip


def fill(path: Path) -> Path:
    """Write to ``path/filler`` until the file system is full; the filler's path."""
    filler = path / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
        small = b"\0" * 512
        try:
            while True:
                out.write(small)
        except OSError:
            pass
    return filler


class FreezableProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``frozen`` holds every byte in both directions
    (a store that stops answering without closing anything), until it is thawed."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def frozen(self) -> bool:
        return not self._thawed.is_set()

    @frozen.setter
    def frozen(self, on: bool) -> None:
        if on:
            self._thawed.clear()
        else:
            self._thawed.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                await self._thawed.wait()
                sink.write(data)
                await sink.drain()
        sink.close()
