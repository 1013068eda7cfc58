"""``kill -9`` of ``strongroom serve`` under concurrent writes and reads, again and again.

Writers add versions and remember each one the server acknowledged (its id and value);
readers read and remember each value they were served, under a user agent of their own. Once
enough has been acknowledged the process is killed with SIGKILL, mid-stream, and started
again. At the end: every acknowledged version is there with its value (lost 0, corrupted 0),
every served read has its READ row in the audit trail, and the hash chain verifies.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Figures, size
from harness import Service, Tally, admin_token, drop_schema_of, run_until, service_env, timed
from harness import wait_for as wait_until

WRITERS, READERS, SECRETS = 4, 4, 4


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_kill_9_loses_nothing_acknowledged(
    backend: str, tmp_path: Path, figures: Figures, postgres_available: None
) -> None:
    kills = size(1, 5)
    env = service_env(backend, tmp_path / "home")
    token = await admin_token(env)
    headers = {"Authorization": f"Bearer {token}"}
    acked: dict[tuple[str, str], str] = {}  # (name, version) -> value
    served: list[tuple[str, str, str, str]] = []  # (user agent, name, version, value)
    tally = Tally()
    service = Service(env)
    try:
        await service.start()
        async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=10) as c:
            for i in range(SECRETS):
                made = await c.post("/v1/secrets", json={"name": f"k9-{i}", "value": "v0"})
                assert made.status_code == 201, made.text
                acked[(f"k9-{i}", made.json()["version"])] = "v0"
        for run in range(kills):
            if run:
                await service.start()
            await one_run(service, headers, run, acked, served, tally)
        await service.start()
        lost, corrupted, unaudited, chain = await verify(service, headers, acked, served)
    finally:
        service.stop()
        await drop_schema_of(env)
    log = service.log()
    figures.add("kill -9 under load", backend, "kills", kills, ">= 5 (make chaos)", True)
    figures.add("kill -9 under load", backend, "acknowledged writes / reads",
                f"{len(acked)} / {len(served)}", "", True)  # fmt: skip
    figures.add("kill -9 under load", backend, "acknowledged writes lost", lost, "0", lost == 0)
    figures.add("kill -9 under load", backend, "values corrupted", corrupted, "0", corrupted == 0)
    figures.add("kill -9 under load", backend, "acknowledged reads without an audit row",
                unaudited, "0", unaudited == 0)  # fmt: skip
    figures.add("kill -9 under load", backend, "audit chain verifies", chain, "True", chain)
    figures.add("kill -9 under load", backend, "500 answers", tally.server_errors, "0",
                tally.server_errors == 0)  # fmt: skip
    assert (lost, corrupted, unaudited, tally.server_errors) == (0, 0, 0, 0)
    assert chain, "the audit chain does not verify"
    assert "Traceback" not in log, log[-3000:]


async def one_run(
    service: Service,
    headers: dict[str, str],
    run: int,
    acked: dict[tuple[str, str], str],
    served: list[tuple[str, str, str, str]],
    tally: Tally,
) -> None:
    """Load until enough is acknowledged in this run, then kill -9 in the middle of it."""
    stop = asyncio.Event()
    before = len(acked)
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=WRITERS + READERS)
    async with httpx.AsyncClient(
        base_url=service.url, headers=headers, timeout=10, limits=limits
    ) as client:

        async def write() -> None:
            n = next(counter)
            name, value = f"k9-{n % SECRETS}", f"r{run}-n{n}-{secrets.token_hex(8)}"
            response = await timed(tally, client.put(f"/v1/secrets/{name}", json={"value": value}))
            if response is None:
                stop.set()  # the server is gone
                return
            if response.status_code == 200:
                acked[(name, response.json()["version"])] = value

        async def read() -> None:
            name = f"k9-{next(counter) % SECRETS}"
            agent = f"k9-read-{secrets.token_hex(8)}"
            call = client.get(f"/v1/secrets/{name}", headers={"User-Agent": agent})
            response = await timed(tally, call)
            if response is None:
                stop.set()
                return
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                served.append((agent, name, body["version"], body["value"]))

        loader = asyncio.create_task(run_until(stop, [write] * WRITERS + [read] * READERS))
        await wait_until(lambda: len(acked) - before >= size(40, 200), "acknowledged writes")
        service.kill9()  # mid-stream: requests are in flight
        stop.set()
        await asyncio.wait_for(loader, 30)


async def verify(
    service: Service,
    headers: dict[str, str],
    acked: dict[tuple[str, str], str],
    served: list[tuple[str, str, str, str]],
) -> tuple[int, int, int, bool]:
    """(lost, corrupted, reads without an audit row, chain valid) after the last restart."""
    lost = corrupted = 0
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=30) as c:
        for (name, version), value in acked.items():
            response = await c.get(f"/v1/secrets/{name}/versions/{version}")
            if response.status_code != 200:
                lost += 1
            elif response.json()["value"] != value:
                corrupted += 1
        for _agent, name, version, value in served:
            if (name, version) in acked and acked[(name, version)] != value:
                corrupted += 1
        agents: set[str] = set()
        offset = 0
        while True:
            page = await c.get("/v1/audit/events", params={
                "action": "READ", "result": "SUCCESS", "limit": 1000, "offset": offset,
            })  # fmt: skip
            assert page.status_code == 200, page.text
            rows = page.json()
            agents.update(r["actor_user_agent"] for r in rows)
            if len(rows) < 1000:
                break
            offset += 1000
        unaudited = sum(1 for agent, *_ in served if agent not in agents)
        check = await c.post("/v1/audit/verify")
        chain = check.status_code == 200 and check.json()["valid"] is True
    return lost, corrupted, unaudited, chain
