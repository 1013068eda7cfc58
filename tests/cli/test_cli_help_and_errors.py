"""Help is complete for every command, errors map to documented exit codes, output is safe."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import typer
from clirun import Cli, make_cli
from typer.testing import CliRunner

from strongroom.cli import app
from strongroom.cli.exitcodes import EXIT_CODE_HELP, ExitCode
from strongroom.cli.main import exit_code_for
from strongroom.cli.output import relative, safe, when
from strongroom.cli.runtime import NotFoundError
from strongroom.core import errors
from strongroom.services.notify import NotificationTargetError


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command under ``command``, lazy groups included (loaded as --help would)."""
    found = [(path, command)]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(None):
            found += _commands(command.get_command(None, name), (*path, name))
    return found


ALL = _commands(typer.main.get_command(app))


def test_commands_load_only_when_used() -> None:
    # `secret get` is the hot path: resolving it must not import the other commands' code.
    code = (
        "import sys, typer, strongroom.cli\n"
        "root = typer.main.get_command(strongroom.cli.app)\n"
        "root.get_command(None, 'secret').get_command(None, 'get')\n"
        "print(sorted(m for m in sys.modules if m.startswith('strongroom.')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = run.stdout
    assert "strongroom.cli.secrets'" in loaded
    for module in ("audit'", "keys'", "store'", "secrets_transfer'", "secrets_import'",
                   "transfer'", "rotation'", "revoke'", "events'"):  # fmt: skip
        assert f"strongroom.cli.{module}" not in loaded
    for module in (  # `get` never uses these services
        "services.rotation",
        "services.revocation",
        "services.events.subscriptions",
        "services.audit.secrets_audit",
    ):
        assert f"strongroom.{module}" not in loaded


def test_a_local_secret_get_never_imports_the_http_or_jwt_stacks(tmp_path: Path) -> None:
    # A read in the embedded profile opens the store and audits; the remote client's HTTP
    # stack and the JWT login libraries are a server's business (and a third of a start-up).
    # Nor rich, which structlog would import for renderers strongroom does not use (core.logging
    # hides it while structlog loads): the CLI draws with rich only for tables.
    code = (
        "import sys\n"
        "sys.argv = ['strongroom', 'secret', 'get', 'no-such-secret']\n"
        "from strongroom.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    print('exit', exit.code)\n"
        "stacks = {'httpx', 'jwt', 'fastapi', 'rich'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & stacks))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRONGROOM_", "DATABASE"))}
    env["STRONGROOM_HOME"] = str(tmp_path)
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    lines = run.stdout.strip().splitlines()
    assert lines[-2] == f"exit {ExitCode.NOT_FOUND.value}", run.stdout + run.stderr  # it read
    assert lines[-1] == "[]"


