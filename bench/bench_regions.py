"""Azure Key Vault in several regions, under load, with vaults killed and restarted
(``python -m bench --only regions``).

Three vaults are real ``strongroom serve`` processes over HTTPS (one test CA, SQLite behind
each). This process opens the azure profile over them (primary + two secondaries) and runs 8
reader tasks and one writer task against 100 secrets. Mid-run it kills the second secondary
(SIGKILL), then the primary; it starts both again where they were, stops the load, waits for
the secondaries to catch up, and checks every acknowledged write on every vault. Reported:
failover time (primary killed to the next successful read), reads refused meanwhile, writes
refused while the primary was down, writes lost (must be 0), catch-up time, and drift before
and after ``reconcile`` (after: must be 0).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trustme

from bench.harness import render_table
from strongroom import SecretsManager, Settings, Strongroom
from strongroom.backends.azure import AzureKeyVaultStore
from strongroom.backends.azure_regions import RegionalVaults, SecondaryVault
from strongroom.backends.azure_sdk import StaticTokenCredential
from strongroom.core.errors import StrongroomError
from strongroom.db.replication_outbox import SqliteReplicationOutbox
from strongroom.db.sqlite_db import SqliteDatabase

__all__ = ["run_regions"]

SECRETS, READERS = 100, 8
_CLI = [sys.executable, "-m", "strongroom.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Vault:
    home: Path
    folder: Path
    port: int = field(default_factory=_free_port)
    token: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
        return {**keep, "STRONGROOM_HOME": str(self.home), "LOG_LEVEL": "WARNING",
                "STRONGROOM_RATE_LIMIT_PER_SECOND": "0"}  # fmt: skip

    def start(self) -> None:
        if not self.token:
            self.token = subprocess.run(
                [*_CLI, "token", "create", "bench", "--policy", "admin"],
                env=self.env(), capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
        self.process = subprocess.Popen(
            [*_CLI, "serve", "--port", str(self.port), "--tls-cert", str(self.folder / "cert.pem"),
             "--tls-key", str(self.folder / "key.pem")],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/healthz", verify=str(self.folder / "ca.pem")).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("a vault did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
            self.process = None


@dataclass
class _Load:
    acknowledged: dict[str, str] = field(default_factory=dict)
    reads_ok: list[float] = field(default_factory=list)
    reads_failed: list[float] = field(default_factory=list)
    writes_refused: int = 0
    running: bool = True


def _store(vaults: list[_Vault], folder: Path, home: Path) -> RegionalVaults:
    options: dict[str, Any] = {"verify_challenge_resource": False, "retry_total": 0,
                               "connection_timeout": 5, "read_timeout": 5}  # fmt: skip
    ca = folder / "ca.pem"
    primary = AzureKeyVaultStore(vaults[0].url, StaticTokenCredential(vaults[0].token),
                                 client_options=options, ca_bundle=ca)  # fmt: skip
    secondaries = [SecondaryVault(v.url, StaticTokenCredential(v.token), client_options=options,
                                  ca_bundle=ca) for v in vaults[1:]]  # fmt: skip
    outbox = SqliteReplicationOutbox(SqliteDatabase(home / "strongroom.db"))
    return RegionalVaults(primary, secondaries, outbox, cooldown_seconds=2.0)


async def _reader(manager: SecretsManager, load: _Load) -> None:
    while load.running:
        name = f"unit-{random.randrange(SECRETS):03d}"
        try:
            await manager.get_secret(name)
            load.reads_ok.append(time.monotonic())
        except StrongroomError:
            load.reads_failed.append(time.monotonic())


async def _writer(manager: SecretsManager, load: _Load) -> None:
    serial = 0
    while load.running:
        serial += 1
        name, value = f"unit-{serial % SECRETS:03d}", f"value-{serial}"
        try:
            await manager.update_secret(name, value)
            load.acknowledged[name] = value
        except StrongroomError:
            load.writes_refused += 1
            await asyncio.sleep(0.05)


async def _scenario(vaults: list[_Vault], folder: Path, seconds: float) -> list[list[str]]:
    home = folder / "client"
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    settings = Settings(  # type: ignore[call-arg]
        STRONGROOM_HOME=home, AZURE_KEY_VAULT_URL=vaults[0].url, LOG_LEVEL="ERROR",
        STRONGROOM_MASTER_KEY=master,
    ).model_copy(update={"database_url": None})  # state and outbox in SQLite  # fmt: skip
    store = _store(vaults, folder, home)
    async with await Strongroom.open(settings, store=store) as app:
        manager = SecretsManager(app)
        for i in range(SECRETS):
            await manager.create_secret(f"unit-{i:03d}", f"value-0-{i}")
        load = _Load()
        tasks = [asyncio.create_task(_reader(manager, load)) for _ in range(READERS)]
        tasks.append(asyncio.create_task(_writer(manager, load)))
        step = seconds / 5
        await asyncio.sleep(step)
        await asyncio.to_thread(vaults[2].kill)
        await asyncio.sleep(step)
        killed = time.monotonic()
        await asyncio.to_thread(vaults[0].kill)
        await asyncio.sleep(step)
        await asyncio.to_thread(vaults[0].start)
        await asyncio.to_thread(vaults[2].start)
        await asyncio.sleep(step)
        load.running = False
        await asyncio.gather(*tasks)
        started = time.monotonic()
        while any(h.backlog for h in await store.health()):
            if time.monotonic() - started > 120:
                raise RuntimeError("the secondaries did not catch up in 120 s")
            await asyncio.sleep(0.05)
        caught_up = time.monotonic() - started
        lost = [0, 0, 0]
        for name, value in load.acknowledged.items():
            for index, vault in enumerate(store.vaults):
                bundle = await vault.get_version(name)
                lost[index] += bundle.value.reveal_bytes() != value.encode()
        drift_before = len(await store.reconcile(repair=False))
        await store.reconcile()
        drift_after = len(await store.reconcile(repair=False))
    after = [t for t in load.reads_ok if t >= killed]
    failover_ms = (after[0] - killed) * 1000 if after else float("nan")
    refused = sum(1 for t in load.reads_failed if t >= killed)
    return [
        ["reads served", f"{len(load.reads_ok):,}", f"{READERS} tasks, uncached"],
        ["failover: primary killed to next read served", f"{failover_ms:.0f} ms", ""],
        ["reads refused (whole run)", f"{len(load.reads_failed):,}",
         f"{refused:,} after the primary was killed"],
        ["writes acknowledged (names)", f"{len(load.acknowledged):,}", "last value per name"],
        ["writes refused while the primary was down", f"{load.writes_refused:,}", "by design"],
        ["writes lost: primary / secondary 1 / secondary 2", " / ".join(map(str, lost)),
         "PASS" if not any(lost) else "FAIL"],
        ["secondaries caught up after the restart", f"{caught_up:.1f} s", ""],
        ["drift found / after reconcile", f"{drift_before} / {drift_after}",
         "PASS" if drift_after == 0 else "FAIL"],
    ]  # fmt: skip


def run_regions(quick: bool = False) -> str:
    seconds = 10.0 if quick else 25.0
    with tempfile.TemporaryDirectory(prefix="bench-regions-") as tmp:
        folder = Path(tmp)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
        cert.private_key_pem.write_to_path(folder / "key.pem")
        ca.cert_pem.write_to_path(folder / "ca.pem")
        vaults = [_Vault(folder / f"vault-{i}", folder) for i in range(3)]
        try:
            for vault in vaults:
                vault.start()
            rows = asyncio.run(_scenario(vaults, folder, seconds))
        finally:
            for vault in vaults:
                vault.kill()
    table = render_table(["three vaults, one primary", "value", "note"], rows, "lrl")
    return (
        f"{table}\nregions: vaults are `strongroom serve` processes over HTTPS (SQLite), killed "
        f"with SIGKILL and started again; {seconds:.0f} s of load through the official SDK, "
        "state and outbox in SQLite."
    )
