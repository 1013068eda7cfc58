"""Edges over a real network cut: the centre and two ``strongroom edge`` processes in network
namespaces of their own, joined by veth uplinks that are cut and healed with ``ip link``.

Under a steady write load at the centre, edge 1 follows it (replica lag, end to end: from the
centre's answer to the new value served at the edge). Its uplink is cut: it goes on serving
within its offline bound, then refuses; revocations made meanwhile reach it once the link is
healed (from the heal to the first refusal of each revoked secret). Edge 2 is killed with
``kill -9`` while its consumers read, and started again. At the end every event of both edges'
journals is at the centre exactly once (lost 0, duplicates 0), every read an edge answered is
among them, and ``audit verify`` passes with both sites' chains.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import trustme
from netns import Topology, topology

from conftest import FULL, Figures, size
from harness import CAP, drop_schema_of, service_env
from strongroom import SecretsAudit, SecretsManager, Settings, Strongroom
from strongroom.core.policy import Policy

CENTRE_PORT, EDGE_PORT = 8200, 8300
HEARTBEAT, IDLE = "0.3", "1.0"  # the feed's keep-alive, and an edge's cut detection
PG_SOCKET = "/var/run/postgresql"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{k: v for k, v in env.items() if k.startswith(("STRONGROOM_", "DATA"))})


async def prepare_centre(env: dict[str, str], revoked: list[str]) -> dict[str, str]:
    """Secrets, policies and tokens at the centre before it serves: an admin and two sites."""
    app = await Strongroom.open(settings_of(env))
    try:
        manager = SecretsManager(app)
        for i in (1, 2):
            await manager.create_secret(f"site{i}-key", f"value-of-site{i}")
        await manager.create_secret("site1-load", "v0")
        for name in revoked:
            await manager.create_secret(name, f"soon-{name}")
        tokens = {"admin": (await app.access.create_token("netcut-admin", policies=["admin"]))}
        for i in (1, 2):
            grants = [f"read,list:site{i}-*", "edge-sync:*"]
            await app.access.put_policy(Policy.build(f"site{i}", grants))
            tokens[f"site{i}"] = await app.access.create_token(f"site-{i}", policies=[f"site{i}"])
        return {name: issued.token for name, issued in tokens.items()}
    finally:
        await app.close()


@dataclass
class Proc:
    """A program inside a namespace; its output goes to a log file."""

    command: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # `ip netns exec` runs the program as itself
        self.proc.wait(CAP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(CAP)
            except subprocess.TimeoutExpired:
                self.kill9()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Site:
    """An edge process and what its consumers saw."""

    number: int
    home: Path
    proc: Proc
    url: str
    token: str = ""
    answered: int = 0  # reads the edge answered (any status)
    statuses: dict[int, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.answered += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def readiness(client: httpx.AsyncClient) -> dict[str, Any] | None:
    try:
        answer = await client.get("/readyz")
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = answer.json()
    return body.get("edge")


async def wait_online(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=2) as probe:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if site.proc.proc is not None and site.proc.proc.poll() is not None:
                raise AssertionError(f"edge {site.number} exited:\n{site.proc.text()[-3000:]}")
            figures = await readiness(probe)
            if figures is not None and figures["online"]:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"edge {site.number} did not come online:\n{site.proc.text()[-3000:]}")


async def consumer_token(site: Site) -> str:
    """The site's consumer token, issued from the edge's own store (as its operator would)."""
    env = {**site.proc.env, "LOG_LEVEL": "WARNING"}
    for args in (
        ["policy", "set", "consumers", "-g", f"read:site{site.number}-*"],
        ["token", "create", f"consumer-{site.number}", "--policy", "consumers"],
    ):
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "strongroom.cli", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await done.communicate()
        assert done.returncode == 0, err.decode()
    return out.decode().strip()


async def read(client: httpx.AsyncClient, site: Site, name: str) -> httpx.Response | None:
    try:
        answer = await client.get(f"/v1/secrets/{name}")
    except httpx.HTTPError:
        return None  # not answered (the edge is down): no event expected
    site.count(answer.status_code)
    return answer


def code(answer: httpx.Response | None) -> str | None:
    if answer is None or answer.status_code == 200:
        return None
    return str(answer.json()["error"]["code"])


def through_socket(dsn: str) -> str:
    """``dsn`` over PostgreSQL's Unix socket: a namespace has a loopback of its own, but the
    socket is a file, which every namespace sees."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(netloc=f"{user}@", query=f"{query}host={PG_SOCKET}"))


