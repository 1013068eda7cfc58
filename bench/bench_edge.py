"""Edge replicas (``python -m bench --only edge``): a real central ``strongroom serve`` over
HTTPS on loopback (a subprocess, embedded store) and an edge in this process following it.

- revocation propagation: a break-glass revocation at the centre (``POST /v1/revocations``,
  immediate) until a read at the edge is refused as revoked: goal p99 < 1 s (the issue's);
- replica lag: an update at the centre until the edge serves the new value (no goal yet; the
  issue asks for it under a steady write load, which this row does not apply: see
  tests/chaos/test_edge_netcut.py);
- journal shipping: a backlog of reads recorded at the edge while its shipper is stopped (as
  when cut off), then shipped to the centre: events per second, each round one ask for the
  head and batches of up to 500 events.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_remote import _server
from bench.harness import Goal, Measurement, ResultRow, summarize
from strongroom import SecretRevokedError, SecretsManager
from strongroom.core.config import Settings
from strongroom.edge import EdgeNode

__all__ = ["run_edge"]

REVOCATION_GOAL = Goal("p99<1s", max_p99_ms=1000.0)
CHANGES, CHANGES_QUICK = 100, 20
_POLL = 0.0005


async def _until_refused(edge: SecretsManager, name: str) -> None:
    for _ in range(200_000):  # a bound of 100 s, never reached
        try:
            await edge.get_secret(name)
        except SecretRevokedError:
            return
        await asyncio.sleep(_POLL)
    raise RuntimeError(f"{name} was never refused at the edge")


async def _until_value(edge: SecretsManager, name: str, value: str) -> None:
    for _ in range(200_000):
        try:
            if await edge.get_secret(name) == value:
                return
        except LookupError:
            pass
        await asyncio.sleep(_POLL)
    raise RuntimeError(f"{name} never reached the edge")


async def _measure(addr: str, token: str, ca: Path, home: Path, count: int) -> list[ResultRow]:
    settings = Settings(STRONGROOM_HOME=home, LOG_LEVEL="ERROR")  # type: ignore[call-arg]
    async with httpx.AsyncClient(
        base_url=addr, verify=str(ca), headers={"Authorization": f"Bearer {token}"}
    ) as central:
        for k in range(count):
            created = await central.post(
                "/v1/secrets", json={"name": f"bench-edge-{k}", "value": "v0"}
            )
            created.raise_for_status()
        node = await EdgeNode.open(
            settings, upstream=addr, scopes=["bench-edge-*"], token=token, cacert=ca
        )
        try:
            node.start()
            await asyncio.wait_for(node.sync.online.wait(), 60)
            edge = SecretsManager(node.wiring)
            lag: list[int] = []
            for k in range(count):
                started = time.monotonic_ns()
                answer = await central.put(f"/v1/secrets/bench-edge-{k}", json={"value": "v1"})
                answer.raise_for_status()
                await _until_value(edge, f"bench-edge-{k}", "v1")
                lag.append(time.monotonic_ns() - started)
            revocation: list[int] = []
            for k in range(count):
                started = time.monotonic_ns()
                answer = await central.post(
                    "/v1/revocations",
                    json={"secret_name": f"bench-edge-{k}", "reason": "key_compromise",
                          "immediate": True},
                )  # fmt: skip
                answer.raise_for_status()
                await _until_refused(edge, f"bench-edge-{k}")
                revocation.append(time.monotonic_ns() - started)
            shipping = await _ship_backlog(node, count * 20)
        finally:
            await node.close()
    note = f"{count} secrets, one edge, loopback"
    return [
        ResultRow("edge", "revocation at centre -> refused at edge",
                  summarize("edge revocation", 1, revocation, sum(revocation)),
                  goal=REVOCATION_GOAL, note=note),
        ResultRow("edge", "update at centre -> new value at edge (lag)",
                  summarize("edge lag", 1, lag, sum(lag)), note=note),
        ResultRow("edge", "journal backlog shipped to the centre (mean per event)", shipping,
                  note=f"{shipping.ops} events recorded while not shipping, then one round"),
    ]  # fmt: skip


async def _ship_backlog(node: EdgeNode, reads: int) -> Measurement:
    """Reads at the edge with the shipper stopped, then the whole backlog in one round."""
    await node.journal.stop()
    await node.journal.ship()  # what was pending before: not part of the backlog
    edge = SecretsManager(node.wiring)
    for k in range(reads):
        with contextlib.suppress(SecretRevokedError):
            await edge.get_secret(f"bench-edge-{k % CHANGES_QUICK}")
    await node.journal.refresh()
    backlog = node.journal.unshipped
    started = time.monotonic_ns()
    shipped = await node.journal.ship()
    elapsed = time.monotonic_ns() - started
    if shipped != backlog:
        raise RuntimeError(f"shipped {shipped} of a backlog of {backlog}")
    return summarize("edge journal", 1, [elapsed // max(1, shipped)] * shipped, elapsed)


async def run_edge(*, quick: bool = False) -> list[ResultRow]:
    """The edge's rows (a central server subprocess for the run)."""
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        home = Path(tmp)
        with _server(home / "central") as (addr, token, ca):
            return await _measure(
                addr, token, ca, home / "edge", CHANGES_QUICK if quick else CHANGES
            )
