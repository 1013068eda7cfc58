"""Load generation and process plumbing for the HTTP benchmark (bench_http).

- :func:`run_wrk` drives a URL with ``wrk`` (a C load generator: a Python client on the same two
  cores would be the bottleneck, not the server) and reads its totals and latency percentiles
  from a Lua ``done`` hook that prints one JSON line, so nothing depends on wrk's text layout.
- :class:`CpuProbe` samples the CPU time of a server's whole process tree (uvicorn's supervisor
  and its workers) and of the machine, so each row can say who used the cores.
- :class:`Served` starts a server process in its own session with its output in a file (an
  unread pipe would stall a chatty server), waits until it answers, and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

__all__ = [
    "CpuProbe",
    "CpuUse",
    "Served",
    "WrkResult",
    "child_env",
    "free_port",
    "run_wrk",
    "wrk_path",
]

_TICKS = os.sysconf("SC_CLK_TCK")
#: Variables of the caller's shell that would point a server at another store or change it.
_FOREIGN_PREFIXES = ("STRONGROOM_", "DATABASE_URL", "AZURE_", "VAULT_", "BAO_")
_FOREIGN_NAMES = frozenset({"LOG_LEVEL", "DEBUG"})

# wrk runs this: the auth header from the environment (never on a command line), and one JSON
# line with the totals and exact histogram percentiles (microseconds) when the run ends.
_LUA = """
local name = os.getenv("BENCH_HEADER_NAME")
if name and name ~= "" then
  wrk.headers[name] = os.getenv("BENCH_HEADER_VALUE")
end
local method = os.getenv("BENCH_METHOD")
if method and method ~= "" then
  wrk.method = method
  wrk.body = os.getenv("BENCH_BODY")
  wrk.headers["Content-Type"] = "application/json"
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,'
    .. '"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def wrk_path() -> str | None:
    """The ``wrk`` binary, or None (the HTTP benchmark is then skipped)."""
    return shutil.which("wrk")


def free_port() -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the caller's strongroom/OpenBao settings, plus
    ``extra``: each server sees exactly the configuration the benchmark gives it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_FOREIGN_PREFIXES) and k not in _FOREIGN_NAMES
    }
    env.update(extra)
    return env


# -- CPU --------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ')' is space-separated.
    return raw[raw.rfind(")") + 2 :].split()


