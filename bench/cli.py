"""``python -m bench``: run the benchmarks, print one table, write bench/results/latest.json.

Crypto references, then each store's get_secret/update_secret, then the audit benchmarks (audited
vs unaudited reads, the audit writer's ingest rate, audit queries over a generated dataset),
then the rotation scheduler (one due check over 100,000 configurations, rotating the 1,000 due),
then the command line's start-up (``strongroom secret get`` in a fresh process, see bench_cli),
then break-glass revocation (request_revocation(immediate=True) to the first refused read),
then the running server over HTTP under wrk (audited reads vs a FastAPI hello-world and OpenBao;
see bench_http).

Timings never fail the run: goals are printed as PASS or MISS. The exit status is 1 only when a
benchmark could not run because something raised (a skipped, unreachable PostgreSQL is not that),
or when an HTTP run got non-2xx answers or left reads unaudited (its numbers would be invalid).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import shutil
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.bench_audit import (
    INGEST_TASKS,
    QUERY_EVENTS,
    QUERY_EVENTS_QUICK,
    AuditRun,
    close_datasets,
    run_audit,
)
from bench.bench_auth import run_auth
from bench.bench_azure import run_azure
from bench.bench_cli import run_cli
from bench.bench_console import run_console
from bench.bench_crypto import run_crypto
from bench.bench_custody import run_custody
from bench.bench_edge import run_edge
from bench.bench_http import CONNECTIONS, HttpRun, run_http
from bench.bench_keys import run_keys
from bench.bench_regions import run_regions
from bench.bench_remote import run_remote
from bench.bench_revocation import RevocationRun, run_revocation
from bench.bench_rotation import RotationRun, run_rotation
from bench.bench_store import BACKENDS, PG_URL, StoreRun, run_store
from bench.harness import ResultRow, fmt_ms, fmt_rate, fmt_ratio, render_table
from strongroom.core.logging import configure_logging

__all__ = ["main"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_HEADERS = (
    "section", "operation", "tasks", "ops", "ops/s", "spread", "p50 ms", "p99 ms",
    "ratio", "vs", "goal", "result", "note",
)  # fmt: skip
_ALIGN = "llrrrrrrrllll"
AUDIT = "audit"
ROTATION = "rotation"
CLI = "cli"
REVOCATION = "revocation"
HTTP = "http"
AZURE = "azure"
CONSOLE = "console"
AUTH = "auth"
REMOTE = "remote"
EDGE = "edge"
KEYS = "keys"
CUSTODY = "custody"
REGIONS = "regions"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        choices=(
            *BACKENDS,
            AUDIT,
            ROTATION,
            CLI,
            REVOCATION,
            HTTP,
            AZURE,
            CONSOLE,
            AUTH,
            REMOTE,
            EDGE,
            KEYS,
            CUSTODY,
            REGIONS,
        ),
        help="measure one store (crypto runs too), or only the audit, rotation, CLI, "
        "revocation or HTTP benchmarks",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test, noisy)")
    parser.add_argument("--seconds", type=float, help="time budget per measurement")
    parser.add_argument(
        "--tasks",
        default="1,32",
        help="comma-separated concurrent task counts for the store runs (default: 1,32)",
    )
    parser.add_argument(
        "--ingest-tasks",
        default=",".join(str(t) for t in INGEST_TASKS),
        help="comma-separated concurrent task counts for the audit ingest runs "
        f"(default: {','.join(str(t) for t in INGEST_TASKS)})",
    )
    parser.add_argument(
        "--audit-events",
        type=int,
        help=f"events in the audit query dataset (default: {QUERY_EVENTS:,}; "
        f"{QUERY_EVENTS_QUICK:,} with --quick)",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="EXPLAIN (ANALYZE, BUFFERS) every audit query, not only those that miss their goal",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement (median)")
    parser.add_argument(
        "--http-seconds",
        type=float,
        help="measured seconds per HTTP configuration (default: 10; 3 with --quick)",
    )
    parser.add_argument(
        "--http-connections",
        type=int,
        default=CONNECTIONS,
        help=f"wrk connections for the HTTP benchmark (default: {CONNECTIONS})",
    )
    parser.add_argument(
        "--http-rounds",
        type=int,
        default=1,
        help="rounds of every HTTP configuration, each on a fresh server (median; default: 1)",
    )
    parser.add_argument("--pg-url", default=PG_URL, help="PostgreSQL URL (default: DATABASE_URL)")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        help="strongroom log level during the run (INFO writes a log line per update)",
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS_DIR / "latest.json", help="where to write results"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        nargs="?",
        const=RESULTS_DIR / "profile.pstats",
        help="profile the store and audit runs with cProfile (main thread only: not the crypto "
        "references, not the SQLite writer thread), dump the stats here and print the top entries",
    )
    args = parser.parse_args(argv)
    try:
        args.task_counts = [int(t) for t in args.tasks.split(",") if t.strip()]
        args.ingest_task_counts = [int(t) for t in args.ingest_tasks.split(",") if t.strip()]
    except ValueError:
        parser.error("--tasks and --ingest-tasks take integers, e.g. 1,32")
    if not args.task_counts or min(args.task_counts) < 1:
        parser.error("--tasks takes positive integers, e.g. 1,32")
    if not args.ingest_task_counts or min(args.ingest_task_counts) < 1:
        parser.error("--ingest-tasks takes positive integers, e.g. 1,32,256")
    if args.audit_events is None:
        args.audit_events = QUERY_EVENTS_QUICK if args.quick else QUERY_EVENTS
    if args.audit_events < 1:
        parser.error("--audit-events takes a positive integer")
    if args.rounds < 1:
        parser.error("--rounds takes a positive integer")
    if args.seconds is None:
        args.seconds = 0.5 if args.quick else 2.5
    args.warmup = 0.1 if args.quick else 0.4
    return args


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        head = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}{'+dirty' if dirty else ''}"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _environment(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "event_loop": type(asyncio.new_event_loop()).__name__,
        "cryptography": _version("cryptography"),
        "asyncpg": _version("asyncpg"),
        "sqlite": sqlite3.sqlite_version,
        "seconds_per_measurement": args.seconds,
        "warmup_seconds": args.warmup,
        "tasks": args.task_counts,
        "ingest_tasks": args.ingest_task_counts,
        "audit_events": args.audit_events,
        "log_level": args.log_level,
        "profiled": args.profile is not None,
        "rounds": args.rounds,
        "load_before": _load(),
    }


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _serial(row: ResultRow) -> bool:
    """True when one task ran every operation: the operation never yielded to the loop."""
    m = row.measurement
    return m.concurrency > 1 and m.task_ops_min == 0


def _table_row(row: ResultRow) -> list[str]:
    m = row.measurement
    return [
        row.section,
        row.operation,
        "-" if row.section == "crypto" else f"{m.concurrency}{'*' if _serial(row) else ''}",
        f"{m.ops:,}",
        fmt_rate(m.ops_per_s),
        f"{m.spread:.0%}" if m.spread is not None else "",
        fmt_ms(m.p50_ms),
        fmt_ms(m.p99_ms),
        fmt_ratio(row.ratio),
        row.reference or "",
        row.goal.text if row.goal else "",
        row.status,
        row.note or "",
    ]


async def _run(
    args: argparse.Namespace, profiler: cProfile.Profile | None
) -> tuple[
    list[ResultRow],
    list[StoreRun],
    AuditRun | None,
    RotationRun | None,
    RevocationRun | None,
    HttpRun | None,
    list[str],
]:
    try:
        return await _run_all(args, profiler)
    finally:
        # The audit query dataset is shared by everything in this run; it goes at the end.
        await close_datasets()


async def _run_all(
    args: argparse.Namespace, profiler: cProfile.Profile | None
) -> tuple[
    list[ResultRow],
    list[StoreRun],
    AuditRun | None,
    RotationRun | None,
    RevocationRun | None,
    HttpRun | None,
    list[str],
]:
    errors: list[str] = []
    rows: list[ResultRow] = []
    if args.only not in (AUDIT, ROTATION, CLI, REVOCATION, HTTP, AUTH, REMOTE, EDGE, KEYS, CUSTODY):
        rows = run_crypto(
            seconds=min(args.seconds, 2.0), warmup_seconds=args.warmup, rounds=args.rounds
        )
    references = {r.operation: r.measurement.ops_per_s for r in rows}
    stores: list[StoreRun] = []
    backends: Sequence[str] = (
        ()
        if args.only in (AUDIT, ROTATION, CLI, REVOCATION, HTTP, AUTH, REMOTE, EDGE, KEYS, CUSTODY)
        else [args.only]
        if args.only
        else BACKENDS
    )
    for backend in backends:
        print(f"  measuring {backend} ...", file=sys.stderr, flush=True)
        if profiler is not None:
            profiler.enable()
        try:
            run = await run_store(
                backend,
                references=references,
                tasks=args.task_counts,
                seconds=args.seconds,
                warmup_seconds=args.warmup,
                rounds=args.rounds,
                pg_url=args.pg_url,
            )
        except Exception as exc:
            traceback.print_exc()
            errors.append(f"{backend}: {type(exc).__name__}: {exc}")
            run = StoreRun(backend, skipped=f"error: {type(exc).__name__}")
        finally:
            if profiler is not None:
                profiler.disable()
        stores.append(run)
        rows.extend(run.rows)
    audit: AuditRun | None = None
    if args.only in (None, AUDIT):
        if profiler is not None:
            profiler.enable()
        try:
            audit = await run_audit(
                read_tasks=args.task_counts,
                ingest_tasks=args.ingest_task_counts,
                seconds=args.seconds,
                warmup_seconds=args.warmup,
                rounds=args.rounds,
                pg_url=args.pg_url,
                query_events=args.audit_events,
                quick=args.quick,
                explain_all=args.explain,
                progress=lambda text: print(f"  measuring {text} ...", file=sys.stderr, flush=True),
            )
        except Exception as exc:
            traceback.print_exc()
            errors.append(f"audit: {type(exc).__name__}: {exc}")
        finally:
            if profiler is not None:
                profiler.disable()
        if audit is not None:
            rows.extend(audit.rows)
    rotation = await _run_rotation(args, profiler, errors)
    rows.extend(rotation.rows if rotation is not None else ())
    rows.extend(await _run_cli(args, errors))
    revocation = await _run_revocation(args, profiler, errors)
    rows.extend(revocation.rows if revocation is not None else ())
    rows.extend(await _run_auth(args, errors))
    rows.extend(await _run_remote(args, errors))
    rows.extend(await _run_edge(args, errors))
    rows.extend(await _run_keys(args, errors))
    rows.extend(await _run_custody(args, errors))
    http = await _run_http(args, errors)
    rows.extend(http.rows if http is not None else ())
    return rows, stores, audit, rotation, revocation, http, errors


async def _run_keys(args: argparse.Namespace, errors: list[str]) -> list[ResultRow]:
    """Key Vault keys' wrap and unwrap (unless another section was picked)."""
    if args.only not in (None, KEYS):
        return []
    print("  measuring Key Vault keys ...", file=sys.stderr, flush=True)
    try:
        return await run_keys(seconds=args.seconds, warmup_seconds=args.warmup, rounds=args.rounds)
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"keys: {type(exc).__name__}: {exc}")
        return []


