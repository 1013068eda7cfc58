"""What auditing costs, how fast the audit writer ingests, how long audit queries take.

1. ``get_secret`` with auditing on vs off: one store, two ``Strongroom`` instances on it (the
   second opened with ``audit=False``), measured round by round in turn so both see the same
   background load; the ratio is audited / unaudited ops/s.
2. Ingest: N tasks each awaiting ``app.audit.record(event)`` (the group-committed writer: each
   caller waits until its batch is committed), next to ``AuditStore.append`` of 1,000 events per
   call (what the store can take in big batches; the ceiling for the writer).
3. PostgreSQL queries over a generated dataset (1,000,000 events over 30 days, 1,000 secrets,
   200 actors, 2% failures): ``SecretsAudit.get_audit_summary`` and
   ``detect_suspicious_activity``, median of 3 timed runs after a warm-up. A query that misses
   its goal is run again under ``EXPLAIN (ANALYZE, BUFFERS)`` and the plan node that dominates
   is reported with a suggested fix.

The dataset lives in a schema of its own (``bench_audit_<hex>``), generated once per process
(one ``make bench``) and dropped by :func:`close_datasets`. The process holds an advisory lock
named after its schema; a later run drops ``bench_audit_*`` schemas whose lock is free (left
over by a run that was killed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from bench.bench_store import PG_URL
from bench.harness import (
    Goal,
    Measurement,
    ResultRow,
    fmt_ms,
    run_async,
    run_async_interleaved,
    summarize,
)
from strongroom import Backend, SecretsAudit, SecretsManager, Settings, Strongroom
from strongroom.core.audit import AuditAction, AuditEvent, AuditResult, ChainKey
from strongroom.db.audit_sql import POSTGRES, analysis_sql, summary_sql
from strongroom.db.audit_store import AuditStore, ChainState, StoredEvent, TrailFilter

__all__ = [
    "INGEST_TASKS",
    "QUERY_EVENTS",
    "QUERY_EVENTS_QUICK",
    "AuditRun",
    "close_datasets",
    "run_audit",
]

BACKENDS = ("sqlite", "postgres")
SECRET_COUNT = 100
INGEST_TASKS = (1, 32, 256)
#: Events in the query dataset: the full size, and the size used with --quick.
QUERY_EVENTS = 1_000_000
QUERY_EVENTS_QUICK = 100_000
QUERY_DAYS = 30
QUERY_SECRETS = 1_000
QUERY_ACTORS = 200
QUERY_FAILURE_RATE = 0.02
QUERY_TIMED_RUNS = 3
#: The resource asked about in the one-resource summary (one of the QUERY_SECRETS names).
QUERY_RESOURCE = "secret-0042"

_GOAL_TASKS = 32
_READ_GOAL = Goal(">=0.8x audit=off", min_ratio=0.8)
_QUERY_GOAL = Goal("median<1s", max_p50_ms=1000.0)
_APPEND_BATCH = 1000
#: First key of the two-key advisory lock a process holds while its dataset schema exists.
_DATASET_LOCK_CLASS = 0x53424E43  # "SBNC"
_FILLER_HASH = b"\xa5" * 32
_READ_OFF = "get_secret audit=off"
_READ_ON = "get_secret audit=on"


@dataclass
class AuditRun:
    """The audit benchmarks' rows, plus lines printed under the table."""

    rows: list[ResultRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _master_key() -> SecretStr:
    return SecretStr(base64.b64encode(secrets.token_bytes(32)).decode("ascii"))


def _settings(backend: str, home: Path, schema: str, pg_url: str) -> Settings:
    return Settings(
        STRONGROOM_BACKEND=Backend(backend),
        STRONGROOM_HOME=home,
        DATABASE_URL=SecretStr(pg_url),
        STRONGROOM_PG_SCHEMA=schema,
        STRONGROOM_MASTER_KEY=_master_key(),
    )


async def _pg_reachable(pg_url: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        await (await asyncpg.connect(pg_url, timeout=5)).close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable ({type(exc).__name__}: {exc})"
    return None


async def _drop_schema(pg_url: str, schema: str) -> None:
    conn = await asyncpg.connect(pg_url, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _counters(app: Strongroom) -> tuple[float, float, float]:
    m = app.metrics
    return (
        m.value("audit_events_total"),
        m.value("audit_batches_total"),
        m.value("audit_write_seconds_total"),
    )


def _batch_note(app: Strongroom, before: tuple[float, float, float]) -> str:
    """Mean batch size and mean time per batch write since ``before``."""
    events, batches, seconds = (a - b for a, b in zip(_counters(app), before, strict=True))
    if batches <= 0:
        return "no audit batches"
    return f"batch {events / batches:,.1f} ev, write {seconds / batches * 1000:.2f} ms"


# -- 1 and 2: audited reads, ingest -------------------------------------------------------------


async def _reads(
    backend: str,
    audited: Strongroom,
    plain: Strongroom,
    *,
    tasks: Sequence[int],
    seconds: float,
    warmup_seconds: float,
    rounds: int,
) -> list[ResultRow]:
    on, off = SecretsManager(audited), SecretsManager(plain)
    names = [f"bench-{k:03d}" for k in range(SECRET_COUNT)]
    values = [secrets.token_urlsafe(48) for _ in names]
    await asyncio.gather(*(on.create_secret(n, v) for n, v in zip(names, values, strict=True)))
    for manager in (on, off):
        if await asyncio.gather(*(manager.get_secret(n) for n in names)) != values:
            raise RuntimeError(f"{backend}: get_secret did not return the values just created")

    async def read_on(i: int) -> object:
        return await on.get_secret(names[i % SECRET_COUNT])

    async def read_off(i: int) -> object:
        return await off.get_secret(names[i % SECRET_COUNT])

    section = f"audit {backend}"
    rows: list[ResultRow] = []
    for concurrency in tasks:
        before = _counters(audited)
        m_off, m_on = await run_async_interleaved(
            [(f"{backend} {_READ_OFF}", read_off), (f"{backend} {_READ_ON}", read_on)],
            concurrency=concurrency,
            seconds=seconds,
            warmup_seconds=warmup_seconds,
            rounds=rounds,
        )
        ratio = m_on.ops_per_s / m_off.ops_per_s if m_off.ops_per_s > 0 else None
        rows.append(ResultRow(section, _READ_OFF, m_off))
        rows.append(
            ResultRow(
                section,
                _READ_ON,
                m_on,
                reference=_READ_OFF,
                ratio=ratio,
                goal=_READ_GOAL if concurrency == _GOAL_TASKS else None,
                note=_batch_note(audited, before),
            )
        )
    return rows


_VERSIONS = [secrets.token_hex(16) for _ in range(SECRET_COUNT)]


def _event(app: Strongroom, k: int) -> AuditEvent:
    """A READ event as a read would leave it, stamped now.

    The time matters: events stamped once and replayed would land in the middle of every
    (..., timestamp) index instead of at its end, and insert rates would fall as the table
    grows (SQLite: about 70,000 -> 25,000 events/s over the first 60,000 rows)."""
    return AuditEvent.build(
        action=AuditAction.READ,
        resource_name=f"bench-{k % SECRET_COUNT:03d}",
        timestamp=app.clock(),
        result=AuditResult.SUCCESS,
        actor_id=f"bench-actor-{k % 8}",
        actor_ip=f"127.0.0.{1 + k % 8}",
        actor_user_agent="strongroom-bench/1",
        details={"version": _VERSIONS[k % SECRET_COUNT]},
        duration_ms=0,
    )


async def _ingest(
    backend: str,
    app: Strongroom,
    *,
    tasks: Sequence[int],
    seconds: float,
    warmup_seconds: float,
    rounds: int,
) -> list[ResultRow]:
    store = app.audit.store
    if store is None:
        raise RuntimeError("the audited instance has no audit store")
    template = [_event(app, k) for k in range(_APPEND_BATCH)]
    section = f"audit {backend}"

    async def append(_i: int) -> object:
        now = app.clock()
        batch = [replace(event, timestamp=now) for event in template]
        return await store.append(batch, app.audit.key)

    # The ceiling: the store taking 1,000 events per call from one task (no AuditLog).
    m = await run_async(
        append,
        label=f"{backend} AuditStore.append",
        seconds=seconds,
        warmup_seconds=warmup_seconds,
        rounds=rounds,
    )
    ceiling = _per_event(m, _APPEND_BATCH)
    ceiling_label = f"AuditStore.append x{_APPEND_BATCH}"
    rows = [ResultRow(section, ceiling_label, ceiling, note=f"events/s, {_APPEND_BATCH}/commit")]

    async def record(i: int) -> None:
        await app.audit.record(_event(app, i))

    for concurrency in tasks:
        label = f"{backend} audit.record"
        if warmup_seconds > 0:
            await run_async(
                record,
                label=label,
                concurrency=concurrency,
                seconds=warmup_seconds,
                warmup_seconds=0,
                rounds=1,
            )
        before = _counters(app)
        m = await run_async(
            record,
            label=label,
            concurrency=concurrency,
            seconds=seconds,
            warmup_seconds=0,
            rounds=rounds,
        )
        rows.append(
            ResultRow(
                section,
                "audit.record",
                m,
                reference=ceiling_label,
                ratio=m.ops_per_s / ceiling.ops_per_s if ceiling.ops_per_s > 0 else None,
                note=_batch_note(app, before),
            )
        )
    return rows


def _per_event(m: Measurement, per_op: int) -> Measurement:
    """A measurement of batch calls restated in events (latencies stay per call)."""
    return replace(
        m,
        ops=m.ops * per_op,
        ops_per_s=m.ops_per_s * per_op,
        round_ops_per_s=tuple(r * per_op for r in m.round_ops_per_s),
    )


async def _run_backend(
    backend: str,
    run: AuditRun,
    *,
    read_tasks: Sequence[int],
    ingest_tasks: Sequence[int],
    seconds: float,
    warmup_seconds: float,
    rounds: int,
    pg_url: str,
) -> None:
    schema = f"bench_{secrets.token_hex(4)}"
    async with AsyncExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="strongroom-bench-")))
        settings = _settings(backend, home, schema, pg_url)
        # Settings that change what an audited write costs (read defensively: they evolve).
        run.info[backend] = {
            "audit_fsync": getattr(settings, "audit_fsync", None),
            "audit_timeout_seconds": settings.audit_timeout_seconds,
            "schema": schema if backend == "postgres" else None,
        }
        if backend == "postgres":
            stack.push_async_callback(_drop_schema, pg_url, schema)
        audited = await Strongroom.open(settings)
        stack.push_async_callback(audited.close)
        plain = await Strongroom.open(settings, audit=False)
        stack.push_async_callback(plain.close)
        run.rows += await _reads(
            backend,
            audited,
            plain,
            tasks=read_tasks,
            seconds=seconds,
            warmup_seconds=warmup_seconds,
            rounds=rounds,
        )
        run.rows += await _ingest(
            backend,
            audited,
            tasks=ingest_tasks,
            seconds=seconds,
            warmup_seconds=warmup_seconds,
            rounds=rounds,
        )


