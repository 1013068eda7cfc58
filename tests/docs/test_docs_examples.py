"""Every example in the README and the documentation runs, so none can drift.

Each page runs in a fresh environment, as a newcomer would run it: a new home directory (the
embedded profile's data lands in ``~/.local/share/strongroom``), the example input files in the
working directory, the virtual environment's ``strongroom`` on ``PATH``, and, when the page says
so, a real ``strongroom serve``. Console commands run one after another in ``bash`` (what one
exports, the next sees); each must exit 0 and print what the page shows (see ``mdexamples``).
Python blocks run as scripts (top-level ``await`` allowed) with that environment.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import httpx
import pytest
from mdexamples import Block, Page, matches, parse_page

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLES = ROOT / "examples"
RUNNER = Path(__file__).with_name("run_python_block.py")
#: Variables of the machine running the tests that must not leak into a page's environment.
CLEARED = (
    "AZURE_KEY_VAULT_URL", "DATABASE_URL", "STRONGROOM_BACKEND", "STRONGROOM_HOME",
    "STRONGROOM_MASTER_KEY", "STRONGROOM_MASTER_KEY_FILE", "STRONGROOM_PG_SCHEMA",
    "STRONGROOM_AUDIT_DATABASE_URL", "STRONGROOM_EXPORT_PASSPHRASE", "LOG_LEVEL", "DEBUG",
    "STRONGROOM_ADDR", "STRONGROOM_TOKEN", "STRONGROOM_CACERT",
)  # fmt: skip
DOC_ACTOR = "ops@dispatch-01"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Session:
    """One page's machine: a home, a working directory, a shell state carried between
    commands, and maybe a server."""

    def __init__(self, tmp: Path, page: Page) -> None:
        self.page = page
        self.home = tmp / "home"
        self.work = tmp / "work"
        self.state = tmp / "state.sh"
        self.home.mkdir()
        self.ports = {8200: _free_port()}
        self.background: list[subprocess.Popen[bytes]] = []
        self.logs: list[TextIO] = []
        shutil.copytree(EXAMPLES, self.work)
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        env.update(
            HOME=str(self.home),
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
            COLUMNS="200",
            PORT=str(self.ports[8200]),
            PYTHONUNBUFFERED="1",
        )
        self.env = env
        self.state.write_text("")

    # -- running -----------------------------------------------------------------------------

    def _localize(self, text: str) -> str:
        """The page's ports (8200-8299) are free ports of this session; ``make`` runs in the
        project (the page's commands run in a copy of ``examples/``: the checkout stays clean)."""

        def port(match: re.Match[str]) -> str:
            documented = int(match.group(2))
            if documented not in self.ports:
                self.ports[documented] = _free_port()
            return f"{match.group(1)}{self.ports[documented]}"

        text = re.sub(r"(:|--port |PORT=)(82\d\d)\b", port, text)
        return re.sub(r"^make ", f"make --no-print-directory -C {ROOT} ", text, flags=re.M)

    def shell(self, script: str, *, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run ``script`` in bash with the state the commands before it left."""
        wrapped = (
            f"source {self.state}\nset -o pipefail\n{{\n{self._localize(script)}\n}}\n"
            f"rc=$?\nexport -p > {self.state}\nexit $rc\n"
        )
        return subprocess.run(
            ["bash", "-c", wrapped], cwd=self.work, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip

    def current_env(self) -> dict[str, str]:
        dump = subprocess.run(
            ["bash", "-c", f"source {self.state}; env -0"], env=self.env,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return dict(item.split("=", 1) for item in dump.stdout.split("\0") if "=" in item)

    def python(self, block: Block) -> subprocess.CompletedProcess[str]:
        script = self.work / f"example_{block.line}.py"
        script.write_text(self._localize(self.page.prelude + "\n" + block.code))
        return subprocess.run(
            [sys.executable, str(RUNNER), str(script)], cwd=self.work,
            env=self.current_env(), capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip

    def printed(self, text: str) -> str:
        """What a command printed, in the page's terms: the home directory as ``~`` and the
        acting OS user as the page's operator."""
        actor = f"{getpass.getuser()}@{socket.gethostname()}"
        return text.replace(str(self.home), "~").replace(actor, DOC_ACTOR)

    # -- a server started by the page -----------------------------------------------------------

    def start(self, block: Block) -> None:
        """Run the block's one command in the background; wait until it answers."""
        (command,) = block.commands()
        text = self._localize(command.text)
        log = (self.home / f"background-{block.line}.log").open("w")
        self.logs.append(log)
        self.background.append(
            subprocess.Popen(
                ["bash", "-c", f"source {self.state}\nexec {text}"], cwd=self.work,
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )  # fmt: skip
        tls = "--tls-cert" in text
        ca = self.home / ".local/share/strongroom/tls/ca.pem"
        served = re.search(r"--port (\d+)", text)
        port = served.group(1) if served else str(self.ports[8200])
        url = f"{'https' if tls else 'http'}://localhost:{port}/healthz"
        deadline = time.monotonic() + 60
        while True:
            proc = self.background[-1]
            assert proc.poll() is None, f"{block.where}: {text} exited\n{log.name}"
            try:
                verify = ssl.create_default_context(cafile=ca) if tls else True
                if httpx.get(url, verify=verify, timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{block.where}: {text} did not answer"
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        for log in self.logs:
            log.close()


def _run_block(session: Session, block: Block) -> None:
    if block.background:
        session.start(block)
        return
    if block.lang == "python":
        result = session.python(block)
        assert result.returncode == 0, f"{block.where}: the example failed\n{result.stderr}"
        return
    if block.lang in ("bash", "sh"):
        result = session.shell(block.code)
        assert result.returncode == 0, f"{block.where}: the script failed\n{result.stderr}"
        return
    for command in block.commands():
        result = session.shell(command.text)
        where = f"{block.path.name}:{command.line}: $ {command.text}"
        assert result.returncode == 0, f"{where}\nexited {result.returncode}\n{result.stdout}"
        if block.check_output:
            printed = session.printed(result.stdout)  # stdout and stderr, as a terminal shows
            missing = matches(command.expected, printed)
            assert missing is None, (
                f"{where}\nthe page shows this line, which the command did not print:\n"
                f"  {missing}\nit printed:\n{printed}"
            )


@pytest.mark.parametrize("path", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_example_of_the_page_runs(path: Path, tmp_path: Path) -> None:
    page = parse_page(path)
    session = Session(tmp_path, page)
    try:
        for block in page.blocks:
            if block.skip is None:
                _run_block(session, block)
    finally:
        session.stop()


def test_skipped_examples_are_few_and_say_why() -> None:
    skipped = [(b.where, b.skip) for p in PAGES for b in parse_page(p).blocks if b.skip]
    examples = sum(len(parse_page(p).blocks) for p in PAGES)
    assert all(reason for _, reason in skipped)
    assert len(skipped) <= max(3, examples // 10), skipped