def test_every_capability_has_a_command() -> None:
    paths = {" ".join(path) for path, _ in ALL}
    secret = "create get update list versions show enable disable delete recover purge deleted"
    expected = {"init", "status", "key rotate"}
    expected |= {f"secret {c}" for c in [*secret.split(), "import", "export"]}
    expected |= {f"audit {c}" for c in ["trail", "summary", "threats", "verify", "export"]}
    rotation = "register unregister list status rotate force history check run"
    expected |= {f"rotation {c}" for c in rotation.split()}
    revoke = "request approve reject cancel status history pending"
    expected |= {f"revoke {c}" for c in revoke.split()}
    expected |= {f"events {c}" for c in ["subscribe", "unsubscribe", "list", "check-expiry"]}
    assert expected <= paths


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) or "root" for p, _ in ALL])
def test_help_is_complete(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert (command.help or "").strip(), f"{path} has no help text"
    for param in command.params:
        if param.name != "ctx" and getattr(param, "help", None) is not None:
            assert param.help.strip()
        elif param.param_type_name == "option":
            pytest.fail(f"option {param.opts} of {' '.join(path)} has no help")
        else:
            assert param.param_type_name == "argument"


def test_root_help_documents_exit_codes_in_a_subprocess(tmp_path: Path) -> None:
    result = make_cli("sqlite", tmp_path)("--help")
    for code, word in ((0, "success"), (1, "error"), (2, "usage"), (3, "not found"),
                       (4, "denied or revoked")):  # fmt: skip
        assert f"{code}  {word}" in result.stdout
    for group in ("secret", "rotation", "revoke", "events", "audit", "key"):
        assert group in result.stdout
    readme = (Path(__file__).parents[2] / "docs/cli.md").read_text()
    assert "| 4 | denied or revoked" in readme


def test_installed_script_points_at_main() -> None:
    scripts = metadata.entry_points(group="console_scripts")
    assert [e.value for e in scripts if e.name == "strongroom"] == ["strongroom.cli:main"]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.SecretNotFoundError("x"), ExitCode.NOT_FOUND),
        (errors.SecretIsDeletedError("x"), ExitCode.NOT_FOUND),
        (errors.ValidationError("x"), ExitCode.USAGE),
        (errors.SecretRevokedError("x"), ExitCode.DENIED),
        (errors.AuditUnavailableError("x"), ExitCode.DENIED),
        (errors.WrongMasterKeyError("x"), ExitCode.DENIED),
        (errors.InsecureKeyFileError("x"), ExitCode.DENIED),
        (errors.SecretDisabledError("x"), ExitCode.ERROR),
        (errors.SecretExpiredError("x"), ExitCode.ERROR),
        (errors.SecretAlreadyExistsError("x"), ExitCode.ERROR),
        (errors.StoreUnavailableError("x"), ExitCode.ERROR),
        (errors.DecryptionError("x"), ExitCode.ERROR),
        (errors.RotationNotConfiguredError("x"), ExitCode.NOT_FOUND),
        (errors.RotationFailedError("x"), ExitCode.ERROR),
        (errors.RevocationNotFoundError("x"), ExitCode.NOT_FOUND),
        (errors.SeparationOfDutiesError("x"), ExitCode.DENIED),
        (errors.RevocationStateError("x"), ExitCode.ERROR),
        (NotificationTargetError("x"), ExitCode.USAGE),
        (NotFoundError("x"), ExitCode.NOT_FOUND),
    ],
)
def test_exit_code_for_each_error(error: Exception, code: ExitCode) -> None:
    assert exit_code_for(error) is code


def test_revocation_style_errors_are_denied_by_code() -> None:
    class Revoked(errors.StrongroomError):
        code = "revoked"

    assert exit_code_for(Revoked("x")) is ExitCode.DENIED
    assert "4  denied or revoked" in EXIT_CODE_HELP


def test_bad_input_never_echoes_a_value_and_exits_2(tmp_path: Path) -> None:
    cli: Cli = make_cli("sqlite", tmp_path)
    runs = cli.parallel(
        lambda: cli("secret", "create", "x", "s3cr3t-typed-on-the-line", code=2),
        lambda: cli("secret", "create", "x", code=2),  # no value, no terminal to ask on
        lambda: cli("secret", "create", "x", "-", "--tag", "novalue", stdin="v", code=2),
        lambda: cli("audit", "trail", "--since", "yesterday-ish", code=2),
        lambda: cli("secret", "no-such-command", code=2),
        lambda: cli("--no-such-option", code=2),
        lambda: cli("secret", "create", "x", "-", "--value", "v", stdin="v", code=2),
        lambda: cli("secret", "import", str(tmp_path / "missing.env"), code=2),
        lambda: cli("secret", "export", "--format", "env", code=2),  # .env needs --plain
        lambda: cli("secret", "create", "x", "--type", "nonsense", "--value", "v", code=2),
    )
    assert all(r.stderr.startswith(("strongroom: error:", "Usage:", "warning:")) for r in runs)
    assert "not taken from the command line" in runs[0].stderr
    assert cli.leaks("s3cr3t-typed-on-the-line") == []
    assert not (tmp_path / "strongroom.db").exists()  # refused before opening anything


def test_relative_and_absolute_dates() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert relative(now - timedelta(seconds=5), now) == "just now"
    assert relative(now - timedelta(minutes=3), now) == "3 minutes ago"
    assert relative(now + timedelta(hours=2), now) == "in 2 hours"
    assert relative(now - timedelta(days=3), now) == "3 days ago"
    assert relative(now + timedelta(days=90), now) == "in 3 months"
    assert relative(now - timedelta(days=800), now) == "2 years ago"
    assert when(now - timedelta(days=2), now) == "2 days ago (2026-11-26 12:00Z)"
    assert when(None, now) == "-"


def test_terminal_control_characters_are_shown_not_obeyed() -> None:
    assert safe("evil\x1b[2J\x07name") == "evil\\u001b[2J\\u0007name"
    assert safe("rtl\u202eoverride") == "rtl\\u202eoverride"
    assert safe(None) == ""
