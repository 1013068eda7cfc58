"""``strongroom rotation worker`` against a real ``strongroom serve`` over HTTPS, workers in
subprocesses: two workers share 50 due rotations and one is killed with SIGKILL mid-run, yet
every secret is rotated exactly once and none is stranded; SIGTERM lets a worker finish the
rotation under way and give back the rest at once."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from clirun import base_env, make_cli
from servedproc import ServeProcess, serving

pytestmark = pytest.mark.slow

DEADLINE = 40.0


@dataclass
class Site:
    served: ServeProcess
    ca_path: Path
    admin: httpx.Client
    tokens: dict[str, str]
    root: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("rotation-worker")
    host = make_cli("sqlite", root / "server-home")
    host("init")
    host("policy", "set", "rotation-workers", "-g", "rotate:kw-*")
    admin_token = host("token", "create", "worker-admin", "--policy", "admin").stdout.strip()
    tokens = {
        who: host("token", "create", who, "--policy", "rotation-workers").stdout.strip()
        for who in ("worker-a", "worker-b", "worker-c")
    }
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path, ca_path = root / "cert.pem", root / "key.pem", root / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    ca.cert_pem.write_to_path(ca_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    args = ("--tls-cert", str(cert_path), "--tls-key", str(key_path))
    env = {**host.env, "STRONGROOM_RATE_LIMIT_PER_SECOND": "0"}
    with serving(env, *args, scheme="https", verify=context) as served:
        headers = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=served.base_url, verify=context, headers=headers) as admin:
            yield Site(served, ca_path, admin, tokens, root)


def ok(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    return response.json() if response.content else None


def make_due(site: Site, names: list[str]) -> None:
    """Each secret exists (version 1), its schedule is left to workers and due now."""
    for name in names:
        ok(site.admin.post("/v1/secrets", json={"name": name, "value": f"first-{name}"}))
        schedule = {"generator": "password", "worker": True, "grace_period_hours": 0}
        ok(site.admin.put(f"/v1/rotation/{name}", json=schedule))
        ok(site.admin.post(f"/v1/rotation/{name}/force"))


def remote_env(site: Site, who: str) -> tuple[dict[str, str], Path]:
    home = site.root / f"{who}-{time.monotonic_ns()}"
    home.mkdir()
    env = base_env(home)
    env.update(STRONGROOM_ADDR=site.served.base_url, STRONGROOM_CACERT=str(site.ca_path),
               STRONGROOM_TOKEN=site.tokens[who], XDG_CONFIG_HOME=str(home / "config"),
               PYTHONUNBUFFERED="1")  # fmt: skip
    return env, home


def start_worker(site: Site, who: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    env, home = remote_env(site, who)
    out = home / "out.jsonl"
    with out.open("wb") as sink, (home / "err.txt").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "strongroom.cli", "rotation", "worker", "--json", *args],
            env=env, stdout=sink, stderr=err, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return proc, out


def rotated_by(out: Path) -> list[str]:
    lines = out.read_text().splitlines() if out.exists() else []
    return [o["name"] for o in map(json.loads, lines) if o.get("rotated")]


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def statuses(site: Site, prefix: str) -> dict[str, dict[str, Any]]:
    found = ok(site.admin.get("/v1/rotation"))
    return {s["name"]: s for s in found if s["name"].startswith(prefix)}


def all_rotated(site: Site, names: list[str]) -> bool:
    found = statuses(site, names[0].rsplit("-", 1)[0])
    return all(found[n]["last_result"] == "SUCCESS" for n in names)


def rotate_events(site: Site, prefix: str) -> list[dict[str, Any]]:
    events = ok(site.admin.get("/v1/audit/events", params={"action": "ROTATE", "limit": 1000}))
    return [e for e in events if (e["resource_name"] or "").startswith(prefix)]


def assert_rotated_exactly_once(site: Site, names: list[str]) -> list[dict[str, Any]]:
    for name in names:
        assert len(ok(site.admin.get(f"/v1/secrets/{name}/versions"))) == 2, name
    events = rotate_events(site, names[0].rsplit("-", 1)[0])
    successes = Counter(e["resource_name"] for e in events if e["result"] == "SUCCESS")
    assert successes == dict.fromkeys(names, 1)
    return events


def test_two_workers_one_killed_every_secret_rotated_exactly_once(site: Site) -> None:
    names = [f"kw-kill-{i:02d}" for i in range(50)]
    make_due(site, names)
    # Each claims every due rotation it can (batch 50) and rotates them one at a time: the
    # first to claim holds them all, so killing it strands leases the other must reclaim.
    args = ("--name-glob", "kw-kill-*", "--concurrency", "1", "--batch", "50",
            "--lease-seconds", "3", "--wait-seconds", "1")  # fmt: skip
    workers = {who: start_worker(site, who, *args) for who in ("worker-a", "worker-b")}
    try:
        wait_until(lambda: any(rotated_by(out) for _, out in workers.values()), "a rotation")
        first = next(who for who, (_, out) in workers.items() if rotated_by(out))
        victim, victim_out = workers[first]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        wait_until(lambda: all_rotated(site, names), "every secret rotated")
        survivor = next(who for who in workers if who != first)
        survivor_proc, survivor_out = workers[survivor]
        survivor_proc.send_signal(signal.SIGTERM)
        assert survivor_proc.wait(15) == 0
    finally:
        for proc, _ in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    events = assert_rotated_exactly_once(site, names)
    by_actor = Counter(e["actor_id"] for e in events if e["result"] == "SUCCESS")
    # The victim rotated some before it died; the survivor took over what it had leased.
    assert by_actor[first] >= 1
    assert by_actor[survivor] >= 1
    assert by_actor[first] + by_actor[survivor] == len(names)
    assert not [n for n, s in statuses(site, "kw-kill-").items() if s["attempts"]]
    values = {ok(site.admin.get(f"/v1/secrets/{n}"))["value"] for n in names}
    printed = survivor_out.read_text() + victim_out.read_text()
    assert not [v for v in values if v in printed]  # versions only, never a value


def test_sigterm_finishes_the_rotation_under_way_and_releases_the_rest(site: Site) -> None:
    names = [f"kw-term-{i:02d}" for i in range(12)]
    make_due(site, names)
    # A long lease: only a release lets another worker take the rest before the deadline.
    args = ("--name-glob", "kw-term-*", "--concurrency", "1", "--batch", "12",
            "--lease-seconds", "600", "--wait-seconds", "1")  # fmt: skip
    proc, out = start_worker(site, "worker-a", *args)
    try:
        wait_until(lambda: rotated_by(out), "a rotation")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        done_before = set(rotated_by(out))
        assert len(done_before) < len(names)
        other, other_out = start_worker(site, "worker-c", *args)
        wait_until(lambda: all_rotated(site, names), "the released rotations")
        other.send_signal(signal.SIGTERM)
        assert other.wait(15) == 0
    finally:
        for p in (proc, locals().get("other")):
            if isinstance(p, subprocess.Popen) and p.poll() is None:
                p.kill()
                p.wait()
    assert set(rotated_by(other_out)) == set(names) - done_before
    assert_rotated_exactly_once(site, names)
    env, _ = remote_env(site, "worker-c")
    listed = subprocess.run(
        [sys.executable, "-m", "strongroom.cli", "rotation", "list"],
        env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "password (workers)" in listed.stdout  # who rotates it, at a glance
