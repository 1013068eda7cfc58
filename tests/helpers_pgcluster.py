"""A private PostgreSQL cluster for tests that must change how the server authenticates (the
role rotator logs in with passwords), so the machine's own server is never reconfigured and no
role is left behind on it.

``initdb`` and ``pg_ctl`` from the newest installed PostgreSQL, run as the ``postgres`` OS user
when the tests run as root (PostgreSQL refuses to run as root), on a free port, in a temporary
directory removed afterwards. ``postgres`` logs in from 127.0.0.1 without a password; every
other role must give its password (SCRAM-SHA-256).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PrivateCluster", "private_cluster"]

_HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@dataclass(frozen=True)
class PrivateCluster:
    host: str
    port: int
    database: str

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{self.database}"


def _bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("initdb is not installed: these tests start a PostgreSQL of their own")
    return Path(initdb).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(args: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *args] if owner else args


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A running cluster for the block; stopped and deleted afterwards, whatever happens."""
    bindir = _bindir()
    owner = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="strongroom-pg-"))
    base.chmod(0o755)  # the postgres user must reach its data directory
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    if owner:
        user = pwd.getpwnam(owner)
        os.chown(base, user.pw_uid, user.pw_gid)
        os.chown(sockets, user.pw_uid, user.pw_gid)
    port = _free_port()
    started = False
    try:
        subprocess.run(
            _as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                       "--auth=trust", "--no-sync"], owner),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        (data / "pg_hba.conf").write_text(_HBA)
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                       "-l", str(base / "server.log"), "start"], owner),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        started = True
        yield PrivateCluster("127.0.0.1", port, "postgres")
    finally:
        if started:
            subprocess.run(
                _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                          owner),
                check=False, capture_output=True, timeout=120,
            )  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
