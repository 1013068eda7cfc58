"""``strongroom secret get`` without typer: the same answers, exit codes and audit rows, and
none of the libraries a read does not need (so its start-up stays short without a timer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from strongroom.cli import hotpath
from strongroom.cli.main import main

#: Libraries a local `secret get` must never import: typer and pydantic (typer builds a
#: pydantic validator per option), the server stack, the console's templates, report
#: rendering, Azure, PostgreSQL's driver on SQLite, HTTP clients, rich, and structlog (only
#: imported when a line is logged).
NOT_FOR_A_READ = {
    "typer", "click", "pydantic", "pydantic_core", "pydantic_settings", "fastapi",
    "starlette", "uvicorn", "jinja2", "weasyprint", "reportlab", "azure", "asyncpg", "httpx",
    "aiohttp", "jwt", "rich", "structlog",
}  # fmt: skip
_PROFILE_VARS = ("STRONGROOM_", "DATABASE_URL", "AZURE_", "LOG_LEVEL", "DEBUG")

_LOADED = (
    "import sys\n"
    "sys.argv = ['strongroom', *sys.argv[1:]]\n"
    "from strongroom.cli import main\n"
    "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
    "print()\nprint('exit', code)\n"
    "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROFILE_VARS)}
    return {**env, "STRONGROOM_HOME": str(home), **extra}


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def _loaded(env: dict[str, str], *args: str) -> tuple[list[str], set[str]]:
    """The output lines of ``strongroom ARGS`` run through main(), and the top-level
    packages the process imported."""
    run = subprocess.run(
        [sys.executable, "-c", _LOADED, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = run.stdout.splitlines()
    return lines[:-1], set(lines[-1].split())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """An embedded store with a text secret and a JSON one; the text one's version id."""
    home = tmp_path_factory.mktemp("hotpath")
    env = _env(home)
    _cli(env, "init", "-q")
    created = json.loads(_cli(env, "secret", "create", "plain", "-", "--json", stdin="v1"))
    _cli(env, "secret", "update", "plain", "-", stdin="v2")
    _cli(env, "secret", "create", "obj", "-", "--content-type", "application/json",
         stdin='{"user": "fleet"}')  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for key in os.environ:
            if key.startswith(_PROFILE_VARS):
                patch.delenv(key)
        patch.setenv("STRONGROOM_HOME", str(home))
        yield home, created["version"]


def test_a_local_secret_get_reads_audits_and_loads_no_library_it_does_not_need(
    store: tuple[Path, str],
) -> None:
    home, _ = store
    env = _env(home)
    lines, loaded = _loaded(env, "--as", "hotpath-check", "secret", "get", "plain")
    assert lines[-2:] == ["v2", "exit 0"]
    assert not loaded & NOT_FOR_A_READ, sorted(loaded & NOT_FOR_A_READ)
    # The read was audited before the value was printed, as the claimed name with the OS user.
    [event] = json.loads(_cli(env, "audit", "trail", "-n", "1", "--json"))
    assert (event["action"], event["resource_name"], event["result"]) == (
        "READ",
        "plain",
        "SUCCESS",
    )
    assert event["actor_id"] == "hotpath-check"
    assert "(os-user " in event["actor_user_agent"]


def test_a_remote_secret_get_loads_no_typer_and_no_server_stack(tmp_path: Path) -> None:
    # Nothing listens on the discard port: the read fails as unreachable (exit 1), after the
    # same start-up a successful read has.
    env = _env(tmp_path, STRONGROOM_ADDR="https://127.0.0.1:9", STRONGROOM_TOKEN="t",
               STRONGROOM_REMOTE_RETRIES="0")  # fmt: skip
    lines, loaded = _loaded(env, "secret", "get", "plain")
    assert lines[-1] == "exit 1"
    unexpected = loaded & (NOT_FOR_A_READ - {"aiohttp"})  # aiohttp: the remote client
    assert not unexpected, sorted(unexpected)


