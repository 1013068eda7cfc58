"""Options and arguments several commands share, declared once so their help reads the same."""

from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.runtime import UsageError

__all__ = [
    "ContentTypeOpt",
    "ExpiresOpt",
    "FromFileOpt",
    "JsonOpt",
    "KeepNewlineOpt",
    "NameArg",
    "QuietOpt",
    "SourceArg",
    "TagOpt",
    "ValueOpt",
    "VersionOpt",
    "YesOpt",
    "parse_tags",
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing on success (warnings still show).")
]
NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Secret name: 1-127 of a-z, A-Z, 0-9 and -.")
]
VersionOpt = Annotated[
    str | None,
    typer.Option("--version", metavar="VERSION", help="A version id (default: the current one)."),
]
SourceArg = Annotated[
    str | None,
    typer.Argument(
        metavar="-",
        help="Give - to read the value from standard input; with neither - nor --from-file "
        "you are asked for it (no echo). --value TEXT also works but lands in shell history.",
        show_default=False,
    ),
]
FromFileOpt = Annotated[
    Path | None,
    typer.Option("--from-file", "-f", metavar="PATH", help="Read the value from a file."),
]
ValueOpt = Annotated[
    str | None,
    typer.Option(
        "--value",
        metavar="TEXT",
        help="The value itself. Discouraged: it lands in shell history and the process list "
        "(a warning is printed).",
    ),
]
KeepNewlineOpt = Annotated[
    bool,
    typer.Option(
        "--keep-newline",
        help="Keep a trailing newline read from stdin or a file (one is dropped by default).",
    ),
]
TagOpt = Annotated[
    list[str] | None,
    typer.Option("--tag", "-t", metavar="KEY=VALUE", help="A tag (repeat for more; at most 15)."),
]
ExpiresOpt = Annotated[
    int | None,
    typer.Option("--expires-in-days", metavar="DAYS", help="Expire this many days from now."),
]
ContentTypeOpt = Annotated[
    str | None,
    typer.Option(
        "--content-type",
        metavar="TYPE",
        help="Content type, e.g. text/plain; application/json checks that the value is JSON.",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def parse_tags(tags: list[str] | None) -> dict[str, str] | None:
    """``--tag k=v`` options as a mapping (None when none were given)."""
    if not tags:
        return None
    parsed: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag takes KEY=VALUE, got {tag!r}")
        parsed[key] = value
    return parsed
