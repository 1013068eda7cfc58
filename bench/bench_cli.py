"""Start-up time of the command line: ``strongroom secret get NAME`` on the embedded profile.

A script that reads a secret pays for the whole process each time: interpreter, imports,
opening the SQLite store and its audit log, one audited read, closing. Each row times N
subprocess runs (after two warm-up runs that fill the page cache and write .pyc files):
``python -c pass`` is the floor any Python command pays, ``import strongroom.cli`` shows what
the imports cost, and ``strongroom secret get`` is the goal row (p50 under 150 ms). Each note
gives the load average when the row was taken: on a shared machine it says how much to trust it.

``PYTHONDONTWRITEBYTECODE`` is dropped from the runs' environment: an installed strongroom has
its bytecode compiled (pip does it), and with the variable set an editable checkout would
recompile every strongroom module at every start (about 60 ms) and time that instead.

Run alone with ``python -m bench.bench_cli``, or as part of ``python -m bench`` (``--only cli``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import Goal, ResultRow, fmt_ms, render_table, summarize

__all__ = ["CLI_GOAL", "RUNS", "run_cli"]

RUNS = 20
RUNS_QUICK = 8
WARMUP_RUNS = 2
CLI_GOAL = Goal("p50 < 150 ms", max_p50_ms=150.0)
NAME = "bench-cli-secret"
_CONFIG_VARS = (
    "AZURE_KEY_VAULT_URL", "DATABASE_URL", "STRONGROOM_BACKEND", "STRONGROOM_MASTER_KEY",
    "STRONGROOM_MASTER_KEY_FILE", "STRONGROOM_AUDIT_DATABASE_URL", "LOG_LEVEL", "DEBUG",
    "STRONGROOM_ADDR", "PYTHONDONTWRITEBYTECODE",
)  # fmt: skip


def _strongroom() -> list[str]:
    """The installed ``strongroom`` script beside this interpreter (what operators run), or
    ``python -m strongroom.cli`` when the package was not installed with its script."""
    script = Path(sys.executable).with_name("strongroom")
    if script.exists():
        return [str(script)]
    found = shutil.which("strongroom")
    return [found] if found else [sys.executable, "-m", "strongroom.cli"]


def _time(argv: Sequence[str], env: dict[str, str], runs: int) -> tuple[list[int], int]:
    """Wall time of each run in nanoseconds, and the total."""
    for _ in range(WARMUP_RUNS):
        subprocess.run(argv, env=env, check=True, capture_output=True)
    latencies: list[int] = []
    started = time.perf_counter_ns()
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        latencies.append(time.perf_counter_ns() - t0)
    return latencies, time.perf_counter_ns() - started


def run_cli(*, quick: bool = False, runs: int | None = None) -> list[ResultRow]:
    """Time the three rows on a throwaway embedded profile (removed afterwards)."""
    count = runs or (RUNS_QUICK if quick else RUNS)
    strongroom = _strongroom()
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-cli-") as home:
        env = {k: v for k, v in os.environ.items() if k not in _CONFIG_VARS}
        env["STRONGROOM_HOME"] = home
        subprocess.run([*strongroom, "init", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(
            [*strongroom, "secret", "create", NAME, "-"],
            input=b"bench-value",
            env=env,
            check=True,
            capture_output=True,
        )
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("import strongroom.cli", [sys.executable, "-c", "import strongroom.cli"]),
            ("strongroom secret get", [*strongroom, "secret", "get", NAME]),
        ]
        measured = {}
        loads = {}
        for label, argv in cases:
            latencies, elapsed = _time(argv, env, count)
            measured[label] = summarize(label, 1, latencies, elapsed)
            loads[label] = os.getloadavg()[0]
    floor = measured["python -c pass"]
    rows = []
    for label, m in measured.items():
        reference = label != floor.label
        rows.append(
            ResultRow(
                section="cli",
                operation=label,
                measurement=m,
                reference=floor.label if reference else None,
                ratio=m.ops_per_s / floor.ops_per_s if reference and floor.ops_per_s else None,
                goal=CLI_GOAL if label == "strongroom secret get" else None,
                note=(
                    f"{count} runs; {m.p50_ms - floor.p50_ms:.0f} ms over the floor"
                    if reference
                    else f"{count} runs: the floor"
                )
                + f"; load average {loads[label]:.2f}",
            )
        )
    return rows


def main() -> int:
    rows = run_cli()
    headers = ("operation", "runs", "p50 ms", "p99 ms", "max ms", "goal", "result", "note")
    table = [
        [
            r.operation,
            str(r.measurement.ops),
            fmt_ms(r.measurement.p50_ms),
            fmt_ms(r.measurement.p99_ms),
            fmt_ms(r.measurement.max_ms),
            r.goal.text if r.goal else "",
            r.status,
            r.note or "",
        ]
        for r in rows
    ]
    print(render_table(headers, table, "lrrrrlll"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
