"""``strongroom run``: secrets as a child's environment (never its command line), signals
forwarded, its exit code returned, and ``--watch`` restarting it when a secret changes; against
a real ``strongroom serve`` over HTTPS (and once on the local embedded store)."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from clirun import Cli, base_env, make_cli
from servedproc import ServeProcess, serving

PASSWORD = "run-canary-pw-9f3"
#: The child: writes $DB_PASSWORD (and $USER_NAME) to the file named in argv[1], then waits.
CHILD = (
    "import os, pathlib, signal, sys, time\n"
    "out = pathlib.Path(sys.argv[1])\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(int(os.environ.get('ON_TERM', '143'))))\n"
    "out.write_text(os.environ.get('DB_PASSWORD', '') + '|' + os.environ.get('USER_NAME', '')"
    " + '|' + ' '.join(sys.argv))\n"
    "time.sleep(float(sys.argv[2]))\n"
    "sys.exit(int(sys.argv[3]))\n"
)


Server = tuple[Cli, ServeProcess, Path, str]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cli, ServeProcess, Path, str]]:
    root = tmp_path_factory.mktemp("run-cli")
    host_cli = make_cli("sqlite", root / "server-home")
    host_cli("init")
    token = host_cli("token", "create", "runner", "--policy", "admin").stdout.strip()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path, ca_path = root / "cert.pem", root / "key.pem", root / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    ca.cert_pem.write_to_path(ca_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    args = ("--tls-cert", str(cert_path), "--tls-key", str(key_path))
    with serving(host_cli.env, *args, scheme="https", verify=context) as served:
        yield host_cli, served, ca_path, token


def remote_env(served: ServeProcess, ca_path: Path, token: str, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = base_env(home)
    env.update(STRONGROOM_ADDR=served.base_url, STRONGROOM_CACERT=str(ca_path),
               STRONGROOM_TOKEN=token, XDG_CONFIG_HOME=str(home / "config"))  # fmt: skip
    return env


def strongroom(*args: str) -> list[str]:
    return [sys.executable, "-m", "strongroom.cli", *args]


def wait_for(path: Path, predicate: object = bool, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()) and predicate(text):  # type: ignore[operator]
            return text
        time.sleep(0.05)
    raise AssertionError(f"{path} never showed what was expected")


def test_values_go_into_the_environment_and_the_exit_code_comes_back(
    server: Server, tmp_path: Path
) -> None:
    host_cli, served, ca_path, token = server
    env = remote_env(served, ca_path, token, tmp_path / "client")
    cli = Cli(env=env, home=tmp_path / "client", store="remote")
    cli("secret", "create", "run-db", "--value", f'{{"user":"fleet","password":"{PASSWORD}"}}',
        "--content-type", "application/json")  # fmt: skip
    cli("secret", "create", "runp-user-name", "--value", "dispatcher")
    out = tmp_path / "child.txt"
    done = cli("run", "--env", "DB_PASSWORD=run-db#password", "--prefix", "runp-", "--",
               sys.executable, "-c", CHILD, str(out), "0", "7", code=7)  # fmt: skip
    password, user, argv = out.read_text().split("|")
    assert (password, user) == (PASSWORD, "dispatcher")
    assert PASSWORD not in argv  # never on the child's command line
    assert PASSWORD not in done.stdout + done.stderr
    missing = cli("run", "--env", "X=run-db#nothing", "--", sys.executable, "-c", "pass", code=3)
    assert "nothing" in missing.stderr

    local = host_cli("run", "--env", "DB_PASSWORD=run-db#password", "--",
                     sys.executable, "-c", CHILD, str(out), "0", "0")  # fmt: skip
    assert out.read_text().startswith(PASSWORD + "|")
    assert PASSWORD not in local.stdout + local.stderr


def test_signals_reach_the_child_and_its_exit_code_is_returned(
    server: Server, tmp_path: Path
) -> None:
    _, served, ca_path, token = server
    env = remote_env(served, ca_path, token, tmp_path / "client")
    subprocess.run(strongroom("secret", "create", "sig-db", "--value", PASSWORD),
                   env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
    out = tmp_path / "child.txt"
    proc = subprocess.Popen(
        strongroom("run", "--env", "DB_PASSWORD=sig-db", "--", sys.executable, "-c", CHILD,
                   str(out), "60", "0"),
        env={**env, "ON_TERM": "3"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(out)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.slow
def test_watch_restarts_the_child_with_the_new_value(server: Server, tmp_path: Path) -> None:
    _, served, ca_path, token = server
    env = remote_env(served, ca_path, token, tmp_path / "client")
    subprocess.run(strongroom("secret", "create", "watch-db", "--value", "before-rotation"),
                   env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
    out = tmp_path / "child.txt"
    proc = subprocess.Popen(
        strongroom("run", "--watch", "--env", "DB_PASSWORD=watch-db", "--", sys.executable, "-c",
                   CHILD, str(out), "120", "0"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert wait_for(out).startswith("before-rotation|")
        trust = ssl.create_default_context(cafile=str(ca_path))
        with httpx.Client(base_url=served.base_url, verify=trust,
                          headers={"Authorization": f"Bearer {token}"}) as admin:  # fmt: skip
            answer = admin.put("/v1/secrets/watch-db", json={"value": "after-rotation"})
            assert answer.status_code == 200, answer.text
        wait_for(out, lambda text: text.startswith("after-rotation|"))
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 143  # the child's own answer to SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()
    assert b"after-rotation" not in stderr
