"""How the CLI prints: rich tables for people, JSON for scripts, messages and warnings.

rich is imported only when something is drawn, so ``strongroom secret get`` never pays for it.
Every cell goes through :func:`safe`: names, actor ids and user agents can come from clients,
and must not be able to move the cursor or recolour the operator's terminal.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from strongroom.core.errors import ValidationError

if TYPE_CHECKING:
    from rich.console import Console, JustifyMethod
    from rich.progress import Progress

__all__ = [
    "Column",
    "Lines",
    "Output",
    "ProgressBar",
    "dumps",
    "name_column",
    "now_utc",
    "open_private",
    "relative",
    "safe",
    "short_version",
    "when",
    "when_cell",
]

_PIPE_WIDTH = 160
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

#: Colours of threat severities and audit results.
SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
}
RESULT_STYLE = {"SUCCESS": "green", "FAILURE": "red", "PARTIAL": "yellow"}


def safe(text: object) -> str:
    """Text for a terminal: control and bidi characters shown as escapes, never interpreted."""
    if text is None:
        return ""
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(data: object) -> str:
    """JSON for scripts: ISO dates, enums as their values, stable key order as given."""
    return json.dumps(data, indent=2, default=_default, ensure_ascii=False)


def relative(moment: datetime, now: datetime) -> str:
    """``3 days ago`` / ``in 2 hours``: what an operator reads first."""
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    if span < 45:
        return "just now" if seconds <= 0 else "in a moment"
    for limit, unit, size in (
        (90 * 60, "minute", 60),
        (36 * 3600, "hour", 3600),
        (45 * 86400, "day", 86400),
        (547 * 86400, "month", 30 * 86400),
        (float("inf"), "year", 365 * 86400),
    ):
        if span < limit:
            count = max(1, round(span / size))
            text = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {text}" if seconds > 0 else f"{text} ago"
    raise AssertionError("unreachable")  # pragma: no cover


def when(moment: datetime | None, now: datetime, *, empty: str = "-") -> str:
    """Relative and absolute (UTC): ``3 days ago (2026-11-25 14:02Z)``."""
    if moment is None:
        return empty
    absolute = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
    return f"{relative(moment, now)} ({absolute})"


class Lines(tuple[str, ...]):
    """A table cell of several lines (each escaped on its own)."""

    __slots__ = ()


def when_cell(moment: datetime | None, now: datetime, *, empty: str = "-") -> str | Lines:
    """For a table cell: the relative time over the absolute one, so columns stay narrow."""
    if moment is None:
        return empty
    return Lines((relative(moment, now), f"{moment.astimezone(UTC):%Y-%m-%d %H:%MZ}"))


def short_version(version: str | None) -> str:
    """The first 8 hex digits, as git shows commits; ``--json`` has the whole id."""
    return (version or "")[:8]


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    justify: JustifyMethod = "left"
    no_wrap: bool = False
    style: str | None = None
    #: Columns people copy from (version ids) are never squeezed.
    min_width: int | None = None
    #: Names (up to 127 characters) fold onto more lines rather than squeeze the others away.
    fold: bool = False


def name_column(header: str = "name") -> Column:
    """The column of secret names: bold, folded when long (never cut, never crowding out)."""
    return Column(header, style="bold", fold=True, min_width=min(len(header), 12))


Text = str | Lines
Cell = Text | tuple[Text, str | None]  # text, or (text, style)


@dataclass(slots=True)
class Output:
    """Where a command's results go, following ``--json`` and ``--quiet``."""

    json: bool = False
    quiet: bool = False
    _console: Console | None = None
    _err_console: Console | None = None

    # -- data ------------------------------------------------------------------------------

    def data(self, payload: object) -> None:
        """Machine-readable result on stdout (``--json``)."""
        sys.stdout.write(dumps(payload) + "\n")
        sys.stdout.flush()

    def done(self, message: str, payload: object = None) -> None:
        """A write command's outcome: JSON with ``--json``, a line for people otherwise."""
        if self.json:
            self.data(payload if payload is not None else {"message": message})
        elif not self.quiet:
            sys.stdout.write(safe(message) + "\n")

    def note(self, message: str) -> None:
        """Side information for people (stderr, so stdout stays clean); ``--quiet`` drops it."""
        if not self.quiet:
            sys.stderr.write(safe(message) + "\n")

    def warn(self, message: str) -> None:
        """A warning always shows, even with ``--quiet``: they are about safety."""
        sys.stderr.write(f"warning: {safe(message)}\n")

    # -- tables ----------------------------------------------------------------------------

    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415 (only when drawing)

            # Piped into a file or a pager, a table has room: rich would assume 80 columns.
            width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else _PIPE_WIDTH
            self._console = Console(highlight=False, soft_wrap=False, width=width)
        return self._console

    def err_console(self) -> Console:
        if self._err_console is None:
            from rich.console import Console  # noqa: PLC0415

            self._err_console = Console(stderr=True, highlight=False)
        return self._err_console

    def table(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Cell]],
        *,
        title: str | None = None,
        caption: str | None = None,
    ) -> None:
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text as RichText  # noqa: PLC0415

        table = Table(title=title, caption=caption, header_style="bold", title_justify="left")
        for column in columns:
            table.add_column(
                column.header,
                justify=column.justify,
                no_wrap=column.no_wrap and not column.fold,
                style=column.style,
                min_width=column.min_width,
                overflow="fold" if column.fold else "ellipsis",
            )
        for row in rows:
            cells = []
            for cell in row:
                text, style = (cell, None) if isinstance(cell, str | Lines) else cell
                shown = "\n".join(map(safe, text)) if isinstance(text, Lines) else safe(text)
                cells.append(RichText(shown, style=style or ""))
            table.add_row(*cells)
        self.console().print(table)

    def fields(self, items: Mapping[str, Cell], *, title: str | None = None) -> None:
        """A two-column key/value table (one object's properties)."""
        self.table(
            [Column("field", style="bold", no_wrap=True), Column("value")],
            [[key, value] for key, value in items.items()],
            title=title,
        )

    # -- progress --------------------------------------------------------------------------

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[ProgressBar]:
        """A bar on stderr for long jobs; silent when stderr is not a terminal, with ``--json``
        or ``--quiet``."""
        show = not (self.quiet or self.json) and sys.stderr.isatty()
        if not show:
            yield ProgressBar(None, None)
            return
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.err_console(),
            transient=False,
        ) as bar:
            task = bar.add_task(description, total=total)
            yield ProgressBar(bar, task)


class ProgressBar:
    """A handle on one task of a rich progress display, or nothing when it is hidden."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def update(self, completed: int, total: int | None = None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, total=total)


def open_private(path: Path, *, force: bool) -> TextIO:
    """A new file only its owner can read (exports hold secrets or audit metadata); an existing
    file is replaced only with ``force``, and made owner-only too."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ValidationError(f"{path} exists (add --force to overwrite it)") from None
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def now_utc() -> datetime:
    return datetime.now(UTC)
