"""The azure store against a Key Vault-compatible endpoint, with the read-through cache off and
on (``python -m bench --only azure``; also the last section of a full run).

The vault is a real ``strongroom serve`` process over HTTPS (test CA from trustme, SQLite
behind it, rate limit off). This process reads 100 secrets 10,000 times through the official
SDK, once with ``STRONGROOM_CACHE_TTL_SECONDS=0`` and once with the cache on, and counts the
vault's own READ operations (its /metrics) to say how many HTTP calls the cache saved.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trustme

from bench.harness import Measurement, fmt_ms, fmt_rate, percentile, render_table
from strongroom import SecretsManager, Settings, Strongroom

__all__ = ["main", "run_azure"]

SECRETS, READS, TASKS = 100, 10_000, 16
_READS = re.compile(r'strongroom_operations_total\{action="READ",result="SUCCESS"\} ([0-9.e+]+)')


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _vault_reads(url: str, token: str, ca: Path) -> int:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"},
                     verify=str(ca)).text  # fmt: skip
    found = _READS.search(text)
    return int(float(found.group(1))) if found else 0


async def _reads(settings: Settings, reads: int) -> tuple[Measurement, float, float]:
    """``reads`` get_secret calls over 100 secrets from 16 tasks: throughput and latencies."""
    async with await Strongroom.open(settings) as app:
        manager = SecretsManager(app)
        latencies: list[int] = []
        counter = iter(range(reads))

        async def worker() -> None:
            for index in counter:
                started = time.perf_counter_ns()
                await manager.get_secret(f"bench-{index % SECRETS}")
                latencies.append(time.perf_counter_ns() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(TASKS)))
        seconds = time.perf_counter() - started
        hits = app.metrics.value("cache_hits_total")
    latencies.sort()
    return (
        Measurement(
            label="get_secret", concurrency=TASKS, ops=reads, seconds=seconds,
            ops_per_s=reads / seconds, p50_ms=percentile(latencies, 50) / 1e6,
            p99_ms=percentile(latencies, 99) / 1e6, max_ms=latencies[-1] / 1e6,
        ),
        hits,
        seconds,
    )  # fmt: skip


def run_azure(quick: bool = False) -> str:
    reads = 2_000 if quick else READS
    with tempfile.TemporaryDirectory(prefix="bench-azure-") as tmp:
        folder = Path(tmp)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
        cert.private_key_pem.write_to_path(folder / "key.pem")
        ca.cert_pem.write_to_path(folder / "ca.pem")
        keep = ("PATH", "HOME", "LANG", "LC_ALL")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(STRONGROOM_HOME=str(folder / "vault"), LOG_LEVEL="WARNING",
                   STRONGROOM_RATE_LIMIT_PER_SECOND="0")  # fmt: skip
        cli = [sys.executable, "-m", "strongroom.cli"]
        token = subprocess.run(
            [*cli, "token", "create", "bench", "--policy", "admin"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        port = _free_port()
        server = subprocess.Popen(
            [*cli, "serve", "--port", str(port), "--tls-cert", str(folder / "cert.pem"),
             "--tls-key", str(folder / "key.pem")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"https://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz", verify=str(folder / "ca.pem")).is_success:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            base = {
                "AZURE_KEY_VAULT_URL": url, "STRONGROOM_AZURE_STATIC_TOKEN": token,
                "STRONGROOM_AZURE_CA_BUNDLE": str(folder / "ca.pem"),
                "STRONGROOM_AZURE_VERIFY_CHALLENGE_RESOURCE": False,
                "STRONGROOM_HOME": str(folder / "client"), "LOG_LEVEL": "WARNING",
            }  # fmt: skip
            setup = Settings(**base, STRONGROOM_CACHE_TTL_SECONDS=0)  # type: ignore[arg-type]
            asyncio.run(_create(setup))
            rows = []
            for label, ttl in (("cache off", 0.0), ("cache on (TTL 300 s)", 300.0)):
                settings = Settings(**base, STRONGROOM_CACHE_TTL_SECONDS=ttl)  # type: ignore[arg-type]
                before = _vault_reads(url, token, folder / "ca.pem")
                measured, hits, _ = asyncio.run(_reads(settings, reads))
                calls = _vault_reads(url, token, folder / "ca.pem") - before
                rows.append((label, measured, calls, hits))
        finally:
            server.terminate()
            server.wait(30)
    off, on = rows[0][1], rows[1][1]
    table = render_table(
        ["azure store, 100 secrets", "reads", "tasks", "reads/s", "p50 ms", "p99 ms",
         "vault READ calls", "cache hits"],
        [[label, f"{m.ops:,}", str(m.concurrency), fmt_rate(m.ops_per_s), fmt_ms(m.p50_ms),
          fmt_ms(m.p99_ms), f"{calls:,}", f"{int(hits):,}"] for label, m, calls, hits in rows],
        "lrrrrrrr",
    )  # fmt: skip
    saved = rows[0][2] - rows[1][2]
    return (
        f"{table}\nazure: the cache saved {saved:,} of {rows[0][2]:,} HTTP reads "
        f"({saved / max(rows[0][2], 1):.1%}); cached reads ran {on.ops_per_s / off.ops_per_s:.1f}x "
        "as fast. Vault: `strongroom serve` over HTTPS (its own process, SQLite); client: the "
        "official async SDK, 16 tasks in this process; every read audited by both sides."
    )


async def _create(settings: Settings) -> None:
    async with await Strongroom.open(settings) as app:
        manager = SecretsManager(app)
        for index in range(SECRETS):
            await manager.create_secret(f"bench-{index}", f"value-{index}")


def main() -> int:
    print(run_azure(quick="--quick" in sys.argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
