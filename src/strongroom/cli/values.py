"""Where a secret value comes from on the command line: a prompt, stdin or a file.

Never from a command-line argument by default: arguments land in shell history and are
visible to every user through ``ps``. ``--value`` exists for throwaway setups and warns.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from strongroom.cli.output import Output
from strongroom.cli.runtime import UsageError, require_tty

__all__ = ["read_secret_text", "read_value"]


def _drop_newline(text: str) -> str:
    """``echo value |`` and editors add one newline that is not part of the secret."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"the value from {where} is not UTF-8 text") from None


def read_secret_text(path: Path, what: str = "file") -> bytes:
    """A file's bytes, with unreadable paths reported as bad input (exit code 2)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory") from None
    except PermissionError:
        raise UsageError(f"{what} {path} is not readable") from None


def read_value(
    out: Output,
    *,
    source: str | None,
    from_file: Path | None,
    value: str | None,
    keep_newline: bool,
    confirm: bool,
) -> str:
    """The value from exactly one of: ``-`` (stdin), ``--from-file``, ``--value``, a prompt."""
    if source is not None and source != "-":
        # Say nothing about what was given: it may be the secret itself.
        raise UsageError(
            "values are not taken from the command line (shell history, ps): "
            "give - to read standard input, --from-file PATH, or answer the prompt"
        )
    given = sum(x is not None for x in (source, from_file, value))
    if given > 1:
        raise UsageError("give the value one way only: -, --from-file or --value")
    if value is not None:
        out.warn(
            "--value puts the secret in your shell history and the process list; "
            "prefer -, --from-file or the prompt"
        )
        return value
    if source == "-":
        text = _decode(sys.stdin.buffer.read(), "standard input")
        return text if keep_newline else _drop_newline(text)
    if from_file is not None:
        text = _decode(read_secret_text(from_file), str(from_file))
        return text if keep_newline else _drop_newline(text)
    require_tty("no value given (use -, --from-file or --value)")
    entered: str = typer.prompt("Value", hide_input=True, confirmation_prompt=confirm)
    return entered