# -- 3: queries over a generated dataset --------------------------------------------------------

#: One statement makes every event: ids 1..n in time order over the last QUERY_DAYS days; each
#: event picks a secret, an actor (two IPs each, one of 7 user agents), an action and, with the
#: given probability, a failure with an error code. LIST events name no secret.
_GENERATE = """
INSERT INTO secrets_audit_log (id, action, resource_name, timestamp, result, actor_id, actor_ip,
    actor_user_agent, details, error_message, error_code, duration_ms, prev_hash, chain_hash)
SELECT g, a.action,
    CASE WHEN a.action = 'LIST' THEN NULL ELSE 'secret-' || lpad(s.res::text, 4, '0') END,
    $2::timestamptz - make_interval(days => $3)
        + (g - 1 + s.jitter) * (make_interval(days => $3) / $1),
    CASE WHEN s.fail THEN 'FAILURE' ELSE 'SUCCESS' END,
    'actor-' || lpad(s.act::text, 3, '0'),
    '10.' || (s.act / 100) || '.' || (s.act % 100) || '.' || (1 + g % 2),
    'strongroom-client/1.' || (s.act % 7),
    CASE WHEN a.action IN ('READ', 'UPDATE', 'CREATE', 'ROTATE')
        THEN jsonb_build_object('version', to_hex(g)) ELSE '{}'::jsonb END,
    CASE WHEN s.fail THEN 'generated failure' END,
    CASE WHEN s.fail THEN (ARRAY['not_found', 'not_found', 'not_found', 'permission_denied',
        'permission_denied', 'deleted', 'disabled', 'revoked'])[1 + g % 8] END,
    (s.jitter * 20)::int,
    $7::bytea, $7::bytea
FROM (SELECT g, random() AS jitter, random() AS pick,
             1 + floor(random() * $4)::int AS res, 1 + floor(random() * $5)::int AS act,
             random() < $6 AS fail
      FROM generate_series(1, $1::bigint) AS g) AS s
CROSS JOIN LATERAL (SELECT CASE WHEN s.pick < 0.70 THEN 'READ' WHEN s.pick < 0.80 THEN 'DESCRIBE'
    WHEN s.pick < 0.88 THEN 'LIST' WHEN s.pick < 0.94 THEN 'UPDATE'
    WHEN s.pick < 0.97 THEN 'CREATE' WHEN s.pick < 0.99 THEN 'ROTATE'
    ELSE 'DELETE' END AS action) AS a
"""


