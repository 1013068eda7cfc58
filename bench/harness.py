"""Timing and reporting helpers shared by every benchmark.

- :func:`run_async` runs an async operation with C concurrent tasks for a time budget and
  records each operation's latency with ``time.perf_counter_ns``.
- :func:`run_sync` does the same for a plain function (crypto references): throughput from a
  tight loop, latency percentiles from a loop that times every call.
- :func:`run_async_interleaved` times several operations round by round in turn, so a pair
  compared as a ratio (audited / unaudited) sees the same background noise.
- :class:`Goal` is a target printed next to a result (PASS/MISS), never asserted.
- :func:`render_table` prints plain-text aligned columns.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = [
    "AsyncOp",
    "Goal",
    "Measurement",
    "ResultRow",
    "SyncOp",
    "fmt_ms",
    "fmt_rate",
    "fmt_ratio",
    "percentile",
    "render_table",
    "run_async",
    "run_async_interleaved",
    "run_sync",
    "summarize",
]

#: An operation takes its sequence number (use it to pick a key round-robin).
AsyncOp = Callable[[int], Awaitable[object]]
SyncOp = Callable[[int], object]

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000
_SYNC_CHUNK = 256


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one timed run produced."""

    label: str
    concurrency: int
    ops: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: Fewest and most operations any one task completed (shows tasks that never yield).
    task_ops_min: int = 0
    task_ops_max: int = 0
    #: ops/s of each round; ``ops_per_s`` is their median.
    round_ops_per_s: tuple[float, ...] = ()

    @property
    def spread(self) -> float | None:
        """(fastest - slowest round) / median: how noisy this measurement was."""
        if len(self.round_ops_per_s) < 2 or self.ops_per_s <= 0:
            return None
        return (max(self.round_ops_per_s) - min(self.round_ops_per_s)) / self.ops_per_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": self.spread}


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(
    label: str,
    concurrency: int,
    latencies_ns: list[int],
    elapsed_ns: int,
    *,
    round_rates: Sequence[float] = (),
    per_task: Sequence[int] = (),
) -> Measurement:
    """Turn raw latencies into a :class:`Measurement`: ops/s is the median of
    ``round_rates`` if given, else ops / wall time."""
    ordered = sorted(latencies_ns)
    ops = len(ordered)
    seconds = elapsed_ns / _NS_PER_S
    overall = ops / seconds if seconds > 0 else 0.0
    rate = statistics.median(round_rates) if round_rates else overall
    return Measurement(
        label=label,
        concurrency=concurrency,
        ops=ops,
        seconds=round(seconds, 4),
        ops_per_s=rate,
        p50_ms=percentile(ordered, 50) / _NS_PER_MS,
        p99_ms=percentile(ordered, 99) / _NS_PER_MS,
        max_ms=(ordered[-1] if ordered else 0) / _NS_PER_MS,
        task_ops_min=min(per_task, default=ops),
        task_ops_max=max(per_task, default=ops),
        round_ops_per_s=tuple(round(r, 1) for r in round_rates),
    )


async def _drive(
    op: AsyncOp, concurrency: int, seconds: float, max_ops: int | None
) -> tuple[list[int], int, list[int]]:
    latencies: list[int] = []
    per_task = [0] * concurrency
    counter = itertools.count()
    clock = time.perf_counter_ns
    start = clock()
    deadline = start + int(seconds * _NS_PER_S)

    async def worker(slot: int) -> None:
        append = latencies.append
        done = 0
        while True:
            i = next(counter)
            if max_ops is not None and i >= max_ops:
                break
            t0 = clock()
            if t0 >= deadline:
                break
            await op(i)
            append(clock() - t0)
            done += 1
        per_task[slot] = done

    async with asyncio.TaskGroup() as group:
        for slot in range(concurrency):
            group.create_task(worker(slot))
    return latencies, clock() - start, per_task


async def run_async(
    op: AsyncOp,
    *,
    label: str,
    concurrency: int = 1,
    seconds: float = 2.0,
    warmup_seconds: float = 0.3,
    rounds: int = 5,
    max_ops: int | None = None,
) -> Measurement:
    """Run ``op`` from ``concurrency`` tasks for ``seconds`` in all (or ``max_ops`` per round).

    The time is split into ``rounds`` back-to-back rounds; ops/s is the median of the rounds'
    completed operations over wall time, so a burst of noise from other processes moves it
    less. Each latency is what one caller waited for one operation, queueing included, pooled
    over all rounds. A warm-up with the same concurrency runs first and is discarded.
    """
    if warmup_seconds > 0:
        await _drive(op, concurrency, warmup_seconds, max_ops)
    gc.collect()
    latencies: list[int] = []
    per_task = [0] * concurrency
    rates: list[float] = []
    elapsed = 0
    for _ in range(max(1, rounds)):
        lat, ns, done = await _drive(op, concurrency, seconds / max(1, rounds), max_ops)
        latencies += lat
        elapsed += ns
        rates.append(len(lat) / (ns / _NS_PER_S))
        per_task = [a + b for a, b in zip(per_task, done, strict=True)]
    return summarize(label, concurrency, latencies, elapsed, round_rates=rates, per_task=per_task)


