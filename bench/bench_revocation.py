"""Break-glass revocation: from ``request_revocation(immediate=True)`` to the first refused read,
on the sqlite and postgres stores.

Each store gets a fresh home (a temporary ``STRONGROOM_HOME`` for sqlite, a schema
``bench_rev_<random>`` for postgres, dropped afterwards), opened with ``Strongroom.open`` so the
migrations run, auditing on (the default) and no e-mail or webhook configured: the dispatcher
holds the log notifier only, which is what "notifications excluded" means here (its log lines go
to /dev/null during the run, so the console stays readable; they are still rendered). The secrets
are created through ``SecretsManager`` first.

For each secret, one at a time: a reader task polls ``SecretsManager.get_secret`` on it in a
loop; once it has read the value, the bench calls

    await EmergencyRevoke(app).request_revocation(RevocationRequest(
        secret_name=..., reason="key_compromise", requested_by="bench", severity="critical",
        immediate=True))

and records (all on ``time.monotonic_ns``, measured from the call's start):

- the call's wall time (approval, execution, the log notifications, the final status read);
- when ``store.revoke_all`` returned (the versions' revocation committed);
- when the reader first got ``SecretRevokedError`` (its refused read's audit event committed
  too). A read takes some time, so this is up to one read later than the commit.

Then the same with the reader in a second process (``python -m bench.bench_revocation
--reader``, the same settings through the environment), which reports the monotonic time of its
first refusal (CLOCK_MONOTONIC is system-wide, so the two processes' clocks compare).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from pydantic import SecretStr

from bench.bench_store import PG_URL
from bench.harness import Goal, Measurement, ResultRow, fmt_ms, summarize
from strongroom import Backend, SecretRevokedError, SecretsManager, Settings, Strongroom
from strongroom.core.logging import configure_logging
from strongroom.core.models import SecretType
from strongroom.core.revocation import RevocationRequest
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke

__all__ = ["SECRETS", "SECRETS_QUICK", "RevocationRun", "run_revocation"]

BACKENDS = ("sqlite", "postgres")
#: Revocations measured per store and per reader kind (after ``WARMUP`` unmeasured ones).
SECRETS = 100
SECRETS_QUICK = 10
WARMUP = 3
#: No reader may take longer than this to be ready or to see the refusal.
_TIMEOUT_S = 10.0
#: A store's further revocations are skipped once its measured ones took this long in all.
_BUDGET_S = 25.0
_GOAL = Goal("p99<50ms", max_p99_ms=50.0)
_NS_PER_MS = 1_000_000
_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RevocationRun:
    """The revocation benchmarks' rows, plus lines printed under the table."""

    rows: list[ResultRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Timings:
    """Nanoseconds from each ``request_revocation`` call's start."""

    calls: list[int] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    #: Every successful read's latency (the reader's polling interval).
    reads: list[int] = field(default_factory=list)


def _request(name: str) -> RevocationRequest:
    return RevocationRequest(
        secret_name=name,
        reason="key_compromise",
        requested_by="bench",
        severity="critical",
        immediate=True,
    )


def _name(i: int) -> str:
    return f"rev-{i:04d}"


@contextmanager
def _logs_to_devnull() -> Iterator[None]:
    """Strongroom's log lines (three WARNINGs per break-glass revocation) rendered to
    /dev/null rather than the console, then the previous destination back."""
    previous = structlog.get_config()["logger_factory"]
    with open(os.devnull, "w", encoding="utf-8") as sink:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sink))
        try:
            yield
        finally:
            structlog.configure(logger_factory=previous)


# -- the store ------------------------------------------------------------------------------


async def _postgres_reachable(pg_url: str) -> str | None:
    try:
        await (await asyncpg.connect(pg_url, timeout=5)).close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable ({type(exc).__name__}: {exc})"
    return None


@asynccontextmanager
async def _open(backend: str, pg_url: str) -> AsyncIterator[tuple[Strongroom, dict[str, str]]]:
    """A fresh, empty store of this kind with auditing on and no e-mail or webhooks, and the
    environment that opens the same store in another process; everything is removed after."""
    master_key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    schema = f"bench_rev_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-rev-") as home:
        env = {
            "STRONGROOM_BACKEND": backend,
            "STRONGROOM_HOME": home,
            "DATABASE_URL": pg_url,
            "STRONGROOM_PG_SCHEMA": schema,
            "STRONGROOM_MASTER_KEY": master_key,
        }
        settings = Settings(
            STRONGROOM_BACKEND=Backend(backend),
            STRONGROOM_HOME=Path(home),
            DATABASE_URL=SecretStr(pg_url),
            STRONGROOM_PG_SCHEMA=schema,
            STRONGROOM_MASTER_KEY=SecretStr(master_key),
            STRONGROOM_SMTP_HOST=None,
            STRONGROOM_WEBHOOK_URLS=None,
        )
        try:
            app = await Strongroom.open(settings)
            try:
                kinds = [type(n).__name__ for n in app.notifier.notifiers]
                if kinds != ["LogNotifier"]:
                    raise RuntimeError(f"expected the log notifier only, got {kinds}")
                yield app, env
            finally:
                await app.close()
        finally:
            if backend == "postgres":
                conn = await asyncpg.connect(pg_url, timeout=5)
                try:
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                finally:
                    await conn.close()


