"""The README's first command works as it says: `make run` serves the embedded store and
prints a first-token command that runs as printed, in another shell."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_make_run_serves_and_its_first_token_command_works(tmp_path: Path) -> None:
    port = _free_port()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PORT": str(port)}
    log_path = tmp_path / "make-run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "-C", str(ROOT), "run"], env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            printed = log_path.read_text()
            assert f"listening on http://127.0.0.1:{port}" in printed
            hint = next(line for line in printed.splitlines() if "token create admin" in line)
            # Another terminal: a plain shell, without the project's tools on PATH.
            made = subprocess.run(
                ["/bin/sh", "-c", hint.strip()], env={"PATH": "/usr/bin:/bin", "HOME": env["HOME"]},
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            me = httpx.get(
                f"http://127.0.0.1:{port}/v1/auth/self",
                headers={"Authorization": f"Bearer {made.stdout.strip()}"},
            )
            assert (me.status_code, me.json()["identity"]) == (200, "admin")
            assert (tmp_path / ".local/share/strongroom/strongroom.db").exists()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