async def run_async_interleaved(
    ops: Sequence[tuple[str, AsyncOp]],
    *,
    concurrency: int = 1,
    seconds: float = 2.0,
    warmup_seconds: float = 0.3,
    rounds: int = 5,
) -> list[Measurement]:
    """Like :func:`run_async` for each of ``ops`` (label, op), but round by round in turn:
    round 1 of every op, then round 2 of every op (in reverse order), ... Each op gets
    ``seconds`` in all. A ratio of two of the results then compares rounds run side by side,
    not minutes apart."""
    for _, op in ops:
        if warmup_seconds > 0:
            await _drive(op, concurrency, warmup_seconds, None)
    gc.collect()
    rounds = max(1, rounds)
    latencies: list[list[int]] = [[] for _ in ops]
    per_task = [[0] * concurrency for _ in ops]
    rates: list[list[float]] = [[] for _ in ops]
    elapsed = [0] * len(ops)
    order = list(range(len(ops)))
    for _ in range(rounds):
        for k in order:
            lat, ns, done = await _drive(ops[k][1], concurrency, seconds / rounds, None)
            latencies[k] += lat
            elapsed[k] += ns
            rates[k].append(len(lat) / (ns / _NS_PER_S))
            per_task[k] = [a + b for a, b in zip(per_task[k], done, strict=True)]
        order.reverse()  # A B, B A, A B, ...: neither op always runs right after the other
    return [
        summarize(
            label,
            concurrency,
            latencies[k],
            elapsed[k],
            round_rates=rates[k],
            per_task=per_task[k],
        )
        for k, (label, _) in enumerate(ops)
    ]


def run_sync(
    op: SyncOp, *, label: str, seconds: float = 2.0, warmup_seconds: float = 0.2, rounds: int = 5
) -> Measurement:
    """Time a plain function: ops/s is the median over ``rounds`` tight loops filling half the
    budget (no timer per call); p50/p99 come from the other half, where every call is timed."""
    clock = time.perf_counter_ns
    deadline = clock() + int(warmup_seconds * _NS_PER_S)
    i = 0
    while clock() < deadline:
        op(i)
        i += 1
    gc.collect()

    half = int(seconds * _NS_PER_S / 2)
    rates: list[float] = []
    n = 0
    loop_ns = 0
    for _ in range(max(1, rounds)):
        start = clock()
        deadline = start + half // max(1, rounds)
        first = n
        while clock() < deadline:
            for _ in range(_SYNC_CHUNK):
                op(n)
                n += 1
        ns = clock() - start
        loop_ns += ns
        rates.append((n - first) / (ns / _NS_PER_S))

    latencies: list[int] = []
    append = latencies.append
    start = clock()
    deadline = start + half
    while True:
        t0 = clock()
        if t0 >= deadline:
            break
        op(n)
        append(clock() - t0)
        n += 1
    timed_ns = clock() - start
    measured = summarize(label, 1, latencies, loop_ns + timed_ns, round_rates=rates)
    # Count both halves as operations run; the rate is the tight loop's.
    return replace(measured, ops=n)


@dataclass(frozen=True, slots=True)
class Goal:
    """A target shown beside a result: at least ``min_ops_per_s``, p99 and/or p50 (the median)
    under a bound, and/or a ratio against the row's reference of at least ``min_ratio``."""

    text: str
    min_ops_per_s: float | None = None
    max_p99_ms: float | None = None
    max_p50_ms: float | None = None
    min_ratio: float | None = None

    def met(self, m: Measurement, ratio: float | None = None) -> bool:
        if self.min_ops_per_s is not None and m.ops_per_s < self.min_ops_per_s:
            return False
        if self.max_p50_ms is not None and m.p50_ms >= self.max_p50_ms:
            return False
        if self.min_ratio is not None and (ratio is None or ratio < self.min_ratio):
            return False
        return not (self.max_p99_ms is not None and m.p99_ms >= self.max_p99_ms)


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One line of the report: a measurement, its reference ratio and its goal."""

    section: str
    operation: str
    measurement: Measurement
    reference: str | None = None
    ratio: float | None = None
    goal: Goal | None = None
    #: A short remark printed in the last column (e.g. the audit writer's mean batch size).
    note: str | None = None

    @property
    def status(self) -> str:
        if self.goal is None:
            return ""
        return "PASS" if self.goal.met(self.measurement, self.ratio) else "MISS"

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "operation": self.operation,
            **self.measurement.to_dict(),
            "reference": self.reference,
            "ratio": self.ratio,
            "goal": asdict(self.goal) if self.goal else None,
            "status": self.status or None,
            "note": self.note,
        }


def fmt_rate(ops_per_s: float) -> str:
    return f"{ops_per_s:,.0f}"


def fmt_ms(ms: float) -> str:
    if ms < 0.1:
        return f"{ms:.4f}"
    if ms < 10:
        return f"{ms:.3f}"
    return f"{ms:.1f}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.3f}" if ratio < 1 else f"{ratio:.2f}"


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None
) -> str:
    """Plain-text table; ``align`` has one ``l`` or ``r`` per column (default: left)."""
    columns = len(headers)
    align = (align or "l" * columns).ljust(columns, "l")
    widths = [len(h) for h in headers]
    for row in rows:
        for c, cell in enumerate(row):
            widths[c] = max(widths[c], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(widths[c]) if align[c] == "r" else cell.ljust(widths[c])
            for c, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