async def _run_custody(args: argparse.Namespace, errors: list[str]) -> list[ResultRow]:
    """What the wrapped root key costs at open, and replace-master (unless another section
    was picked)."""
    if args.only not in (None, CUSTODY):
        return []
    print("  measuring master key custody ...", file=sys.stderr, flush=True)
    try:
        return await run_custody(seconds=args.seconds, warmup_seconds=args.warmup,
                                 rounds=args.rounds, pg_url=args.pg_url)  # fmt: skip
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"custody: {type(exc).__name__}: {exc}")
        return []


async def _run_edge(args: argparse.Namespace, errors: list[str]) -> list[ResultRow]:
    """An edge following a real central server (unless another section was picked)."""
    if args.only not in (None, EDGE):
        return []
    print("  measuring an edge replica ...", file=sys.stderr, flush=True)
    try:
        return await run_edge(quick=args.quick)
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"edge: {type(exc).__name__}: {exc}")
        return []


async def _run_remote(args: argparse.Namespace, errors: list[str]) -> list[ResultRow]:
    """The remote profile against a real server (unless another section was picked)."""
    if args.only not in (None, REMOTE):
        return []
    print("  measuring the remote profile ...", file=sys.stderr, flush=True)
    try:
        return await run_remote(quick=args.quick, rounds=args.rounds)
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"remote: {type(exc).__name__}: {exc}")
        return []