#: Command lines the hot path takes, each with what it must print (``{version}``: the first
#: version of ``plain``).
AGREE = [
    ["secret", "get", "plain"],
    ["--json", "secret", "get", "plain"],
    ["secret", "get", "plain", "--json"],
    ["-q", "secret", "get", "--version", "{version}", "plain"],
    ["--quiet", "--as", "ops-bot", "secret", "get", "plain"],
    ["--as=ops-bot", "secret", "get", "--version={version}", "plain", "--json"],
    ["secret", "get", "obj", "--field", "user"],
    ["secret", "get", "--field=user", "obj", "--json"],
    ["secret", "get", "obj", "--field", "nope"],
    ["secret", "get", "plain", "--field", "user"],
    ["secret", "get", "missing"],
    ["--json", "secret", "get", "missing"],
    ["secret", "get", "bad_name!"],
    ["secret", "get", "plain", "--version", "0000"],
    ["--as=", "secret", "get", "plain"],
]


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """main() configures logging for the process (as a command does); later tests of this
    process get structlog back as it was."""
    configured, saved = structlog.is_configured(), structlog.get_config()
    yield
    if configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


def _run_main(
    argv: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> tuple[object, bytes, bytes]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsysbinary.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("argv", AGREE, ids=[" ".join(a) for a in AGREE])
def test_the_hot_path_answers_as_typer_does(
    argv: list[str],
    store: tuple[Path, str],
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
    logging_restored: None,
) -> None:
    args = [a.replace("{version}", store[1]) for a in argv]
    assert hotpath.parse(args) is not None
    fast = _run_main(args, capsysbinary)
    monkeypatch.setattr(hotpath, "parse", lambda _args: None)  # every line through typer
    typed = _run_main(args, capsysbinary)
    assert fast == typed


def test_the_hot_path_answers_the_same_reads(
    store: tuple[Path, str], capsysbinary: pytest.CaptureFixture[bytes], logging_restored: None
) -> None:
    # Not only the same as typer: the values themselves (typer's run above could be wrong too).
    assert _run_main(["secret", "get", "plain"], capsysbinary) == (0, b"v2", b"")
    first = _run_main(["secret", "get", "--version", store[1], "plain"], capsysbinary)
    assert first == (0, b"v1", b"")
    assert _run_main(["secret", "get", "obj", "--field", "user"], capsysbinary)[:2] == (0, b"fleet")
    code, _, err = _run_main(["secret", "get", "missing"], capsysbinary)
    assert code == 3
    assert b"not found" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["secret", "get"],
        ["secret", "get", "a", "b"],
        ["--help", "secret", "get", "a"],
        ["secret", "get", "a", "--help"],
        ["secret", "get", "-h"],
        ["-qv", "secret", "get", "a"],
        ["--version", "secret", "get", "a"],
        ["--as", "-x", "secret", "get", "a"],
        ["--as", "a", "--as", "b", "secret", "get", "a"],
        ["--as"],
        ["secret", "get", "a", "--version"],
        ["secret", "get", "a", "--field", "x", "--field", "y"],
        ["secret", "get", "--", "a"],
        ["secret", "get", "-"],
        ["secret", "get", "a", "--json=yes"],
        ["secret", "get", "a", "--unknown"],
        ["secret", "--json", "get", "a"],
        ["secret", "show", "a"],
        ["get", "a"],
        ["--install-completion", "secret", "get", "a"],
    ],
    ids=lambda argv: " ".join(argv) or "(nothing)",
)
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert hotpath.parse(argv) is None


def test_an_option_value_is_taken_whole() -> None:
    # ``--field=a=b`` names the field "a=b"; ``--as`` takes the next word even if it is "secret".
    assert hotpath.parse(["secret", "get", "x", "--field=a=b"]) is not None
    assert hotpath.parse(["--as", "secret", "secret", "get", "x"]) is not None
    assert hotpath.parse(["--as", "secret", "get", "x"]) is None