@pytest.mark.chaos
@pytest.mark.parametrize("backend", ["sqlite", "postgres"] if FULL else ["sqlite"])
async def test_edges_over_a_real_network_cut(
    backend: str, tmp_path: Path, figures: Figures, postgres_available: None
) -> None:
    if os.geteuid() != 0:
        raise AssertionError("network namespaces need root (CI and these machines have it)")
    load_seconds = size(2, 20)
    revoked = size(4, 20)
    cuts = size(1, 3)
    bound = float(size(3, 6))
    kills = size(1, 3)
    with topology(edges=2) as net:
        names = [[f"site1-rev-{c}-{k}" for k in range(revoked)] for c in range(cuts)]
        result = await scenario(backend, net, tmp_path, load_seconds, names, bound, kills)
    for name, value, target, ok in result:
        figures.add("edges over a network cut", backend, name, value, target, ok)
    failed = [name for name, _, _, ok in result if not ok]
    assert not failed, result


async def scenario(
    backend: str,
    net: Topology,
    tmp: Path,
    load_seconds: int,
    revoked: list[list[str]],
    bound: float,
    kills: int,
) -> list[tuple[str, object, str, bool]]:
    ca = trustme.CA()
    ca_path = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert = ca.issue_cert(*net.centre_addrs())
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "centre.pem"))
    centre_env = service_env(backend, tmp / "centre", STRONGROOM_FEED_HEARTBEAT_SECONDS=HEARTBEAT)
    if backend == "postgres":
        centre_env["DATABASE_URL"] = through_socket(centre_env["DATABASE_URL"])
    try:
        return await _run(net, tmp, centre_env, ca_path, load_seconds, revoked, bound, kills)
    finally:
        await drop_schema_of(centre_env)


async def _run(
    net: Topology, tmp: Path, centre_env: dict[str, str], ca_path: Path, load_seconds: int,
    revoked: list[list[str]], bound: float, kills: int,
) -> list[tuple[str, object, str, bool]]:  # fmt: skip
    tokens = await prepare_centre(centre_env, [n for names in revoked for n in names])
    centre = Proc(
        [*net.exec(net.centre), sys.executable, "-m", "strongroom.cli", "serve",
         "--host", "0.0.0.0", "--port", str(CENTRE_PORT),  # noqa: S104 (inside its namespace)
         "--tls-cert", str(tmp / "centre.pem"), "--tls-key", str(tmp / "centre.pem")],
        centre_env, tmp / "centre.log",
    )  # fmt: skip
    sites = [make_site(net, tmp, i, tokens[f"site{i}"], ca_path, bound) for i in (1, 2)]
    try:
        centre.start()
        for site in sites:
            site.proc.start()
        for site in sites:
            await wait_online(site)
            site.token = await consumer_token(site)
        admin = httpx.AsyncClient(
            base_url=f"https://{net.admin_addr}:{CENTRE_PORT}", timeout=10,
            verify=ssl.create_default_context(cafile=str(ca_path)),
            headers={"Authorization": f"Bearer {tokens['admin']}"},
        )  # fmt: skip
        async with admin:
            rows = await run_phases(net, sites, admin, load_seconds, revoked, kills)
    finally:
        for site in sites:
            site.proc.stop()
        centre.stop()
    rows += await account(centre_env, sites)
    return rows


def make_site(net: Topology, tmp: Path, i: int, token: str, ca: Path, bound: float) -> Site:
    home = tmp / f"edge{i}"
    env = {
        **{k: v for k, v in os.environ.items()
           if not k.startswith(("STRONGROOM_", "DATABASE_URL", "AZURE_"))},
        "STRONGROOM_HOME": str(home), "STRONGROOM_EDGE_TOKEN": token,
        "STRONGROOM_EDGE_MAX_OFFLINE": str(bound), "STRONGROOM_EDGE_IDLE_TIMEOUT": IDLE,
        "STRONGROOM_RATE_LIMIT_PER_SECOND": "0", "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    command = [
        *net.exec(net.edge(i)), sys.executable, "-m", "strongroom.cli", "edge",
        "--upstream", f"https://{net.uplink_addr(i)}:{CENTRE_PORT}", "--scope", f"site{i}-*",
        "--upstream-cacert", str(ca), "--host", "0.0.0.0", "--port", str(EDGE_PORT),  # noqa: S104
    ]  # fmt: skip
    proc = Proc(command, env, tmp / f"edge{i}.log")
    return Site(i, home, proc, f"http://{net.site_addr(i)}:{EDGE_PORT}")