async def _run_auth(args: argparse.Namespace, errors: list[str]) -> list[ResultRow]:
    """Token revocation reaching another worker (unless another section was picked)."""
    if args.only not in (None, AUTH):
        return []
    try:
        rows, notes = await run_auth(pg_url=args.pg_url, quick=args.quick)
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"auth: {type(exc).__name__}: {exc}")
        return []
    for note in notes:
        print(f"  {note}", file=sys.stderr, flush=True)
    return rows


async def _run_cli(args: argparse.Namespace, errors: list[str]) -> list[ResultRow]:
    """The command line's start-up (unless another section was picked with --only)."""
    if args.only not in (None, CLI):
        return []
    print("  measuring cli start-up ...", file=sys.stderr, flush=True)
    try:
        # Subprocess runs block: keep them off the event loop.
        return await asyncio.to_thread(run_cli, quick=args.quick)
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"cli: {type(exc).__name__}: {exc}")
        return []


async def _run_rotation(
    args: argparse.Namespace, profiler: cProfile.Profile | None, errors: list[str]
) -> RotationRun | None:
    """The rotation scheduler benchmarks (unless another section was picked with --only)."""
    if args.only not in (None, ROTATION):
        return None
    if profiler is not None:
        profiler.enable()
    try:
        return await run_rotation(pg_url=args.pg_url, quick=args.quick)
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"rotation: {type(exc).__name__}: {exc}")
        return None
    finally:
        if profiler is not None:
            profiler.disable()


