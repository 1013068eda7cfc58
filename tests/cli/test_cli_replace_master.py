"""``strongroom key replace-master`` killed with SIGKILL at each of its steps: every crash leaves
a store that still opens with the old key or finishes with the new one at its next start, with
every secret readable and the audit chain valid; running the command again completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import Cli, make_cli

from strongroom import SecretsAudit, SecretsManager, Settings, Strongroom
from strongroom.core.crypto import MasterKey
from strongroom.core.unseal import UnsealProgress
from strongroom.db.seal_store import read_seal
from strongroom.services.custody.replace import PAUSE_VARIABLE


def _killed_at(cli: Cli, step: str, stdin: str | None = None) -> None:
    """Run the replacement until it reaches ``step``, then kill it with SIGKILL."""
    marker = cli.home / f"paused-{step}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli", "key", "replace-master"],
        env={**cli.env, PAUSE_VARIABLE: f"{step}:{marker}"},
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if proc.stdin is not None and stdin is not None:
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():  # waits on the condition; the deadline only ends a hang
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"never reached {step}"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _intact(cli: Cli, values: dict[str, str]) -> None:
    for name, value in values.items():
        assert cli("secret", "get", name).stdout.strip() == value
    assert "Audit chain intact" in cli("audit", "verify").stdout


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_replacement_killed_at_any_step_leaves_a_store_that_opens(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    schema = request.getfixturevalue("pg_schema") if store == "postgres" else None
    cli = make_cli(store, tmp_path, schema)
    cli("init")
    values = {"app-db": "db-pass-one", "radio-gw": "gw-pass-two"}
    for name, value in values.items():
        cli("secret", "create", name, "-", stdin=value)
    key_file = tmp_path / "master.key"
    keys = [key_file.read_text()]

    # Killed once the new key is written beside the old: the old key still opens the store;
    # status names the leftover file; running the command again starts over and finishes.
    _killed_at(cli, "key-written")
    assert key_file.read_text() == keys[0]
    _intact(cli, values)
    assert "master.key.new" in cli("status").stderr
    cli("key", "replace-master")
    keys.append(key_file.read_text())

    # Killed with the pending record stored: the old (current) key still opens the store;
    # status gives the next step, which resumes with the key already written.
    _killed_at(cli, "pending-stored")
    assert key_file.read_text() == keys[1]
    waiting = key_file.with_name("master.key.new").read_text()
    _intact(cli, values)
    assert "run `strongroom key replace-master` again" in cli("status").stderr
    assert cli("key", "replace-master", "--json").json()["resumed"] is True
    assert key_file.read_text() == waiting
    keys.append(waiting)

    # Killed with the new key in place: the next start finishes the replacement.
    _killed_at(cli, "key-in-place")
    keys.append(key_file.read_text())
    assert keys[3] != keys[2]
    _intact(cli, values)
    status = cli("status", "--json").json()
    assert status["master_key_replacement"] == {"epoch": 3, "pending": False, "next_step": None}
    assert "(replaced 3 times)" in cli("status").stdout

    for retired in keys[:3]:
        old = tmp_path / "retired.key"
        old.write_text(retired)
        old.chmod(0o600)
        refused = cli("secret", "get", "app-db", env={"STRONGROOM_MASTER_KEY_FILE": str(old)},
                      code=4)  # fmt: skip
        assert "[wrong_master_key]" in refused.stderr
    assert not cli.leaks(*(k.strip() for k in keys))


async def _opens_with(settings: Settings, shares: list[str]) -> str:
    """The value of ``app-db`` read with the master key ``shares`` make (the audit verified)."""
    record = await read_seal(settings)
    assert record is not None
    progress = UnsealProgress(record, timeout=60)
    keys = [progress.submit(share, 0.0) for share in shares]
    assert isinstance(keys[-1], MasterKey)
    async with await Strongroom.open(settings, master=keys[-1]) as app:
        assert (await SecretsAudit(app).verify_integrity())["valid"]
        return str(await SecretsManager(app).get_secret("app-db"))


@pytest.mark.slow
async def test_a_quorum_replacement_killed_after_printing_keeps_the_old_shares(
    tmp_path: Path,
) -> None:
    cli = make_cli("sqlite", tmp_path)
    cli.env["STRONGROOM_SEAL"] = "shamir"
    old = cli("operator", "init", "--key-shares", "3", "--key-threshold", "2", "--json").json()
    settings = Settings(STRONGROOM_BACKEND="sqlite", STRONGROOM_HOME=tmp_path,
                        STRONGROOM_SEAL="shamir")  # fmt: skip
    record = await read_seal(settings)
    assert record is not None
    progress = UnsealProgress(record, timeout=60)
    progress.submit(old["shares"][0], 0.0)
    master = progress.submit(old["shares"][1], 0.0)
    async with await Strongroom.open(settings, master=master) as app:
        await SecretsManager(app).create_secret("app-db", "quorum-kept")

    # Killed once the new shares are out, before they are in force: the old set still opens.
    _killed_at(cli, "shares-announced", stdin="\n".join(old["shares"][:2]) + "\n")
    assert await _opens_with(settings, old["shares"][1:]) == "quorum-kept"

    done = cli("key", "replace-master", "--json", stdin="\n".join(old["shares"][1:]) + "\n")
    new = done.json()["shares"]
    assert "in force" in done.stderr
    assert await _opens_with(settings, new[:2]) == "quorum-kept"
    refused = cli("key", "replace-master", stdin="\n".join(old["shares"][:2]) + "\n", code=None)
    assert refused.code != 0
    assert "[foreign_share]" in refused.stderr
    words = {w for share in old["shares"] + new for w in share.split()[4:]}
    assert not [w for w in words if f" {w} " in refused.stderr]