@dataclass
class QueryDataset:
    """A generated audit log in its own schema, with a Strongroom open on it."""

    schema: str
    events: int
    app: Strongroom
    lock_conn: asyncpg.Connection
    seconds: float
    table_size: str


class _DatasetCache:
    """Datasets generated in this process, by (url, events); dropped by :meth:`close`."""

    def __init__(self) -> None:
        self._sets: dict[tuple[str, int], QueryDataset] = {}
        self._lock = asyncio.Lock()

    async def get(self, pg_url: str, events: int) -> tuple[QueryDataset, bool]:
        """The dataset and whether it was made by this call (False: reused)."""
        async with self._lock:
            found = self._sets.get((pg_url, events))
            if found is not None:
                return found, False
            made = await _generate(pg_url, events)
            self._sets[(pg_url, events)] = made
            return made, True

    async def close(self) -> None:
        async with self._lock:
            sets, self._sets = list(self._sets.values()), {}
        for ds in sets:
            try:
                await ds.app.close()
            finally:
                try:
                    await ds.lock_conn.execute(f'DROP SCHEMA IF EXISTS "{ds.schema}" CASCADE')
                finally:
                    await ds.lock_conn.close()


_DATASETS = _DatasetCache()


async def close_datasets() -> None:
    """Drop every dataset schema this process generated (call once, at the end of the run)."""
    await _DATASETS.close()