async def run_phases(
    net: Topology, sites: list[Site], admin: httpx.AsyncClient, load_seconds: int,
    revoked: list[list[str]], kills: int,
) -> list[tuple[str, object, str, bool]]:  # fmt: skip
    one, two = sites
    c1 = httpx.AsyncClient(
        base_url=one.url, timeout=5, headers={"Authorization": f"Bearer {one.token}"}
    )
    c2 = httpx.AsyncClient(
        base_url=two.url, timeout=5, headers={"Authorization": f"Bearer {two.token}"}
    )
    async with c1, c2:
        lags = await steady_load(admin, c1, one, load_seconds)
        served = refused = late = leaked = 0
        propagation: list[float] = []
        backs: list[float] = []
        for names in revoked:  # one cut and heal each
            cut = await cut_until_refused(net, admin, c1, c2, one, two, names)
            served, refused, late = served + cut[0], refused + cut[1], late + cut[2]
            times, back, leak = await heal_and_watch(net, c1, one, names)
            propagation += times
            backs.append(back)
            leaked += leak
        restarts = await kill_and_restart(c2, two, kills)
        for site in sites:
            async with httpx.AsyncClient(base_url=site.url, timeout=2) as probe:
                await wait_for_async(lambda p=probe: shipped(p), f"edge {site.number} shipped")
    return [
        ("replica lag p50 / p99 under load (s)",
         f"{percentile(lags, 0.5):.3f} / {percentile(lags, 0.99):.3f}", "", bool(lags)),
        ("writes seen at the edge under load", len(lags), "> 0", len(lags) > 0),
        ("reads served while offline", served, "> 0", served > 0),
        ("reads refused after the bound", refused, "> 0", refused > 0),
        ("reads served after the first refusal", late, "0", late == 0),
        ("cuts healed / revocations made during them", f"{len(revoked)} / {len(propagation)}",
         "", len(propagation) == sum(map(len, revoked))),
        ("revocation after heal p50 / p99 (s)",
         f"{percentile(propagation, 0.5):.3f} / {percentile(propagation, 0.99):.3f}", "", True),
        ("edge online again after heal, max (s)", round(max(backs), 3), "", True),
        ("revoked secrets served after heal", leaked, "0", leaked == 0),
        ("edge kill -9 and restart", restarts, f"{kills}", restarts == kills),
    ]  # fmt: skip


async def wait_for_async(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def shipped(probe: httpx.AsyncClient) -> bool:
    figures = await readiness(probe)
    return figures is not None and figures["journal_unshipped"] == 0


async def steady_load(
    admin: httpx.AsyncClient, c1: httpx.AsyncClient, one: Site, seconds: int
) -> list[float]:
    """A write every 100 ms at the centre; the edge polled every 20 ms: seen minus acked."""
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            answer = await admin.put("/v1/secrets/site1-load", json={"value": f"v{n}"})
            assert answer.status_code == 200, answer.text
            acked[f"v{n}"] = time.monotonic()
            await asyncio.sleep(0.1)

    async def reader() -> None:
        while not stop.is_set() or len(seen) < len(acked) * 0.5:
            answer = await read(c1, one, "site1-load")
            if answer is not None and answer.status_code == 200:
                seen.setdefault(answer.json()["value"], time.monotonic())
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(writer()), asyncio.create_task(reader())]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), CAP)
    return [seen[v] - acked[v] for v in seen if v in acked]


