"""The ``strongroom`` entry point: runs a command line, turns errors into exit codes.

Every error a command raises ends up in :func:`main`, which prints one line on stderr (never a
traceback, never a value) and exits with the code :func:`exit_code_for` chooses. The typer
application lives in :mod:`strongroom.cli.root`, imported only when a command line needs it:
``strongroom secret get NAME`` goes through :mod:`strongroom.cli.hotpath` instead.
"""

import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from strongroom.cli import hotpath
from strongroom.cli.exitcodes import ExitCode
from strongroom.cli.output import safe
from strongroom.core import errors

# ``app`` and ``COMMANDS`` are still here (module __getattr__), loaded from cli.root on use.
__all__ = ["DENIED_CODES", "exit_code_for", "main"]


def __getattr__(name: str) -> Any:
    """``app`` and ``COMMANDS`` as before, loaded with typer on first use."""
    if name in ("app", "COMMANDS"):
        from strongroom.cli import root  # noqa: PLC0415 (typer only when asked for)

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Error codes (``StrongroomError.code``) that mean "denied or revoked", so errors that later
#: issues add (a revoked secret, a refused token) exit with 4 without touching this module.
DENIED_CODES = frozenset({"revoked", "denied", "forbidden", "unauthorized", "permission_denied"})


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


def _run_typer(args: list[str], *, as_json: bool) -> Any:
    """Any command line through the typer application; its own errors (usage, abort) are
    printed here, every other error travels up to :func:`main`."""
    import typer  # noqa: PLC0415 (not imported by the hot path)

    from strongroom.cli.root import app  # noqa: PLC0415 (as typer)

    command = typer.main.get_command(app)
    try:
        # Not standalone: click hands back an exit code (help, typer.Exit) instead of exiting,
        # and raises usage errors, so both reach the one place that prints errors.
        return command.main(args=args, prog_name="strongroom", standalone_mode=False)
    except typer.Abort:
        _fail("aborted", ExitCode.ERROR, error_code="aborted", as_json=as_json)
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument
        usage = ExitCode(getattr(exc, "exit_code", ExitCode.USAGE))
        if as_json:
            _fail(exc.format_message(), usage, error_code="usage", as_json=True)
        exc.show()  # type: ignore[attr-defined]  # click's usage line and message (or help)
        raise SystemExit(usage) from None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line; every outcome is an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    fast = hotpath.parse(args)
    try:
        code = fast() if fast is not None else _run_typer(args, as_json=as_json)
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
