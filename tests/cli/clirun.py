"""Helpers to run the real ``strongroom`` command in a subprocess, on the embedded default or
PostgreSQL (a module, not a conftest.py: a second conftest would shadow tests/conftest.py,
which other tests import as ``conftest``).

Every run's stdout and stderr are kept, so a test can search all of them for secret values at
the end (only ``secret get`` may print one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers_settings import PG_URL

#: Variables that choose a profile or a key; a CLI test sets exactly the ones it wants.
CONFIG_VARS = (
    "AZURE_KEY_VAULT_URL", "DATABASE_URL", "STRONGROOM_BACKEND", "STRONGROOM_HOME",
    "STRONGROOM_MASTER_KEY", "STRONGROOM_MASTER_KEY_FILE", "STRONGROOM_PG_SCHEMA",
    "STRONGROOM_AUDIT_DATABASE_URL", "STRONGROOM_EXPORT_PASSPHRASE", "LOG_LEVEL", "DEBUG",
)  # fmt: skip


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """The ``strongroom`` command with one profile's environment."""

    env: dict[str, str]
    home: Path
    store: str
    runs: list[Result] = field(default_factory=list)

    def __call__(
        self,
        *args: str,
        code: int | None = 0,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Result:
        """Run ``strongroom ARGS``; check the exit code unless ``code`` is None."""
        proc = subprocess.run(
            [sys.executable, "-m", "strongroom.cli", *args],
            input=stdin.encode() if stdin is not None else None,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            env={**self.env, **(env or {})},
            timeout=120,
            check=False,
        )
        result = Result(
            tuple(args),
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )
        self.runs.append(result)
        if code is not None:
            assert result.code == code, (
                f"strongroom {' '.join(args)} exited {result.code}, expected {code}\n"
                f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
            )
        return result

    def parallel(self, *calls: Callable[[], Result]) -> list[Result]:
        """Run independent commands side by side (start-up is the cost of a CLI test)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda call: call(), calls))

    def leaks(self, *values: str) -> list[tuple[tuple[str, ...], str]]:
        """Every run whose output holds one of ``values``, except the stdout of
        ``secret get`` and of a plaintext export (the two ways a value may come out)."""
        found = []
        for run in self.runs:
            pairs = set(zip(run.args, run.args[1:], strict=False))
            allowed_stdout = ("secret", "get") in pairs or "--plain" in run.args
            for value in values:
                if value in run.stderr or (value in run.stdout and not allowed_stdout):
                    found.append((run.args, value))
        return found


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env["STRONGROOM_HOME"] = str(home)
    return env


def make_cli(store: str, home: Path, schema: str | None = None) -> Cli:
    """The embedded default gets only STRONGROOM_HOME (``init`` makes its key file); the cluster
    profile gets DATABASE_URL and a schema of its own, and ``init`` makes the key file too."""
    env = base_env(home)
    if store == "postgres":
        assert schema is not None
        env["DATABASE_URL"] = PG_URL
        env["STRONGROOM_PG_SCHEMA"] = schema
    return Cli(env=env, home=home, store=store)


def client_cli(served: Any, ca_path: Path, home: Path) -> Cli:
    """A consumer's machine for ``served`` (a servedproc.ServeProcess): an empty home, the
    address, the CA bundle; nothing else."""
    home.mkdir(parents=True)
    env = base_env(home)
    env.update(
        STRONGROOM_ADDR=served.base_url,
        STRONGROOM_CACERT=str(ca_path),
        XDG_CONFIG_HOME=str(home / "config"),
    )
    env.pop("STRONGROOM_TOKEN", None)
    env.pop("STRONGROOM_CREDENTIALS", None)
    return Cli(env=env, home=home, store="remote")