async def cut_until_refused(
    net: Topology, admin: httpx.AsyncClient, c1: httpx.AsyncClient, c2: httpx.AsyncClient,
    one: Site, two: Site, revoked: list[str],
) -> tuple[int, int, int]:  # fmt: skip
    """Cut edge 1's uplink; revoke at the centre; read at edge 1 until past its bound."""
    net.cut(1)
    async with httpx.AsyncClient(base_url=one.url, timeout=2) as probe:
        await wait_for_async(lambda: _offline(probe), "edge 1 to notice the cut")
    for name in revoked:
        answer = await admin.post(
            "/v1/revocations",
            json={"secret_name": name, "reason": "key_compromise", "immediate": True},
        )
        assert answer.status_code == 201, answer.text
    served = refused = late = 0
    deadline = time.monotonic() + CAP
    while refused < 10 and time.monotonic() < deadline:
        answer = await read(c1, one, "site1-key")
        other = await read(c2, two, "site2-key")  # the other site is not cut
        assert other is not None
        assert other.status_code == 200, other.text
        if answer is not None and answer.status_code == 200:
            served += 1
            late += refused > 0
        elif code(answer) == "edge_offline_too_long":
            refused += 1
        await asyncio.sleep(0.05)
    return served, refused, late


async def _offline(probe: httpx.AsyncClient) -> bool:
    figures = await readiness(probe)
    return figures is not None and not figures["online"]


async def heal_and_watch(
    net: Topology, c1: httpx.AsyncClient, one: Site, revoked: list[str]
) -> tuple[list[float], float, int]:
    """Heal the uplink; read each revoked secret until the edge refuses it as revoked (and
    see when the edge reports itself online again)."""
    healed = time.monotonic()
    net.heal(1)
    leaked = 0

    async def watch(name: str) -> float:
        nonlocal leaked
        while True:
            answer = await read(c1, one, name)
            if answer is not None and answer.status_code == 200:
                leaked += 1
            if code(answer) == "revoked":
                return time.monotonic() - healed
            await asyncio.sleep(0.02)

    async def online() -> float:
        await wait_online(one)
        return time.monotonic() - healed

    *times, back = await asyncio.wait_for(
        asyncio.gather(*(watch(name) for name in revoked), online()), CAP
    )
    return list(times), back, leaked


async def kill_and_restart(c2: httpx.AsyncClient, two: Site, kills: int) -> int:
    """Edge 2 killed with SIGKILL while its consumer reads, then started again."""
    restarts = 0
    for _ in range(kills):
        stop = asyncio.Event()

        async def reader(stop: asyncio.Event) -> None:
            while not stop.is_set():
                await read(c2, two, "site2-key")
                await asyncio.sleep(0.01)

        task = asyncio.create_task(reader(stop))
        await asyncio.sleep(0.5)
        two.proc.kill9()
        stop.set()
        await task
        two.proc.start()
        await wait_online(two)
        restarts += 1
    return restarts


async def account(
    centre_env: dict[str, str], sites: list[Site]
) -> list[tuple[str, object, str, bool]]:
    """Both journals against what the centre holds (all processes stopped)."""
    app = await Strongroom.open(settings_of(centre_env))
    try:
        audit = SecretsAudit(app)
        held: dict[str, list[int]] = {}
        reads: dict[str, int] = {}
        async for line in audit.export_lines():
            event = json.loads(line)
            site = event["details"].get("site")
            if site is not None:
                held.setdefault(site, []).append(event["details"]["edge_seq"])
                if event["action"] == "READ" and event["actor_id"].startswith("consumer-"):
                    reads[site] = reads.get(site, 0) + 1
        report = await audit.verify_integrity()
    finally:
        await app.close()
    rows: list[tuple[str, object, str, bool]] = []
    for site in sites:
        name = f"site-{site.number}"
        with sqlite3.connect(site.home / "strongroom.db") as db:
            (journal,) = db.execute("SELECT coalesce(max(id), 0) FROM secrets_audit_log").fetchone()
        seqs = held.get(name, [])
        lost = len(set(range(1, journal + 1)) - set(seqs))
        duplicates = len(seqs) - len(set(seqs))
        unaudited = max(0, site.answered - reads.get(name, 0))
        rows += [
            (f"edge {site.number}: journal events shipped", len(set(seqs)), f"{journal}",
             len(set(seqs)) == journal),
            (f"edge {site.number}: events lost / duplicated", f"{lost} / {duplicates}", "0 / 0",
             lost == 0 and duplicates == 0),
            (f"edge {site.number}: answered reads not at the centre", unaudited, "0",
             unaudited == 0),
        ]  # fmt: skip
    chains = report.get("edge_chains", {})
    intact = report["valid"] and all(chains.get(f"site-{s.number}", {}).get("valid") for s in sites)
    rows.append(("audit verify with both edge chains", intact, "True", bool(intact)))
    return rows
