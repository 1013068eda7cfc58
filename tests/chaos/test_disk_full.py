"""The SQLite data directory runs out of space (a small tmpfs, filled to the last byte) while
the service runs.

Once the store has refused a write, every call fails closed: 503 with Retry-After, no value
served (a read whose READ cannot be recorded hands out nothing), no 500, nothing hangs. When
space returns the same process serves again, without a restart, and nothing acknowledged was
lost.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from conftest import Figures, size
from harness import Service, Tally, admin_token, fill, service_env, timed, tmpfs

SECRETS = 5
BIG = "x" * 20_000


async def test_a_full_disk_fails_closed_and_recovers_without_restart(
    tmp_path: Path, figures: Figures
) -> None:
    calls = size(40, 300)
    tally = Tally()
    with tmpfs(tmp_path / "volume", "6m") as volume:
        env = service_env("sqlite", volume / "home")
        token = await admin_token(env)
        service = Service(env, log_dir=tmp_path)
        acked: dict[str, str] = {}
        try:
            await service.start()
            async with httpx.AsyncClient(
                base_url=service.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as c:
                for i in range(SECRETS):
                    made = await c.post("/v1/secrets", json={"name": f"df-{i}", "value": "v0"})
                    assert made.status_code == 201, made.text
                    acked[f"df-{i}"] = "v0"
                filler = fill(volume)
                await until_refused(c, acked)
                served_while_full = await calls_while_full(c, calls, tally, acked)
                filler.unlink()
                recovered = await recovery(c, acked)
                lost = 0
                for name, value in acked.items():
                    read = await c.get(f"/v1/secrets/{name}")
                    lost += read.status_code != 200 or read.json()["value"] != value
                chain = (await c.post("/v1/audit/verify")).json()["valid"] is True
        finally:
            service.stop()
    log = service.log()
    scenario = "SQLite data directory full (tmpfs)"
    rows = [
        ("calls while full / answered 503", f"{tally.total} / {tally.count(503)}", "all 503",
         tally.count(503) == calls),
        ("values served or writes accepted while full", served_while_full, "0",
         served_while_full == 0),
        ("500 answers / hung", f"{tally.server_errors} / {tally.hung}", "0 / 0",
         tally.server_errors == tally.hung == 0),
        ("recovery after space returns, without restart (s)", recovered, "", True),
        ("acknowledged writes lost / chain verifies", f"{lost} / {chain}", "0 / True",
         lost == 0 and chain),
    ]  # fmt: skip
    for figure, value, target, ok in rows:
        figures.add(scenario, "sqlite", figure, value, target, ok)
    assert (tally.server_errors, tally.hung, tally.no_retry_after) == (0, 0, 0)
    assert tally.count(503) == calls, tally.statuses
    assert served_while_full == 0
    assert lost == 0
    assert chain
    assert "Traceback" not in log, log[-3000:]


async def calls_while_full(
    c: httpx.AsyncClient, calls: int, tally: Tally, acked: dict[str, str]
) -> int:
    """Reads, updates and creates while the disk is full; how many were served (none may be)."""
    served = 0
    for n in range(calls):
        name = f"df-{n % SECRETS}"
        if n % 3 == 0:
            call = c.put(f"/v1/secrets/{name}", json={"value": f"full-{n}"})
        elif n % 3 == 1:
            call = c.get(f"/v1/secrets/{name}")
        else:
            call = c.post("/v1/secrets", json={"name": f"new-{n}", "value": "v"})
        answer = await timed(tally, call)
        if answer is not None and answer.status_code < 300:
            served += 1
            if n % 3 == 0:
                acked[name] = f"full-{n}"
    return served


async def until_refused(c: httpx.AsyncClient, acked: dict[str, str]) -> None:
    """Large writes until the store refuses one: from then on the disk is really full."""
    for n in range(400):
        name = f"df-{n % SECRETS}"
        answer = await c.put(f"/v1/secrets/{name}", json={"value": f"{n}{BIG}"})
        if answer.status_code != 200:
            assert answer.status_code == 503, answer.text
            return
        acked[name] = f"{n}{BIG}"
    raise AssertionError("the store never ran out of space")


async def recovery(c: httpx.AsyncClient, acked: dict[str, str]) -> float:
    """Seconds until a write succeeds again (the same process: no restart)."""
    cut = time.monotonic()
    while time.monotonic() - cut < 30:
        answer = await c.put("/v1/secrets/df-0", json={"value": "after"})
        if answer.status_code == 200:
            acked["df-0"] = "after"
            return time.monotonic() - cut
    raise AssertionError("the store did not recover")
