"""Edge replicas (``python -m bench --only edge``): a real central ``strongroom serve`` over
HTTPS on loopback (a subprocess, embedded store) and an edge in this process following it.

- revocation propagation: a break-glass revocation at the centre (``POST /v1/revocations``,
  immediate) until a read at the edge is refused as revoked: goal p99 < 1 s (the issue's);
- replica lag: an update at the centre until the edge serves the new value (no goal yet; the
  issue asks for it under a steady write load, which this row does not apply).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_remote import _server
from bench.harness import Goal, ResultRow, summarize
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
        finally:
            await node.close()
    note = f"{count} secrets, one edge, loopback"
    return [
        ResultRow("edge", "revocation at centre -> refused at edge",
                  summarize("edge revocation", 1, revocation, sum(revocation)),
                  goal=REVOCATION_GOAL, note=note),
        ResultRow("edge", "update at centre -> new value at edge (lag)",
                  summarize("edge lag", 1, lag, sum(lag)), note=note),
    ]  # fmt: skip


async def run_edge(*, quick: bool = False) -> list[ResultRow]:
    """The edge's rows (a central server subprocess for the run)."""
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        home = Path(tmp)
        with _server(home / "central") as (addr, token, ca):
            return await _measure(
                addr, token, ca, home / "edge", CHANGES_QUICK if quick else CHANGES
            )