async def _run_revocation(
    args: argparse.Namespace, profiler: cProfile.Profile | None, errors: list[str]
) -> RevocationRun | None:
    """The break-glass revocation benchmarks (unless another section was picked with --only)."""
    if args.only not in (None, REVOCATION):
        return None
    if profiler is not None:
        profiler.enable()
    try:
        return await run_revocation(pg_url=args.pg_url, quick=args.quick)
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"revocation: {type(exc).__name__}: {exc}")
        return None
    finally:
        if profiler is not None:
            profiler.disable()


async def _run_http(args: argparse.Namespace, errors: list[str]) -> HttpRun | None:
    """The running server over HTTP under wrk (unless another section was picked with --only).
    Servers and wrk are subprocesses: the blocking driver runs off the event loop."""
    if args.only not in (None, HTTP):
        return None
    try:
        run = await asyncio.to_thread(
            run_http,
            pg_url=args.pg_url,
            quick=args.quick,
            seconds=args.http_seconds,
            connections=args.http_connections,
            rounds=args.http_rounds,
        )
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"http: {type(exc).__name__}: {exc}")
        return None
    errors.extend(run.errors)
    return run


def _report(
    rows: list[ResultRow],
    stores: list[StoreRun],
    audit: AuditRun | None,
    rotation: RotationRun | None,
    revocation: RevocationRun | None,
    http: HttpRun | None,
    env: dict[str, Any],
    elapsed: float,
) -> str:
    lines = [
        f"strongroom bench  git {env['git']}  python {env['python']}  "
        f"cryptography {env['cryptography']}  sqlite {env['sqlite']}  cpus {env['cpus']}",
    ]
    for run in stores:
        if run.backend == "postgres" and run.info:
            lines.append(
                f"postgres {run.info['server_version']}  pool {run.info['pool_min']}-"
                f"{run.info['pool_max']}  synchronous_commit={run.info['synchronous_commit']}"
            )
    lines += ["", render_table(_HEADERS, [_table_row(r) for r in rows], _ALIGN), ""]
    if any(_serial(r) for r in rows):
        lines.append(
            "* one task ran every operation: the call never yields to the event loop, so the "
            "other tasks never got to run"
        )
    lines += [f"{run.backend}: SKIPPED - {run.skipped}" for run in stores if run.skipped]
    if audit is not None:
        lines += audit.skipped
        lines += audit.notes
    if rotation is not None:
        lines += rotation.skipped
        lines += rotation.notes
    if revocation is not None:
        lines += revocation.skipped
        lines += revocation.notes
    if http is not None:
        lines += http.skipped
        lines += http.notes
    # The HTTP rows time their own runs (see their notes): with only those, say only the total.
    http_only = bool(rows) and all(r.section == HTTP for r in rows)
    if not http_only:
        lines.append(
            f"ops/s = median of {env['rounds']} rounds, spread = (fastest - slowest round) / "
            "median; ratio = ops/s / ops/s of the reference in 'vs' (same run)"
        )
    lines.append(
        ("" if http_only else f"{env['seconds_per_measurement']} s per measurement after "
         f"{env['warmup_seconds']} s warm-up; ")
        + f"total {elapsed:.1f} s; load average {env['load_before']} before, "
        f"{env['load_after']} after"
    )  # fmt: skip
    if env["profiled"]:
        lines.append("NOTE: store runs under cProfile - their timings are inflated, not comparable")
    return "\n".join(lines)