def _tree(root: int) -> list[int]:
    """``root`` and every descendant (uvicorn's workers, multiprocessing helpers)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    found = [root]
    for pid in found:  # grows while walking: breadth-first
        found += [child for child, parent in parents.items() if parent == pid]
    return found


def _named_cpu_s(name: str) -> float:
    """User + system seconds of every live process whose command name is ``name``."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        if raw[raw.find("(") + 1 : raw.rfind(")")] == name:
            fields = raw[raw.rfind(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS


def _tree_cpu_s(root: int) -> float:
    """User + system seconds of the tree's live processes (utime, stime: fields 14-15)."""
    ticks = 0
    for pid in _tree(root):
        if (fields := _stat_fields(pid)) is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS


def _machine() -> tuple[int, int, int, int]:
    """(busy, interrupts, steal, total) jiffies over all CPUs. Idle and iowait are not busy;
    interrupts (mostly softirq: loopback TCP is delivered there) are charged to no process, and
    steal is time the hypervisor gave to another guest."""
    first = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in first[:8])
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total - idle - iowait, irq + softirq, steal, total


@dataclass(frozen=True, slots=True)
class CpuUse:
    """Cores in use on average during one run: the server's tree, the load generator, the
    PostgreSQL server's processes, and the whole machine. What is left (``other``) is someone
    else's work competing for the same cores: a run with much of it understates the server."""

    server: float
    loadgen: float
    postgres: float
    interrupts: float
    steal: float
    machine: float
    cpus: int

    @property
    def other(self) -> float:
        charged = self.server + self.loadgen + self.postgres + self.interrupts + self.steal
        return max(0.0, self.machine - charged)

    def text(self, per_s: float = 0.0) -> str:
        """One line for the table; with the run's rate, also the server's CPU per request (less
        sensitive to other programs on the machine than the rate itself)."""
        pg = f", postgres {self.postgres:.2f}" if self.postgres >= 0.01 else ""
        steal = f", steal {self.steal:.2f}" if self.steal >= 0.01 else ""
        each = f" ({self.server / per_s * 1e6:.0f} us/req)" if per_s > 0 else ""
        return (
            f"cpu: server {self.server:.2f}{each}, wrk {self.loadgen:.2f}{pg}, "
            f"irq {self.interrupts:.2f}{steal}, other {self.other:.2f}, "
            f"machine {self.machine:.2f}/{self.cpus}"
        )


class CpuProbe:
    """Samples the server tree's and the machine's CPU time at start, then at :meth:`stop`."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.t0 = time.monotonic()
        self.server0 = _tree_cpu_s(server_pid)
        self.postgres0 = _named_cpu_s("postgres")
        self.machine0 = _machine()

    def stop(self, loadgen_cpu_s: float) -> CpuUse:
        wall = max(time.monotonic() - self.t0, 1e-9)
        server = _tree_cpu_s(self.pid) - self.server0
        # Backends that ended during the run take their CPU with them: clamp at zero.
        postgres = max(0.0, _named_cpu_s("postgres") - self.postgres0)
        busy, irq, steal, total = _machine()
        cpus = os.cpu_count() or 1
        elapsed = max(total - self.machine0[3], 1)

        def cores(now: int, before: int) -> float:
            return (now - before) / elapsed * cpus

        return CpuUse(
            server=server / wall,
            loadgen=loadgen_cpu_s / wall,
            postgres=postgres / wall,
            interrupts=cores(irq, self.machine0[1]),
            steal=cores(steal, self.machine0[2]),
            machine=cores(busy, self.machine0[0]),
            cpus=cpus,
        )


# -- wrk --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run reported; latencies in milliseconds."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non2xx: int
    socket_errors: int
    #: CPU seconds wrk itself used (it shares the cores with the server).
    cpu_s: float
    cpu: CpuUse | None = None

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def problems(self) -> str | None:
        """Why this run is not a valid measurement, or None."""
        if self.requests == 0:
            return "no responses"
        if self.non2xx or self.socket_errors:
            return (
                f"{self.non2xx:,} non-2xx responses and {self.socket_errors:,} socket errors "
                f"of {self.requests:,}"
            )
        return None


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    header: tuple[str, str] | None = None,
    probe_pid: int | None = None,
    method: str = "GET",
    body: str = "",
) -> WrkResult:
    """One wrk run against ``url`` (keep-alive, ``connections`` open, ``threads`` threads);
    another ``method`` sends ``body`` as JSON with every request.

    With ``probe_pid`` the server tree's and the machine's CPU are sampled around the run.
    """
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    env = dict(os.environ)
    env["BENCH_HEADER_NAME"], env["BENCH_HEADER_VALUE"] = header or ("", "")
    env["BENCH_METHOD"], env["BENCH_BODY"] = ("", "") if method == "GET" else (method, body)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", encoding="utf-8") as script:
        script.write(_LUA)
        script.flush()
        argv = [
            wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "5s", "-s", script.name, url,
        ]  # fmt: skip
        probe = CpuProbe(probe_pid) if probe_pid is not None else None
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
        # wait4, not wait: it also returns the CPU that wrk (and only wrk) used.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
    cpu_s = usage.ru_utime + usage.ru_stime
    cpu = probe.stop(cpu_s) if probe is not None else None
    line = next((x for x in output.splitlines() if x.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {output[-1500:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        non2xx=data["non2xx"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        cpu_s=cpu_s,
        cpu=cpu,
    )


# -- a server process -------------------------------------------------------------------------


class Served:
    """A server started with ``argv``; ``ready(client)`` says when it answers (polled).

    Output goes to ``log`` so a server that logs every request never blocks on a full pipe.
    Leaving the block sends SIGTERM to the process started here and waits for it; only if it
    has not ended after ``stop_timeout`` is its own process group (workers included) killed.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        ready: Callable[[httpx.Client], bool],
        base_url: str,
        cwd: Path | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self.ready = ready
        self.base_url = base_url
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> Served:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.argv[0]} exited ({self.proc.returncode}): {self.log_tail()}"
                    )
                try:
                    if self.ready(client):
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{self.argv[0]} not ready in {self.start_timeout} s: {self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then wait; returns the exit status."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this process leads: ours only
            return proc.wait()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
