"""The ``strongroom`` typer application: global options and the command groups.

Imported only when a command line needs typer (see :mod:`strongroom.cli.hotpath`): typer
builds a pydantic validator per option at each call, which a ``secret get`` does not pay.
"""

import sys
from typing import Annotated

import typer

import strongroom
from strongroom.cli.exitcodes import EXIT_CODE_HELP
from strongroom.cli.lazy import lazy_group
from strongroom.cli.runtime import CliState

__all__ = ["COMMANDS", "HELP", "app"]

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