async def _create_secrets(app: Strongroom, names: Sequence[str]) -> None:
    manager = SecretsManager(app)
    gate = asyncio.Semaphore(16)

    async def create(name: str) -> None:
        async with gate:
            await manager.create_secret(name, secrets.token_urlsafe(48), SecretType.API_KEY)

    await asyncio.gather(*(create(name) for name in names))


@contextmanager
def _mark_revoke_all(app: Strongroom, marks: dict[str, int]) -> Iterator[None]:
    """Record when ``app.store.revoke_all`` returns for each name (its commit is done)."""
    store = app.store
    original = store.revoke_all

    async def timed(name: str, revoked_at: datetime) -> int:
        count = await original(name, revoked_at)
        marks[name] = time.monotonic_ns()
        return count

    store.revoke_all = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        del store.revoke_all  # the class's method again


async def _revoke(revoke: EmergencyRevoke, name: str) -> int:
    """The call under test; checks it revoked the one version. Returns its start time."""
    t0 = time.monotonic_ns()
    status = await revoke.request_revocation(_request(name))
    if status["versions_revoked"] != 1 or status["error"] is not None:
        raise RuntimeError(f"{name}: revocation ended {status['status']}: {status['error']}")
    return t0


# -- a reader in this process ---------------------------------------------------------------


async def _poll(manager: SecretsManager, name: str, ready: asyncio.Event, reads: list[int]) -> int:
    """Read ``name`` until it is refused; returns when the refusal was seen."""
    clock = time.monotonic_ns
    while True:
        t = clock()
        try:
            await manager.get_secret(name)
        except SecretRevokedError:
            return clock()
        reads.append(clock() - t)
        ready.set()


async def _in_process(
    app: Strongroom, names: Sequence[str], warmup: int, budget_s: float
) -> _Timings:
    manager = SecretsManager(app)
    revoke = EmergencyRevoke(app)
    out = _Timings()
    marks: dict[str, int] = {}
    spent = 0
    with _mark_revoke_all(app, marks):
        for k, name in enumerate(names):
            if spent / 1e9 > budget_s:
                break
            ready = asyncio.Event()
            reads: list[int] = []
            reader = asyncio.create_task(_poll(manager, name, ready, reads))
            try:
                await asyncio.wait_for(ready.wait(), _TIMEOUT_S)
                t0 = await _revoke(revoke, name)
                t1 = time.monotonic_ns()
                refused_at = await asyncio.wait_for(reader, _TIMEOUT_S)
            finally:
                reader.cancel()
            if k < warmup:
                continue
            spent += t1 - t0
            out.calls.append(t1 - t0)
            out.stored.append(marks[name] - t0)
            out.refused.append(refused_at - t0)
            out.reads += reads
    return out


# -- a reader in another process ------------------------------------------------------------


async def _reader_process() -> int:
    """``--reader``: for each name on stdin, read it until refused; write ``ready`` after the
    first successful read, then the monotonic time of the refusal and the median read."""
    configure_logging("ERROR")
    clock = time.monotonic_ns
    async with await Strongroom.open(Settings()) as app:
        manager = SecretsManager(app)
        while name := (await asyncio.to_thread(sys.stdin.readline)).strip():
            reads: list[int] = []
            while True:
                t = clock()
                try:
                    await manager.get_secret(name)
                except SecretRevokedError:
                    refused_at = clock()
                    break
                reads.append(clock() - t)
                if len(reads) == 1:
                    print("ready", flush=True)
            print(f"{refused_at} {int(statistics.median(reads))}", flush=True)
    return 0


