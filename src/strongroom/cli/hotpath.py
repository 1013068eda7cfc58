"""``strongroom secret get NAME`` without typer: the command scripts run most, started fast.

typer (0.29) imports pydantic and builds a validator for every option of the command line at
each call: about half of what a ``secret get`` took before it opened the store. This module
reads the plain spellings of that one command line itself and hands anything else (help,
another command, combined short flags, a value that starts with ``-``, an option given twice,
an unknown option, a mistake) to typer, which parses and reports it as it always did. What
runs afterwards is the same function either way (:func:`strongroom.cli.getvalue.print_value`).

Accepted: ``[--as NAME|--as=NAME] [--json] [--quiet|-q] [--verbose|-v] secret get NAME``
with ``--version VERSION``, ``--field KEY`` (or ``--version=...``, ``--field=...``) and
``--json`` before or after NAME.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["parse"]

_ROOT_FLAGS = {"--json": "json", "--quiet": "quiet", "-q": "quiet", "--verbose": "verbose",
               "-v": "verbose"}  # fmt: skip
_GET_VALUES = ("--version", "--field")


def _option_value(args: Sequence[str], at: int) -> tuple[str, int] | None:
    """The value of the option at ``args[at]`` (``--opt=value`` or ``--opt value``) and the
    index after it; None when typer should judge it (missing, or looks like an option)."""
    _, equals, value = args[at].partition("=")
    if equals:
        return value, at + 1
    if at + 1 < len(args) and not args[at + 1].startswith("-"):
        return args[at + 1], at + 2
    return None


def _root_options(args: Sequence[str]) -> tuple[dict[str, bool], str | None, int] | None:
    """The root flags, ``--as`` and where the command starts; None for typer to judge."""
    flags: dict[str, bool] = {}
    actor: str | None = None
    at = 0
    while at < len(args) and args[at].startswith("-"):
        arg = args[at]
        if arg in _ROOT_FLAGS:
            flags[_ROOT_FLAGS[arg]] = True
            at += 1
        elif arg.partition("=")[0] == "--as" and actor is None:
            found = _option_value(args, at)
            if found is None:
                return None
            actor, at = found
        else:
            return None
    return flags, actor, at


def _get_arguments(rest: Sequence[str]) -> tuple[str, dict[str, str], bool] | None:
    """NAME, the value options and ``--json`` of ``secret get``; None for typer to judge."""
    name: str | None = None
    values: dict[str, str] = {}
    as_json = False
    at = 0
    while at < len(rest):
        arg = rest[at]
        option = arg.partition("=")[0]
        if arg == "--json":
            as_json = True
            at += 1
        elif option in _GET_VALUES and option not in values:
            found = _option_value(rest, at)
            if found is None:
                return None
            values[option], at = found
        elif arg.startswith("-") or name is not None:
            return None
        else:
            name = arg
            at += 1
    return None if name is None else (name, values, as_json)


def parse(args: Sequence[str]) -> Callable[[], None] | None:
    """The ``secret get`` this command line asks for, ready to run; None for anything else."""
    root = _root_options(args)
    if root is None:
        return None
    flags, actor, at = root
    if list(args[at : at + 2]) != ["secret", "get"]:
        return None
    command = _get_arguments(args[at + 2 :])
    if command is None:
        return None
    name, values, as_json = command

    def run() -> None:
        # Imported when run: parsing alone must stay cheap for the command lines typer gets.
        from strongroom.cli.getvalue import print_value  # noqa: PLC0415
        from strongroom.cli.runtime import CliState  # noqa: PLC0415

        state = CliState(
            actor=actor,
            json=flags.get("json", False),
            quiet=flags.get("quiet", False),
            verbose=flags.get("verbose", False),
        )
        print_value(
            state,
            name,
            version=values.get("--version"),
            json=as_json,
            field=values.get("--field"),
        )

    return run
