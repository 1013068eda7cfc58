"""The root ``strongroom`` command: global options, command groups, errors to exit codes.

Every error a command raises ends up in :func:`main`, which prints one line on stderr (never a
traceback, never a value) and exits with the code :func:`exit_code_for` chooses.
"""

import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated, NoReturn

import typer

import strongroom
from strongroom.cli.exitcodes import EXIT_CODE_HELP, ExitCode
from strongroom.cli.lazy import lazy_group
from strongroom.cli.output import safe
from strongroom.cli.runtime import CliState
from strongroom.core import errors

__all__ = ["COMMANDS", "DENIED_CODES", "app", "exit_code_for", "main"]

HELP = f"""\
strongroom: secrets stored encrypted, versioned, audited.

Configured by the same environment variables as the library: STRONGROOM_HOME (embedded
profile, the default), DATABASE_URL (cluster profile), STRONGROOM_BACKEND, STRONGROOM_MASTER_KEY
or STRONGROOM_MASTER_KEY_FILE, ... Start with `strongroom init`.

Every call is audited as the OS user at this host, or as --as NAME (with the OS user beside it).
With STRONGROOM_ADDR set (the remote profile), commands ask that server instead, as the
identity of the token from `strongroom login` or STRONGROOM_TOKEN; --as is then only a note.

{EXIT_CODE_HELP}"""

#: Every command and group, in the order `strongroom --help` lists them, as "module:attribute".
#: Each is imported only when used (or listed by --help): the hot path, `strongroom secret get`,
#: never loads the code of the others. A new group is a module beside these with a typer app,
#: one line here and, where it raises new errors, their codes in exit_code_for.
COMMANDS = {
    "init": "strongroom.cli.store:init",
    "status": "strongroom.cli.store:status",
    "secret": "strongroom.cli.secrets:app",
    "rotation": "strongroom.cli.rotation:app",
    "revoke": "strongroom.cli.revoke:app",
    "events": "strongroom.cli.events:app",
    "audit": "strongroom.cli.audit:app",
    "report": "strongroom.cli.report:app",
    "key": "strongroom.cli.keys:app",
    "operator": "strongroom.cli.operator:app",
    "token": "strongroom.cli.access:token_app",
    "policy": "strongroom.cli.access:policy_app",
    "login": "strongroom.cli.login:login",
    "logout": "strongroom.cli.login:logout",
    "run": "strongroom.cli.run:run",
    "serve": "strongroom.cli.serve:serve",
    "edge": "strongroom.cli.edge:app",
    "vaults": "strongroom.cli.vaults:app",
    "dev-cert": "strongroom.cli.devcert:dev_cert",
}

app = typer.Typer(
    name="strongroom",
    cls=lazy_group(COMMANDS),
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: Error codes (``StrongroomError.code``) that mean "denied or revoked", so errors that later
#: issues add (a revoked secret, a refused token) exit with 4 without touching this module.
DENIED_CODES = frozenset({"revoked", "denied", "forbidden", "unauthorized", "permission_denied"})


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"strongroom {strongroom.__version__}\n")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    actor: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="NAME",
            help="Act as NAME: the audit log records NAME (default: the OS user at this host).",
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="JSON output for every command.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing on success (warnings show).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Library log lines (JSON) on stderr.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = CliState(actor=actor, json=json, quiet=quiet, verbose=verbose)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of an error: the one place that decides it.

    One rule for every command: whatever names something that is not there (a secret, a
    version, a rotation policy, a revocation request, a token, a policy, a subscription) is a
    ``LookupError`` and exits 3.
    """
    if isinstance(exc, LookupError):
        return ExitCode.NOT_FOUND
    if isinstance(exc, errors.ValidationError):  # includes a refused webhook target
        return ExitCode.USAGE
    denied = (
        errors.SecretRevokedError,
        errors.SeparationOfDutiesError,  # approving one's own request, or approving twice
        errors.AuditUnavailableError,
        errors.WrongMasterKeyError,
        errors.InsecureKeyFileError,
        errors.ShareError,  # a key share refused (foreign, duplicate, wrong, corrupted)
    )
    if isinstance(exc, denied):
        return ExitCode.DENIED
    if isinstance(exc, errors.RevocationStateError):  # a closed request, or one changed meanwhile
        return ExitCode.ERROR
    if isinstance(exc, errors.StrongroomError) and exc.code in DENIED_CODES:
        return ExitCode.DENIED
    # Disabled, expired or not-yet-valid secrets exist but cannot be read now: an error (1),
    # not "denied", which is kept for refusals of who is asking (revocation, audit, keys).
    return ExitCode.ERROR


def _fail(message: str, code: ExitCode, *, error_code: str, as_json: bool) -> NoReturn:
    """One line on stderr: text for people, or ``{"error": {"code", "message"}}`` under
    ``--json`` (the same shape as the HTTP API's errors); the exit code is the same."""
    text = safe(" ".join(message.split()))
    if as_json:
        line = json.dumps({"error": {"code": error_code, "message": text}, "exit_code": int(code)})
    else:
        line = f"strongroom: error: {text}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    raise SystemExit(int(code))


def _wants_json(args: Sequence[str]) -> bool:
    """``--json`` anywhere before ``--`` (root or command option: both mean JSON output)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line; every outcome is an exit code."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        # Not standalone: click hands back an exit code (help, typer.Exit) instead of exiting,
        # and raises usage errors, so both reach the one place that prints errors.
        code = command.main(args=args, prog_name="strongroom", standalone_mode=False)
    except typer.Abort:
        _fail("aborted", ExitCode.ERROR, error_code="aborted", as_json=as_json)
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument
        usage = ExitCode(getattr(exc, "exit_code", ExitCode.USAGE))
        if as_json:
            _fail(exc.format_message(), usage, error_code="usage", as_json=True)
        exc.show()  # type: ignore[attr-defined]  # click's usage line and message (or help)
        raise SystemExit(usage) from None
    except errors.StrongroomError as exc:
        message = str(exc) if as_json else f"{exc} [{exc.code}]"
        _fail(message, exit_code_for(exc), error_code=exc.code, as_json=as_json)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or type(exc).__name__}{where}", ExitCode.ERROR,
              error_code="os_error", as_json=as_json)  # fmt: skip
    except Exception as exc:
        # A bug: name the exception type only (its text could carry anything).
        if os.environ.get("STRONGROOM_CLI_TRACEBACK") == "1":
            traceback.print_exc()
        _fail(
            f"unexpected {type(exc).__name__} (set STRONGROOM_CLI_TRACEBACK=1 to see where)",
            ExitCode.ERROR,
            error_code="internal",
            as_json=as_json,
        )
    raise SystemExit(code if isinstance(code, int) else 0)
