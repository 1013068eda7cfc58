"""Token revocation across workers: from ``revoke_token`` in one process to the first refused
authentication in another (``python -m bench --only auth``), on the sqlite and postgres stores.

The other process (``python -m bench.bench_auth --reader``, the same settings through the
environment) authenticates a token over and over, so its verified-token cache holds it (the
cache lasts ``STRONGROOM_AUTH_CACHE_SECONDS``, set to 60 here so that expiry cannot be what
ends it); once it says ``ready``, this process revokes the token and the reader reports the
monotonic time of its first refusal (CLOCK_MONOTONIC is system-wide, so the clocks compare).
On PostgreSQL the refusal comes from LISTEN/NOTIFY, on SQLite from the generation check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence

from bench.bench_revocation import _open, _postgres_reachable
from bench.bench_store import PG_URL
from bench.harness import Goal, ResultRow, fmt_ms, summarize
from strongroom import Settings, Strongroom
from strongroom.core.errors import AuthenticationError
from strongroom.core.logging import configure_logging

__all__ = ["run_auth"]

BACKENDS = ("sqlite", "postgres")
TOKENS, TOKENS_QUICK, WARMUP = 100, 10, 3
_GOAL = Goal("p99<100ms", max_p99_ms=100.0)
_TIMEOUT_S = 10.0
_CACHE_SECONDS = "60"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def _reader_process() -> int:
    """``--reader``: for each token on stdin, authenticate until refused; ``ready`` after the
    first success, then the refusal's monotonic time and the median authentication."""
    configure_logging("ERROR")
    clock = time.monotonic_ns
    async with await Strongroom.open(Settings()) as app:
        while token := (await asyncio.to_thread(sys.stdin.readline)).strip():
            checks: list[int] = []
            while True:
                t = clock()
                try:
                    await app.access.authenticate(token)
                except AuthenticationError:
                    refused_at = clock()
                    break
                checks.append(clock() - t)
                if len(checks) == 1:
                    print("ready", flush=True)
                await asyncio.sleep(0)  # let the LISTEN connection deliver notifications
            print(f"{refused_at} {int(statistics.median(checks))}", flush=True)
    return 0


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), _TIMEOUT_S)
    if not raw:
        assert proc.stderr is not None
        raise RuntimeError(f"the reader ended: {(await proc.stderr.read()).decode()[-2000:]}")
    return raw.decode().strip()


async def _measure(app: Strongroom, env: dict[str, str], count: int) -> tuple[list[int], list[int]]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("STRONGROOM_", "DATABASE_URL", "AZURE_"))}  # fmt: skip
    environ.update(env, STRONGROOM_AUTH_CACHE_SECONDS=_CACHE_SECONDS)
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, environ.get("PYTHONPATH")) if p)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_auth", "--reader", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environ, cwd=_ROOT,
    )  # fmt: skip
    refused: list[int] = []
    checks: list[int] = []
    assert proc.stdin is not None
    try:
        for k in range(WARMUP + count):
            issued = await app.access.create_token(f"bench-{k}")
            proc.stdin.write(f"{issued.token}\n".encode())
            await proc.stdin.drain()
            if (answer := await _line(proc)) != "ready":
                raise RuntimeError(f"the reader said {answer!r}")
            t0 = time.monotonic_ns()
            await app.access.revoke_token(issued.record.id)
            refused_at, check_ns = (int(x) for x in (await _line(proc)).split())
            if k >= WARMUP:
                refused.append(refused_at - t0)
                checks.append(check_ns)
    finally:
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), _TIMEOUT_S)
    return refused, checks


async def run_auth(
    *, pg_url: str = PG_URL, quick: bool = False
) -> tuple[list[ResultRow], list[str]]:
    """Rows for each store, and notes (skips included)."""
    rows: list[ResultRow] = []
    notes = [
        "auth: revoke_token in this process -> first refused authenticate in another process "
        f"holding the token in its cache (STRONGROOM_AUTH_CACHE_SECONDS={_CACHE_SECONDS}); "
        "PostgreSQL: LISTEN/NOTIFY, SQLite: generation check per cached use"
    ]
    count = TOKENS_QUICK if quick else TOKENS
    for backend in BACKENDS:
        if backend == "postgres" and (down := await _postgres_reachable(pg_url)):
            notes.append(f"auth postgres: SKIPPED - {down}")
            continue
        print(f"  measuring {backend} token revocation ...", file=sys.stderr, flush=True)
        async with _open(backend, pg_url) as (app, env):
            refused, checks = await _measure(app, env, count)
        p50_check = fmt_ms(statistics.median(checks) / 1e6)
        rows.append(ResultRow(
            f"auth {backend}", "revoke -> refused on another worker",
            summarize(f"auth {backend} revoke", 1, refused, sum(refused)), goal=_GOAL,
            note=f"{len(refused)} tokens; reader authenticate p50 {p50_check} ms",
        ))  # fmt: skip
    return rows, notes


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_auth")
    parser.add_argument("--reader", action="store_true", help="the second-process reader")
    args = parser.parse_args(argv)
    if not args.reader:
        parser.error("run the benchmark with: python -m bench --only auth")
    return asyncio.run(_reader_process())


if __name__ == "__main__":
    raise SystemExit(_main())