async def _drop_abandoned(conn: asyncpg.Connection) -> list[str]:
    """Drop bench_audit_* schemas whose owner no longer holds their lock."""
    dropped: list[str] = []
    names = await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_audit\\_%' ORDER BY 1"
    )
    for (name,) in names:
        if await conn.fetchval(
            "SELECT pg_try_advisory_lock($1, hashtext($2))", _DATASET_LOCK_CLASS, name
        ):
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                dropped.append(name)
            finally:
                await conn.fetchval(
                    "SELECT pg_advisory_unlock($1, hashtext($2))", _DATASET_LOCK_CLASS, name
                )
    return dropped


async def _generate(pg_url: str, events: int) -> QueryDataset:
    started = time.perf_counter()
    schema = f"bench_audit_{secrets.token_hex(4)}"
    lock_conn = await asyncpg.connect(pg_url, timeout=5)
    try:
        await lock_conn.execute(
            "SELECT pg_advisory_lock($1, hashtext($2))", _DATASET_LOCK_CLASS, schema
        )
        await _drop_abandoned(lock_conn)
        with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as home:
            # Opening runs the migrations: the schema gets the real tables and indexes.
            app = await Strongroom.open(_settings("postgres", Path(home), schema, pg_url))
        try:
            await _fill(pg_url, schema, events, app.clock())
            size = await lock_conn.fetchval(
                "SELECT pg_size_pretty(pg_total_relation_size($1::regclass))",
                f"{schema}.secrets_audit_log",
            )
        except BaseException:
            await app.close()
            raise
    except BaseException:
        try:
            await lock_conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await lock_conn.close()
        raise
    return QueryDataset(schema, events, app, lock_conn, time.perf_counter() - started, size)


async def _fill(pg_url: str, schema: str, events: int, now: datetime) -> None:
    """Insert the events (indexes dropped and rebuilt around the insert: same indexes, built
    faster), set the chain head after them, then VACUUM (ANALYZE) as autovacuum would."""
    conn = await asyncpg.connect(pg_url, timeout=5, server_settings={"search_path": schema})
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")
            await conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
            indexes = await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
                "AND tablename = 'secrets_audit_log' AND indexname <> 'secrets_audit_log_pkey'",
                schema,
            )
            for name, _ in indexes:
                await conn.execute(f'DROP INDEX "{name}"')
            await conn.execute(
                _GENERATE,
                events,
                now,
                QUERY_DAYS,
                QUERY_SECRETS,
                QUERY_ACTORS,
                QUERY_FAILURE_RATE,
                _FILLER_HASH,
            )
            for _, definition in indexes:
                await conn.execute(definition)
            await conn.execute(
                "UPDATE secrets_audit_chain SET last_seq = $1, last_hash = $2 WHERE id = 1",
                events,
                _FILLER_HASH,
            )
        await conn.execute("VACUUM (ANALYZE) secrets_audit_log")
    finally:
        await conn.close()


