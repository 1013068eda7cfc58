"""The rotation scheduler at scale: one due check over 100,000 configurations, then rotating
the 1,000 that are due, on the sqlite and postgres stores.

Each store gets a fresh home (a temporary ``STRONGROOM_HOME`` for sqlite, a schema
``bench_rot_<random>`` for postgres, dropped afterwards), opened with ``Strongroom.open`` so the
migrations run. The 1,000 due secrets are created first through ``SecretsManager`` (so every
rotation measured is the steady-state UPDATE path, not the first rotation that creates a
secret); then the 100,000 rows of ``secrets_rotation_config`` are written directly (COPY on
PostgreSQL, one ``executemany`` on SQLite), generator ``api_key``, 30-day period. The due rows
are spread evenly through the table (every 100th row), due within the last hour; the others are
due over the next 30 days. PostgreSQL gets ``ANALYZE`` after the load.

Measured, each run on a fresh state (the reset is an untimed UPDATE, plus ``VACUUM ANALYZE`` of
the table on PostgreSQL, as autovacuum would have done between hourly checks):

- the scheduler's check: ``app.rotation_store.claim_due(now, owner, now + LEASE, 1000)``, the
  due query plus the lease claim exactly as ``SecretsRotation.run_check`` calls it;
- the plain due ``SELECT`` alone (``DUE_SQLITE`` / ``DUE_POSTGRES``) on a connection of its own,
  with its plan (``EXPLAIN ANALYZE`` on PostgreSQL, also the generic plan a prepared statement
  could switch to; ``EXPLAIN QUERY PLAN`` on SQLite);
- ``await SecretsRotation(app).run_check()`` with every due row due: wall time, rotations/s and
  the latency of each rotation (``_rotate``, after the scheduler's semaphore).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from pydantic import SecretStr

from bench.bench_store import PG_URL
from bench.harness import Goal, Measurement, ResultRow, fmt_ms, summarize
from strongroom import Backend, SecretsManager, Settings, Strongroom
from strongroom.core.models import SecretType
from strongroom.db.dialect import POSTGRES, SQLITE
from strongroom.db.rotation_store import CLAIM_POSTGRES, DUE_POSTGRES, DUE_SQLITE
from strongroom.db.rows import to_micros
from strongroom.services.rotation.generators import api_key
from strongroom.services.rotation.secrets_rotation import (
    CLAIM_BATCH,
    CONCURRENCY,
    LEASE,
    SecretsRotation,
)

__all__ = [
    "CONFIGS",
    "CONFIGS_QUICK",
    "DUE",
    "DUE_QUICK",
    "RotationRun",
    "run_rotation",
]

BACKENDS = ("sqlite", "postgres")
CONFIGS = 100_000
DUE = 1_000
CONFIGS_QUICK = 10_000
DUE_QUICK = 100
#: Fresh-state runs of the check (median), of the due SELECT, and of run_check.
CHECK_RUNS = 9
CHECK_RUNS_QUICK = 3
SELECT_RUNS = 21
ROTATE_RUNS = 5
ROTATE_RUNS_QUICK = 1
#: No further run_check once a backend has spent this long rotating.
ROTATE_BUDGET_S = 30.0

_ROTATION_DAYS = 30
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
_CHECK_GOAL = Goal("check<50ms", max_p50_ms=50.0)
#: 1,000 rotations in under 10 s is at least 100 rotations/s, whatever the run's size.
_ROTATE_GOAL = Goal("1,000 in <10s", min_ops_per_s=DUE / 10.0)

_TABLE = "secrets_rotation_config"
#: Columns written by the bulk load, in this order (the rest keep their defaults / NULL).
_LOAD_COLUMNS = (
    "secret_name", "display_name", "rotation_days", "rotation_hours_before_expiry", "enabled",
    "description", "force_on_next", "last_rotation", "next_rotation", "generator",
    "generator_options", "has_callback", "secret_type", "grace_period_hours", "due_at",
    "attempts", "created_at", "updated_at",
)  # fmt: skip
#: What a rotation changes, put back for the next run (lease, schedule, outcome, grace period).
_RESET = (
    "UPDATE secrets_rotation_config SET due_at = :due_at, next_rotation = :due_at, "
    "last_rotation = :last_rotation, attempts = 0, last_attempt = NULL, last_result = NULL, "
    "last_error = NULL, force_on_next = :false, lease_owner = NULL, lease_until = NULL, "
    "previous_version = NULL, previous_disable_at = NULL, expires_at = NULL "
    "WHERE secret_name = :secret_name"
)
_RELEASE = (
    "UPDATE secrets_rotation_config SET lease_owner = NULL, lease_until = NULL "
    "WHERE lease_owner IS NOT NULL"
)


@dataclass
class RotationRun:
    """The rotation benchmarks' rows, plus lines printed under the table."""

    rows: list[ResultRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


class _TimedRotation(SecretsRotation):
    """``SecretsRotation`` that also records how long each rotation took (semaphore excluded)."""

    def __init__(self, app: Strongroom) -> None:
        super().__init__(app)
        self.latencies: list[int] = []

    async def _rotate(self, app: Strongroom, row: dict[str, Any]) -> dict[str, Any]:
        t0 = time.perf_counter_ns()
        try:
            return await super()._rotate(app, row)
        finally:
            self.latencies.append(time.perf_counter_ns() - t0)


def _name(i: int) -> str:
    return f"rot-{i:06d}"


def _due_indexes(total: int, due: int) -> list[int]:
    """``due`` indexes spread evenly over ``total`` rows (every ``total // due``-th row)."""
    step = max(1, total // due)
    return [k * step for k in range(due)]


def _due_times(now: datetime, due: int) -> list[datetime]:
    """Due within the last hour, oldest first, the newest a second ago."""
    span = timedelta(hours=1) / max(1, due)
    return [now - timedelta(seconds=1) - (due - k) * span for k in range(due)]


def _config_rows(now: datetime, total: int, due: int) -> list[tuple[Any, ...]]:
    """Rows in ``_LOAD_COLUMNS`` order: the due ones due within the last hour, the others due
    from one hour to 30 days ahead, spread evenly."""
    due_set = dict(zip(_due_indexes(total, due), _due_times(now, due), strict=True))
    ahead = timedelta(days=_ROTATION_DAYS) / max(1, total)
    rows = []
    for i in range(total):
        when = due_set.get(i) or now + timedelta(hours=1) + i * ahead
        name = _name(i)
        rows.append(
            (
                name, name, _ROTATION_DAYS, 24, True, "bench", False,
                when - timedelta(days=_ROTATION_DAYS), when, "api_key", "{}", False,
                SecretType.API_KEY.value, 24, when, 0, now, now,
            )
        )  # fmt: skip
    return rows


# -- raw access to the store's database (setup, resets, the bare SELECT, plans) ---------------


class _Raw(Protocol):
    """The bench's own connection to the database the app's rotation store uses."""

    backend: str

    async def load(self, rows: Sequence[tuple[Any, ...]]) -> None: ...
    async def reset(self, names: Sequence[str], now: datetime, due: int) -> None: ...
    async def release(self) -> None: ...
    async def due_select(self, now: datetime, limit: int) -> int: ...
    async def plan(self, now: datetime, limit: int) -> list[str]: ...
    async def close(self) -> None: ...


def _reset_params(names: Sequence[str], now: datetime, due: int) -> list[dict[str, Any]]:
    return [
        {
            "secret_name": name,
            "due_at": when,
            "last_rotation": when - timedelta(days=_ROTATION_DAYS),
            "false": False,
        }
        for name, when in zip(names, _due_times(now, due), strict=True)
    ]


class _RawSqlite:
    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout=30000")

    @staticmethod
    def _value(value: Any) -> Any:
        """As the SQLite stores write it: times in microseconds, booleans as 0/1."""
        if isinstance(value, datetime):
            return to_micros(value)
        return int(value) if isinstance(value, bool) else value

    def _params(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: self._value(v) for k, v in values.items()}

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(sql, rows)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    async def load(self, rows: Sequence[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in _LOAD_COLUMNS)
        sql = f"INSERT INTO {_TABLE} ({', '.join(_LOAD_COLUMNS)}) VALUES ({marks})"  # noqa: S608
        self._executemany(sql, [tuple(self._value(v) for v in row) for row in rows])

    async def reset(self, names: Sequence[str], now: datetime, due: int) -> None:
        batch = [SQLITE.compile(_RESET, self._params(p)) for p in _reset_params(names, now, due)]
        self._executemany(batch[0][0], [params for _, params in batch])

    async def release(self) -> None:
        self.conn.execute(_RELEASE)

    def _due(self, now: datetime, limit: int) -> tuple[str, list[Any]]:
        return SQLITE.compile(DUE_SQLITE, self._params({"now": now, "limit": limit}))

    async def due_select(self, now: datetime, limit: int) -> int:
        sql, params = self._due(now, limit)
        return len(self.conn.execute(sql, params).fetchall())

    async def plan(self, now: datetime, limit: int) -> list[str]:
        sql, params = self._due(now, limit)
        return [str(r[-1]) for r in self.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

    async def close(self) -> None:
        self.conn.close()


class _RawPostgres:
    backend = "postgres"

    def __init__(self, conn: asyncpg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = schema

    async def load(self, rows: Sequence[tuple[Any, ...]]) -> None:
        await self.conn.copy_records_to_table(
            _TABLE, records=rows, columns=list(_LOAD_COLUMNS), schema_name=self.schema
        )
        await self.conn.execute(f"ANALYZE {_TABLE}")

    async def reset(self, names: Sequence[str], now: datetime, due: int) -> None:
        batch = [POSTGRES.compile(_RESET, p) for p in _reset_params(names, now, due)]
        await self.conn.executemany(batch[0][0], [params for _, params in batch])
        await self._vacuum()

    async def release(self) -> None:
        await self.conn.execute(_RELEASE)
        await self._vacuum()

    async def _vacuum(self) -> None:
        await self.conn.execute(f"VACUUM (ANALYZE) {_TABLE}")

    def _due(self, now: datetime, limit: int) -> tuple[str, list[Any]]:
        return POSTGRES.compile(DUE_POSTGRES, {"now": now, "limit": limit})

    async def due_select(self, now: datetime, limit: int) -> int:
        sql, params = self._due(now, limit)
        return len(await self.conn.fetch(sql, *params))

    async def plan(self, now: datetime, limit: int) -> list[str]:
        """The due SELECT's plan with the app's parameter values (a custom plan, what the first
        executions of a prepared statement get), the generic plan a prepared statement may
        switch to after five, and the claim's server time (run and rolled back)."""
        sql, params = self._due(now, limit)
        lines = [r[0] for r in await self.conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)]
        await self.conn.execute(f"PREPARE bench_due(timestamptz, integer) AS {sql}")
        try:
            await self.conn.execute("SET plan_cache_mode = force_generic_plan")
            generic = [
                r[0]
                for r in await self.conn.fetch(f"EXPLAIN EXECUTE bench_due(now(), {int(limit)})")
            ]
        finally:
            await self.conn.execute("RESET plan_cache_mode")
            await self.conn.execute("DEALLOCATE bench_due")
        claim_sql, claim_params = POSTGRES.compile(
            CLAIM_POSTGRES,
            {"now": now, "limit": limit, "owner": "bench", "lease_until": now},
        )
        claim = self.conn.transaction()
        await claim.start()
        try:
            explained = await self.conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS) {claim_sql}", *claim_params
            )
        finally:
            await claim.rollback()  # the claim's leases are not kept
        return [
            *lines,
            "-- the generic plan (plan_cache_mode = force_generic_plan):",
            *generic,
            "-- the claim (CLAIM_POSTGRES, rolled back):",
            *(r[0] for r in explained),
        ]

    async def close(self) -> None:
        await self.conn.close()


# -- the stores -----------------------------------------------------------------------------


async def _postgres_reachable(pg_url: str) -> str | None:
    try:
        await (await asyncpg.connect(pg_url, timeout=5)).close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable ({type(exc).__name__}: {exc})"
    return None


@asynccontextmanager
async def _open(backend: str, pg_url: str) -> AsyncIterator[tuple[Strongroom, _Raw]]:
    """A fresh, empty store of this kind (migrated by ``Strongroom.open``) and the bench's own
    connection to it; everything is removed afterwards."""
    master_key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    schema = f"bench_rot_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-rot-") as home:
        settings = Settings(
            STRONGROOM_BACKEND=Backend(backend),
            STRONGROOM_HOME=Path(home),
            DATABASE_URL=SecretStr(pg_url),
            STRONGROOM_PG_SCHEMA=schema,
            STRONGROOM_MASTER_KEY=SecretStr(master_key),
        )
        try:
            app = await Strongroom.open(settings)
            try:
                raw: _Raw
                if backend == "postgres":
                    conn = await asyncpg.connect(
                        pg_url, timeout=5, server_settings={"search_path": schema}
                    )
                    raw = _RawPostgres(conn, schema)
                else:
                    raw = _RawSqlite(settings.sqlite_path)
                try:
                    yield app, raw
                finally:
                    await raw.close()
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
    gate = asyncio.Semaphore(CONCURRENCY)

    async def create(name: str) -> None:
        async with gate:
            await manager.create_secret(name, api_key(), SecretType.API_KEY)

    await asyncio.gather(*(create(name) for name in names))


def _measure(label: str, latencies: list[int]) -> Measurement:
    """One timed call per run: ops = runs, p50 = the median run."""
    return summarize(label, 1, latencies, sum(latencies))


def _range_ms(latencies: Sequence[int]) -> str:
    return f"{fmt_ms(min(latencies) / _NS_PER_MS)}-{fmt_ms(max(latencies) / _NS_PER_MS)} ms"


_COST = re.compile(r"\s*\(cost=[^)]*\)")
_PLAN_KEEP = re.compile(
    r"^--|Scan|Limit|LockRows|Sort|Nested Loop|Join|Aggregate|Update on|Execution Time|SEARCH"
)


def _condense(lines: Sequence[str]) -> list[str]:
    """The plan's nodes and timings, without cost estimates, buffers or conditions."""
    return [_COST.sub("", line) for line in lines if _PLAN_KEEP.search(line)]


def _plan_summary(backend: str, lines: Sequence[str]) -> str:
    """The line naming how the due rows are found (index or scan), cost figures dropped."""
    for line in lines:
        text = line.strip().removeprefix("->").strip()
        if backend == "sqlite" and ("SEARCH" in text or "SCAN" in text):
            return text
        if backend == "postgres" and " Scan" in text:
            return text.split("  (cost=")[0].split(" (cost=")[0]
    return "?"


async def _setup(app: Strongroom, raw: _Raw, names: Sequence[str], total: int) -> str:
    """Create the due secrets, load every configuration; says how long each took."""
    due = len(names)
    t0 = time.perf_counter()
    await _create_secrets(app, names)
    created_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await raw.load(_config_rows(datetime.now(UTC), total, due))
    loaded_s = time.perf_counter() - t0
    how = "COPY + ANALYZE" if raw.backend == "postgres" else "one executemany"
    return (
        f"setup: {due:,} due secrets created through SecretsManager in {created_s:.1f} s; "
        f"{total:,} configurations loaded ({how}) in {loaded_s:.1f} s"
    )


async def _bench_check(app: Strongroom, raw: _Raw, due: int, runs: int) -> list[int]:
    """The scheduler's check (due query + lease claim, as run_check calls it), each run after
    the previous run's leases are released."""
    owner = SecretsRotation(app).owner
    checks: list[int] = []
    for _ in range(runs):
        await raw.release()
        now = app.clock()
        t0 = time.perf_counter_ns()
        claimed = await app.rotation_store.claim_due(now, owner, now + LEASE, CLAIM_BATCH)
        checks.append(time.perf_counter_ns() - t0)
        if len(claimed) != due:
            raise RuntimeError(f"{raw.backend}: the check claimed {len(claimed)}, not {due}")
    await raw.release()
    return checks


async def _bench_select(app: Strongroom, raw: _Raw, due: int) -> tuple[list[int], list[str]]:
    """The bare due SELECT (after one warm-up run), then its plan."""
    selects: list[int] = []
    now = app.clock()
    await raw.due_select(now, CLAIM_BATCH)
    for _ in range(SELECT_RUNS):
        t0 = time.perf_counter_ns()
        found = await raw.due_select(now, CLAIM_BATCH)
        selects.append(time.perf_counter_ns() - t0)
        if found != due:
            raise RuntimeError(f"{raw.backend}: the due SELECT found {found}, not {due}")
    return selects, await raw.plan(now, CLAIM_BATCH)


async def _bench_rotate(
    app: Strongroom, raw: _Raw, names: Sequence[str], runs: int
) -> tuple[list[int], list[float], list[int]]:
    """``run_check`` with every one of ``names`` due: wall times, rotations/s, and the latency
    of each rotation. Stops early once ``ROTATE_BUDGET_S`` is spent."""
    due = len(names)
    walls: list[int] = []
    rates: list[float] = []
    latencies: list[int] = []
    for _ in range(runs):
        if sum(walls) / _NS_PER_S > ROTATE_BUDGET_S:
            break
        await raw.reset(names, datetime.now(UTC), due)
        rotation = _TimedRotation(app)
        t0 = time.perf_counter_ns()
        outcome = await rotation.run_check()
        wall = time.perf_counter_ns() - t0
        if len(outcome["rotated"]) != due or outcome["failed"]:
            raise RuntimeError(
                f"{raw.backend}: run_check rotated {len(outcome['rotated'])} of {due}, "
                f"{len(outcome['failed'])} failed"
            )
        walls.append(wall)
        rates.append(due / (wall / _NS_PER_S))
        latencies += rotation.latencies
    return walls, rates, latencies


async def _bench_backend(
    backend: str,
    run: RotationRun,
    *,
    pg_url: str,
    total: int,
    due: int,
    quick: bool,
    progress: Callable[[str], None],
) -> None:
    section = f"rotation {backend}"
    async with _open(backend, pg_url) as (app, raw):
        names = [_name(i) for i in _due_indexes(total, due)]
        run.notes.append(f"{section}: {await _setup(app, raw, names, total)}")

        progress(f"{backend} rotation check")
        checks = await _bench_check(app, raw, due, CHECK_RUNS_QUICK if quick else CHECK_RUNS)
        run.rows.append(
            ResultRow(
                section,
                f"check: claim_due {due:,} of {total:,}",
                _measure(f"{backend} check", checks),
                goal=_CHECK_GOAL,
                note=f"{len(checks)} fresh runs, {_range_ms(checks)}",
            )
        )

        selects, plan = await _bench_select(app, raw, due)
        run.rows.append(
            ResultRow(
                section,
                "due SELECT alone",
                _measure(f"{backend} due select", selects),
                note=f"plan: {_plan_summary(backend, plan)}",
            )
        )
        run.notes.append(f"{section}: due SELECT plan (parameters as the app binds them):")
        run.notes += [f"    {line}" for line in _condense(plan)]
        if not any("secrets_rotation_config_due" in line for line in plan):
            run.notes.append(f"{section}: WARNING: the partial index on due_at is not used")

        progress(f"{backend} rotation run_check ({due:,} due)")
        walls, rates, latencies = await _bench_rotate(
            app, raw, names, ROTATE_RUNS_QUICK if quick else ROTATE_RUNS
        )
        wall_s = statistics.median(walls) / _NS_PER_S
        run.rows.append(
            ResultRow(
                section,
                f"run_check: rotate {due:,}",
                summarize(
                    f"{backend} run_check", CONCURRENCY, latencies, sum(walls), round_rates=rates
                ),
                goal=_ROTATE_GOAL,
                note=f"rotations/s; wall {wall_s:.3f} s (median of {len(walls)}, "
                f"{min(walls) / _NS_PER_S:.3f}-{max(walls) / _NS_PER_S:.3f}); "
                "p50/p99 = one rotation",
            )
        )


async def run_rotation(
    *,
    pg_url: str = PG_URL,
    quick: bool = False,
    backends: Sequence[str] = BACKENDS,
    progress: Callable[[str], None] = lambda text: print(
        f"  measuring {text} ...", file=sys.stderr, flush=True
    ),
) -> RotationRun:
    """Measure the check and the rotations on each of ``backends``."""
    run = RotationRun()
    total, due = (CONFIGS_QUICK, DUE_QUICK) if quick else (CONFIGS, DUE)
    run.info = {"configs": total, "due": due, "concurrency": CONCURRENCY}
    run.notes.append(
        f"rotation: {total:,} configurations, {due:,} due, spread through the table; every run "
        "on a fresh state (leases / schedule reset by an untimed UPDATE, + VACUUM ANALYZE on "
        "PostgreSQL); run_check wall = claim + rotations + grace-period sweep, "
        f"{CONCURRENCY} rotations at a time"
    )
    for backend in backends:
        if backend == "postgres" and (down := await _postgres_reachable(pg_url)):
            run.skipped.append(f"rotation postgres: SKIPPED - {down}")
            continue
        progress(f"{backend} rotation setup ({total:,} configs, {due:,} due)")
        await _bench_backend(
            backend, run, pg_url=pg_url, total=total, due=due, quick=quick, progress=progress
        )
    return run