class _Child:
    """The ``--reader`` process, talked to one line at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, env: dict[str, str]) -> _Child:
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STRONGROOM_", "DATABASE_URL", "AZURE_"))
        }
        environ.update(env)
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_ROOT), environ.get("PYTHONPATH", "")) if p
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bench_revocation", "--reader",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=environ, cwd=_ROOT,
        )  # fmt: skip
        return cls(proc)

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), _TIMEOUT_S)
        if not raw:
            raise RuntimeError(f"the reader process ended: {await self._stderr()}")
        return raw.decode().strip()

    async def watch(self, name: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{name}\n".encode())
        await self.proc.stdin.drain()
        if (answer := await self.line()) != "ready":
            raise RuntimeError(f"the reader process said {answer!r}")

    async def _stderr(self) -> str:
        assert self.proc.stderr is not None
        await self.proc.wait()
        return (await self.proc.stderr.read()).decode(errors="replace")[-2000:]

    async def close(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), _TIMEOUT_S)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _other_process(
    app: Strongroom, env: dict[str, str], names: Sequence[str], warmup: int, budget_s: float
) -> _Timings:
    revoke = EmergencyRevoke(app)
    out = _Timings()
    marks: dict[str, int] = {}
    spent = 0
    child = await _Child.start(env)
    try:
        with _mark_revoke_all(app, marks):
            for k, name in enumerate(names):
                if spent / 1e9 > budget_s:
                    break
                await child.watch(name)
                t0 = await _revoke(revoke, name)
                t1 = time.monotonic_ns()
                refused_at, read_ns = (int(x) for x in (await child.line()).split())
                if k < warmup:
                    continue
                spent += t1 - t0
                out.calls.append(t1 - t0)
                out.stored.append(marks[name] - t0)
                out.refused.append(refused_at - t0)
                out.reads.append(read_ns)
    finally:
        await child.close()
    return out


# -- report ---------------------------------------------------------------------------------


def _measure(label: str, latencies: list[int]) -> Measurement:
    """One revocation per op: ops = revocations, p50/p99 over them."""
    return summarize(label, 1, latencies, sum(latencies))


def _p50(values: Sequence[int]) -> str:
    return f"{fmt_ms(statistics.median(values) / _NS_PER_MS)} ms" if values else "-"


def _rows(section: str, reader: str, t: _Timings) -> list[ResultRow]:
    if not t.calls:
        return []
    read_note = f"reader get_secret p50 {_p50(t.reads)}"
    return [
        ResultRow(
            section,
            f"{reader}: call -> first refused read",
            _measure(f"{section} {reader} refused", t.refused),
            goal=_GOAL,
            note=f"{len(t.refused)} revocations; {read_note}; "
            f"max {fmt_ms(max(t.refused) / _NS_PER_MS)} ms",
        ),
        ResultRow(
            section,
            f"{reader}: call -> revoke_all committed",
            _measure(f"{section} {reader} stored", t.stored),
            note="where the refusal becomes possible",
        ),
        ResultRow(
            section,
            f"{reader}: request_revocation(immediate)",
            _measure(f"{section} {reader} call", t.calls),
            goal=_GOAL,
            note="whole call: log notifications and status read included",
        ),
    ]


async def _bench_backend(
    backend: str, run: RevocationRun, *, pg_url: str, count: int, other_process: bool
) -> None:
    section = f"revocation {backend}"
    per_pass = WARMUP + count
    async with _open(backend, pg_url) as (app, env):
        names = [_name(i) for i in range(2 * per_pass if other_process else per_pass)]
        t0 = time.perf_counter()
        await _create_secrets(app, names)
        created_s = time.perf_counter() - t0
        with _logs_to_devnull():
            same = await _in_process(app, names[:per_pass], WARMUP, _BUDGET_S)
            run.rows += _rows(section, "same process", same)
            if other_process:
                other = await _other_process(app, env, names[per_pass:], WARMUP, _BUDGET_S)
                run.rows += _rows(section, "other process", other)
        run.notes.append(
            f"{section}: {len(names)} secrets created in {created_s:.1f} s; "
            f"{WARMUP} unmeasured revocations first per reader"
        )


async def run_revocation(
    *,
    pg_url: str = PG_URL,
    quick: bool = False,
    backends: Sequence[str] = BACKENDS,
    other_process: bool = True,
    progress: Callable[[str], None] = lambda text: print(
        f"  measuring {text} ...", file=sys.stderr, flush=True
    ),
) -> RevocationRun:
    """Measure break-glass revocations on each of ``backends``."""
    run = RevocationRun()
    count = SECRETS_QUICK if quick else SECRETS
    run.info = {"revocations": count, "warmup": WARMUP, "other_process": other_process}
    run.notes.append(
        "revocation: request_revocation(immediate=True, severity=critical) while a reader polls "
        "get_secret on that secret; times from the call's start; auditing on, no e-mail or "
        "webhook configured (log notifier only: notifications excluded); one revocation at a "
        "time; refusal seen up to one read after revoke_all commits"
    )
    if other_process:
        run.notes.append(
            "revocation: 'other process' = the reader in a second process, whose audited reads "
            "commit through its own writer: on SQLite every commit of the revocation then "
            "competes for the file's write lock (SQLite's busy_timeout back-off sleeps 1-100 ms)"
        )
    for backend in backends:
        if backend == "postgres" and (down := await _postgres_reachable(pg_url)):
            run.skipped.append(f"revocation postgres: SKIPPED - {down}")
            continue
        progress(f"{backend} revocation ({count} + {WARMUP} per reader)")
        await _bench_backend(backend, run, pg_url=pg_url, count=count, other_process=other_process)
    return run


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_revocation")
    parser.add_argument("--reader", action="store_true", help="the second-process reader")
    args = parser.parse_args(argv)
    if not args.reader:
        parser.error("run the benchmark with: python -m bench --only revocation")
    return asyncio.run(_reader_process())


if __name__ == "__main__":
    raise SystemExit(_main())