class _TimedStore:
    """An audit store that records each summary/analysis call: its parameters and wall time
    (pool waits included: detection runs its analyses concurrently)."""

    def __init__(self, inner: AuditStore) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.calls: list[tuple[str, dict[str, Any], float]] = []

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def append(self, events: list[AuditEvent], key: ChainKey) -> list[int]:
        return await self.inner.append(events, key)

    async def trail(self, where: TrailFilter, limit: int, offset: int) -> list[StoredEvent]:
        return await self.inner.trail(where, limit, offset)

    async def count(self, where: TrailFilter) -> int:
        return await self.inner.count(where)

    async def summary_groups(
        self, resource_name: str | None, since: datetime
    ) -> list[tuple[str, str | None, int, int]]:
        started = time.perf_counter()
        found = await self.inner.summary_groups(resource_name, since)
        params = {"resource_name": resource_name, "since": since}
        self.calls.append(("summary", params, time.perf_counter() - started))
        return found

    async def chain_state(self) -> ChainState:
        return await self.inner.chain_state()

    async def max_id(self) -> int:
        return await self.inner.max_id()

    def scan(self, after_id: int, up_to_id: int, batch: int) -> AsyncIterator[list[StoredEvent]]:
        return self.inner.scan(after_id, up_to_id, batch)

    async def prune(self, before: datetime) -> tuple[int, int]:
        return await self.inner.prune(before)

    async def analyse(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        found = await self.inner.analyse(query, params)
        self.calls.append((query, dict(params), time.perf_counter() - started))
        return found


def _sql_of(name: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """The SQL and values the PostgreSQL store sends for a recorded call."""
    if name == "summary":
        return POSTGRES.compile(summary_sql(POSTGRES, params["resource_name"]), params)
    return POSTGRES.compile(analysis_sql(POSTGRES, name, params), params)


@dataclass(frozen=True, slots=True)
class _Query:
    label: str
    call: Callable[[SecretsAudit], Awaitable[dict[str, Any]]]


_QUERIES = (
    _Query("get_audit_summary all", lambda a: a.get_audit_summary(days=30)),
    _Query(
        "get_audit_summary 1 secret",
        lambda a: a.get_audit_summary(QUERY_RESOURCE, days=30),
    ),
    _Query("detect window=30min", lambda a: a.detect_suspicious_activity(time_window_minutes=30)),
    _Query(
        "detect window=7d",
        lambda a: a.detect_suspicious_activity(time_window_minutes=10080),
    ),
)


async def _time_query(
    audit: SecretsAudit, store: _TimedStore, query: _Query
) -> tuple[Measurement, list[tuple[str, dict[str, Any], float]], dict[str, Any]]:
    """1 warm-up and QUERY_TIMED_RUNS timed runs; the calls of the median run; its result."""
    await query.call(audit)
    runs: list[tuple[int, list[tuple[str, dict[str, Any], float]], dict[str, Any]]] = []
    for _ in range(QUERY_TIMED_RUNS):
        store.calls = []
        started = time.perf_counter_ns()
        result = await query.call(audit)
        runs.append((time.perf_counter_ns() - started, store.calls, result))
    times = [ns for ns, _, _ in runs]
    m = summarize(
        f"postgres {query.label}",
        1,
        times,
        sum(times),
        round_rates=[1e9 / ns for ns in times],
    )
    median = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    return m, median[1], median[2]


def _result_note(result: dict[str, Any]) -> str:
    if "threats_detected" in result:
        return f"{result['threats_detected']:,} threats"
    return f"{result['total_events']:,} events"


async def _queries(
    run: AuditRun, pg_url: str, events: int, *, explain_all: bool, quick: bool
) -> None:
    dataset, made = await _DATASETS.get(pg_url, events)
    app = dataset.app
    reduced = ""
    if dataset.events != QUERY_EVENTS:
        reduced = f" (not {QUERY_EVENTS:,}: {'--quick' if quick else '--audit-events'})"
    run.info["query_dataset"] = {
        "schema": dataset.schema,
        "events": dataset.events,
        "generated_seconds": round(dataset.seconds, 1),
        "table_size": dataset.table_size,
        "reused": not made,
    }
    run.notes.append(
        f"audit queries: {dataset.events:,} generated events{reduced} over {QUERY_DAYS} days, "
        f"{QUERY_SECRETS:,} secrets, {QUERY_ACTORS} actors, {QUERY_FAILURE_RATE:.0%} failures in "
        f"schema {dataset.schema} ({dataset.table_size} with indexes; "
        f"{'generated in ' + format(dataset.seconds, '.1f') + ' s' if made else 'reused'}); "
        "prev_hash/chain_hash are filler bytes (the chain does not verify: these rows only time "
        f"the queries). Time = median of {QUERY_TIMED_RUNS} runs after 1 warm-up "
        "(p50 ms = median, p99 ms = slowest run)."
    )
    inner = app.audit.store
    if inner is None:
        raise RuntimeError("the dataset's Strongroom has no audit store")
    timed = _TimedStore(inner)
    app.audit.store = timed
    try:
        audit = SecretsAudit(app)
        for query in _QUERIES:
            m, calls, result = await _time_query(audit, timed, query)
            slowest = max(calls, key=lambda c: c[2])
            note = _result_note(result)
            if len(calls) > 1:
                note += f"; slowest: {slowest[0]} {fmt_ms(slowest[2] * 1000)} ms"
            row = ResultRow("audit postgres", query.label, m, goal=_QUERY_GOAL, note=note)
            run.rows.append(row)
            if row.status == "MISS" or explain_all:
                run.notes += await _explain_calls(pg_url, dataset, query.label, row, calls)
    finally:
        app.audit.store = inner


# -- EXPLAIN --------------------------------------------------------------------------------

#: Where each query is built in src and what to change when it dominates a plan. Checked on
#: this dataset (1M events) with the plans reported below; the bench never changes src.
_FIXES: dict[str, str] = {
    "summary": (
        "src/strongroom/db/audit_sql.py summary_sql (PostgreSQL branch): the planner has no "
        "statistics for to_char(timestamp AT TIME ZONE 'UTC', ...) and guesses one group per "
        "row, so it will not hash the day set: it sorts every row for it (spilling past "
        "work_mem) and feeds the sorted action set from a full scan of the (action, timestamp) "
        "index, which visits the heap in random order. Rewrite in two stages: an inner GROUP BY "
        "action, result, actor_id, actor_ip, (timestamp AT TIME ZONE 'UTC')::date with count(*) "
        "and the failure count, then the GROUPING SETS over those rows summing both (to_char on "
        "the day keys only); or store the day (migration: day date GENERATED ALWAYS AS "
        "((timestamp AT TIME ZONE 'UTC')::date) STORED) so one HashAggregate over a Seq Scan "
        "does every set. Either still reads every event in the window; for a summary whose cost "
        "does not grow with the log, keep daily counts per (day, action, result, actor_id, "
        "actor_ip) in PostgresAuditStore.append (same transaction as the batch insert) and "
        "read raw rows only for the partial first day."
    ),
    "new_ip": (
        "src/strongroom/db/migrations (new step): CREATE INDEX ON secrets_audit_log (actor_id, "
        "actor_ip, timestamp). ANALYSES['new_ip'] (src/strongroom/db/audit_sql.py) asks NOT "
        "EXISTS (same actor, same IP, in the baseline); without an index on those columns the "
        "planner makes it a Hash Anti Join that hashes every baseline event (a Seq Scan of the "
        "whole 30-day baseline, on every detection, however short the window). With the index "
        "it is a Nested Loop Anti Join with one index-only probe per (actor, IP) of the window."
    ),
    "new_user_agent": (
        "src/strongroom/db/migrations (new step): CREATE INDEX ON secrets_audit_log (actor_id, "
        "actor_user_agent, timestamp) (or on md5(actor_user_agent), comparing md5s in "
        "ANALYSES['new_user_agent'], to keep long agents out of the index): same Hash Anti Join "
        "over the whole baseline as new_ip, same cure."
    ),
    "enumeration": (
        "ANALYSES['enumeration'] (src/strongroom/db/audit_sql.py): two count(DISTINCT ...) per "
        "actor sort every event of the window; count distinct (actor_id, resource_name) pairs "
        "in a subquery (SELECT actor_id, resource_name, bool_or(error_code = 'not_found') ... "
        "GROUP BY 1, 2), which PostgreSQL hashes, then count per actor."
    ),
    "rates": (
        "ANALYSES['rates'] (src/strongroom/db/audit_sql.py) counts every event of the window and "
        "its 7-day baseline per actor; an index on (timestamp) INCLUDE (actor_id, actor_ip) "
        "makes that an index-only scan, and hourly per-actor counts kept at append time make "
        "it independent of the event count."
    ),
}


_BUFFER_KEYS = ("Shared Read Blocks", "Shared Hit Blocks", "Temp Written Blocks")


def _walk(node: dict[str, Any], out: list[dict[str, Any]], processes: int = 1) -> None:
    """Flatten a JSON plan, giving each node its own (exclusive) wall time over all its loops
    and its own buffer counts.

    Under a Gather, loops count the processes too (workers and leader) and times are per
    process, so times are scaled by loops / processes: wall time, not summed CPU time."""
    inner = processes
    if node["Node Type"] in ("Gather", "Gather Merge"):
        inner = node.get("Workers Launched", 0) + 1

    def wall(n: dict[str, Any], procs: int) -> float:
        loops: float = n.get("Actual Loops", 1)
        return float(n.get("Actual Total Time", 0.0)) * max(1.0, loops / procs)

    children = node.get("Plans", [])
    below = sum(wall(c, inner) for c in children)
    mine = {**node, "_self_ms": max(0.0, wall(node, processes) - below)}
    for key in _BUFFER_KEYS:  # buffer counts include the children's: keep the node's own
        mine[key] = max(0, node.get(key, 0) - sum(c.get(key, 0) for c in children))
    out.append(mine)
    for child in children:
        _walk(child, out, inner)


def _short(key: str, limit: int = 48) -> str:
    key = key.replace("secrets_audit_log.", "")
    return key if len(key) <= limit else key[: limit - 3] + "..."


def _grouping(node: dict[str, Any]) -> str:
    """How a GROUPING SETS aggregate computes each set: hashed, from sorted input, sorted."""
    hashed: list[str] = []
    from_input: list[str] = []
    sorted_here: list[str] = []
    for spec in node.get("Grouping Sets") or []:
        hashed += [", ".join(_short(k) for k in keys) for keys in spec.get("Hash Keys", [])]
        target = sorted_here if spec.get("Sort Key") else from_input
        target += [", ".join(_short(k) for k in keys) for keys in spec.get("Group Keys", [])]
    parts = [
        f"{label}: {' | '.join(sets)}"
        for label, sets in (
            ("hashed", hashed),
            ("grouped in input order", from_input),
            ("sorted here", sorted_here),
        )
        if sets
    ]
    return "; ".join(parts)


def _describe(node: dict[str, Any]) -> str:
    text = str(node["Node Type"])
    if node.get("Strategy") and node["Node Type"] == "Aggregate":
        text = f"{node['Strategy']} Aggregate"
        if node.get("Grouping Sets"):
            text += f" ({_grouping(node)})"
    if node.get("Index Name"):
        text += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        text += f" on {node['Relation Name']}"
    loops = node.get("Actual Loops", 1)
    rows = node.get("Actual Rows", 0) * loops
    text += f": {node['_self_ms']:,.0f} ms self, {rows:,} rows"
    if loops > 1:
        text += f" over {loops:,} loops"
    io = []
    for key, label in (("Shared Read Blocks", "read"), ("Shared Hit Blocks", "hit")):
        if node.get(key):
            io.append(f"shared {label}={node[key]:,}")
    if node.get("Temp Written Blocks"):
        io.append(f"temp written={node['Temp Written Blocks']:,} (spills to disk)")
    if node.get("Sort Method"):
        io.append(f"sort {node['Sort Method']}")
    if node.get("HashAgg Batches", 0) > 1:
        io.append(f"hash aggregate in {node['HashAgg Batches']} batches (spills to disk)")
    if node.get("Hash Batches", 0) > 1:
        io.append(f"hash in {node['Hash Batches']} batches (spills to disk)")
    if io:
        text += " [" + ", ".join(io) + "]"
    return text


async def _explain(conn: asyncpg.Connection, sql: str, values: list[Any]) -> dict[str, Any]:
    raw = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *values)
    plan: dict[str, Any] = json.loads(raw)[0]
    return plan


async def _explain_calls(
    pg_url: str,
    dataset: QueryDataset,
    label: str,
    row: ResultRow,
    calls: list[tuple[str, dict[str, Any], float]],
) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) every statement the query sent, one at a time; the statements
    and plan nodes that dominate, and the fix for each statement that matters."""
    lines = [
        f"EXPLAIN {label} ({row.status or 'explained'}: median "
        f"{fmt_ms(row.measurement.p50_ms)} ms; {len(calls)} statement"
        f"{'s' if len(calls) > 1 else ''}, run one at a time here):"
    ]
    conn = await asyncpg.connect(
        pg_url,
        timeout=5,
        server_settings={"search_path": dataset.schema},
    )
    try:
        explained: list[tuple[float, str, dict[str, Any]]] = []
        for name, params, _ in calls:
            sql, values = _sql_of(name, params)
            plan = await _explain(conn, sql, values)
            explained.append((plan.get("Execution Time", 0.0), name, plan))
    finally:
        await conn.close()
    explained.sort(key=lambda e: -e[0])
    total = sum(e[0] for e in explained) or 1.0
    for execution_ms, name, plan in explained:
        if execution_ms < 0.05 * total and execution_ms < 50:
            continue
        nodes: list[dict[str, Any]] = []
        _walk(plan["Plan"], nodes)
        nodes.sort(key=lambda n: -n["_self_ms"])
        lines.append(
            f"  {name}: {execution_ms:,.0f} ms execution ({execution_ms / total:.0%} of the "
            "statements' total)"
        )
        for rank, node in enumerate(nodes[:2]):
            share = node["_self_ms"] / execution_ms if execution_ms else 0.0
            lines.append(
                f"    {'dominant' if rank == 0 else 'next'} ({share:.0%}): {_describe(node)}"
            )
        if name in _FIXES and execution_ms >= max(0.2 * total, 100.0):
            lines.append(f"    fix: {_FIXES[name]}")
    if len(calls) > 1:
        lines.append(
            "  (detection sends these concurrently on the audit pool of "
            "PostgresAuditStore, max 4 connections; its time is about the slowest chain)"
        )
    return lines


# -- entry point ----------------------------------------------------------------------------


async def run_audit(
    *,
    read_tasks: Sequence[int],
    ingest_tasks: Sequence[int] = INGEST_TASKS,
    seconds: float,
    warmup_seconds: float,
    rounds: int = 5,
    pg_url: str = PG_URL,
    query_events: int = QUERY_EVENTS,
    quick: bool = False,
    explain_all: bool = False,
    progress: Callable[[str], None] | None = None,
) -> AuditRun:
    """Run the audit benchmarks on SQLite and PostgreSQL (PostgreSQL parts are skipped, with a
    note, when it cannot be reached). The query dataset stays until :func:`close_datasets`."""
    run = AuditRun()
    pg_down = await _pg_reachable(pg_url)
    for backend in BACKENDS:
        if backend == "postgres" and pg_down:
            run.skipped.append(f"audit postgres: SKIPPED - {pg_down}")
            continue
        if progress:
            progress(f"audit {backend}: reads, ingest")
        await _run_backend(
            backend,
            run,
            read_tasks=read_tasks,
            ingest_tasks=ingest_tasks,
            seconds=seconds,
            warmup_seconds=warmup_seconds,
            rounds=rounds,
            pg_url=pg_url,
        )
    if not pg_down:
        if progress:
            progress(f"audit postgres: queries over {query_events:,} events")
        await _queries(run, pg_url, query_events, explain_all=explain_all, quick=quick)
    fsync = {b: run.info.get(b, {}).get("audit_fsync") for b in BACKENDS}
    if fsync.get("sqlite") is not None:
        run.notes.append(
            f"audit settings: STRONGROOM_AUDIT_FSYNC={str(fsync['sqlite']).lower()} (SQLite audit "
            f"commits {'are fsynced' if fsync['sqlite'] else 'skip fsync'}); PostgreSQL commits "
            "follow the server's synchronous_commit."
        )
    if any(r.operation == _READ_ON for r in run.rows):
        run.notes.append(
            "audit reads: ratio = audit=on ops/s / audit=off ops/s, measured round by round in "
            "turn; an audited read returns once its READ event is committed (group commit). "
            "SQLite reads run on the caller's thread without yielding, so audit=off with many "
            "tasks is sequential (marked *)."
        )
    if any(r.operation == "audit.record" for r in run.rows):
        run.notes.append(
            "audit ingest: audit.record ops = events (each built with AuditEvent.build, stamped "
            "now), each caller awaiting its batch's commit; "
            f"'batch' = mean events per group commit, 'write' = mean time per batch write; ratio "
            f"vs AuditStore.append of {_APPEND_BATCH} events per call from one task."
        )
    return run