def _write_json(
    path: Path,
    env: dict[str, Any],
    rows: list[ResultRow],
    stores: list[StoreRun],
    audit: AuditRun | None,
    rotation: RotationRun | None,
    revocation: RevocationRun | None,
    http: HttpRun | None,
    errors: list[str],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "environment": env,
        "stores": {run.backend: {"info": run.info, "skipped": run.skipped} for run in stores},
        "audit": (
            {"info": audit.info, "skipped": audit.skipped, "notes": audit.notes}
            if audit is not None
            else None
        ),
        "rotation": (
            {"info": rotation.info, "skipped": rotation.skipped, "notes": rotation.notes}
            if rotation is not None
            else None
        ),
        "revocation": (
            {"info": revocation.info, "skipped": revocation.skipped, "notes": revocation.notes}
            if revocation is not None
            else None
        ),
        "http": (
            {"info": http.info, "skipped": http.skipped, "notes": http.notes}
            if http is not None
            else None
        ),
        "results": [r.to_dict() for r in rows],
        "errors": errors,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    configure_logging(args.log_level)
    if args.only == AZURE:  # its own table: the azure store, cache off and on
        print(run_azure(quick=args.quick))
        return 0
    if args.only == REGIONS:  # its own table: vaults killed and restarted under load
        print(run_regions(quick=args.quick))
        return 0
    if args.only == CONSOLE:  # its own table: pages and a compliance report over a big dataset
        print(run_console(pg_url=args.pg_url, quick=args.quick))
        return 0
    env = _environment(args)
    started = time.perf_counter()
    profiler = cProfile.Profile() if args.profile else None
    rows, stores, audit, rotation, revocation, http, errors = asyncio.run(_run(args, profiler))
    elapsed = time.perf_counter() - started
    env["total_seconds"] = round(elapsed, 1)
    env["load_after"] = _load()

    print(_report(rows, stores, audit, rotation, revocation, http, env, elapsed))
    if args.only is None:
        print(run_azure(quick=args.quick))
        print(run_console(pg_url=args.pg_url, quick=args.quick))
    _write_json(args.json, env, rows, stores, audit, rotation, revocation, http, errors)
    print(f"results written to {args.json}")
    if profiler is not None:
        args.profile.parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(args.profile)
        print(f"\ncProfile stats written to {args.profile} (python -m pstats {args.profile})")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats(pstats.SortKey.TIME).print_stats(30)
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    return 1 if errors else 0
