"""The examples of a Markdown page, as the docs tests run them.

A page's fenced blocks in ``console`` (commands after ``$ ``, each followed by what it prints),
``bash``/``sh`` (a script) and ``python`` are examples; every other block is text. HTML comments,
which a reader never sees, steer the test:

- ``<!-- doctest: background -->`` right before a console block of one long-running command
  (``strongroom serve ...``): it runs in the background until the page ends, on a free port
  that takes the place of the documented 8200 everywhere on the page, and the next block waits
  until it answers.
- ``<!-- doctest: skip REASON -->`` right before a block: not run (the reason is required).
- ``<!-- doctest: no-output -->`` right before a console block: exit codes only.
- ``<!-- doctest-prelude ... -->``: Python run before each Python block of the page, for
  fragments that use a name an earlier block defined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Block", "Command", "Page", "matches", "normalize", "parse_page"]

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<lang>[\w-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"<!--\s*doctest:\s*(?P<body>.*?)\s*-->", re.S)
_PRELUDE = re.compile(r"<!--\s*doctest-prelude\n(?P<code>.*?)-->", re.S)
EXAMPLE_LANGUAGES = {"console", "bash", "sh", "python"}


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    skip: str | None = None
    check_output: bool = True
    background: bool = False

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    def commands(self) -> list[Command]:
        """A console block's commands with the lines each is shown printing. A command
        continued with a trailing backslash takes the next line too (as a shell does)."""
        found: list[Command] = []
        lines = self.code.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if not line.startswith("$ "):
                i += 1
                continue
            start, text = self.line + 1 + i, line[2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text + "\n" + lines[i]
            i += 1
            expected = []
            while i < len(lines) and not lines[i].startswith("$ "):
                expected.append(lines[i])
                i += 1
            found.append(Command(start, text, tuple(expected)))
        return found


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    prelude: str = ""


def parse_page(path: Path) -> Page:
    text = path.read_text()
    page = Page(path)
    page.prelude = "\n".join(m.group("code") for m in _PRELUDE.finditer(text))
    lines = text.splitlines()
    pending: list[str] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            stripped = lines[i].strip()
            directive = _DIRECTIVE.fullmatch(stripped)
            if directive:
                pending.append(directive.group("body"))
            elif stripped:
                pending = []
            i += 1
            continue
        start, marker, lang = i, fence.group("fence"), fence.group("lang")
        indent = len(fence.group("indent"))
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i][indent:])
            i += 1
        i += 1
        if lang in EXAMPLE_LANGUAGES:
            skip = next((d[4:].strip() for d in pending if d.startswith("skip")), None)
            if skip is not None and not skip:
                raise ValueError(f"{path.name}:{start + 1}: a skipped example needs a reason")
            page.blocks.append(
                Block(
                    path, start + 1, lang, "\n".join(body) + "\n", skip=skip,
                    check_output="no-output" not in pending,
                    background="background" in pending,
                )
            )  # fmt: skip
        pending = []
    return page


# -- comparing what a command printed with what the page shows ---------------------------------

_BOX = re.compile(r"[\u2500-\u257f]")
_REPLACEMENTS = [
    (re.compile(r"srt_[0-9a-f]{16}_[A-Za-z0-9_\-.…]+"), "<token>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d"), "<date>"),
    (
        re.compile(
            r"\b(just now|in a moment|(in )?(a|an|\d+) (second|minute|hour|day|week|month|year)s?"
            r"( ago)?)\b"
        ),
        "<when>",
    ),
    (re.compile(r"\b[0-9a-f]{8,}\b"), "<hex>"),
]


def normalize(line: str) -> str:
    """Dates, relative times, version ids and tokens as placeholders; table borders and runs
    of spaces as one space."""
    for pattern, placeholder in _REPLACEMENTS:
        line = pattern.sub(placeholder, line)
    line = _BOX.sub(" ", line)
    return " ".join(line.split())


def matches(expected: tuple[str, ...], actual: str) -> str | None:
    """None when every shown line appears in what the command printed, in order (``...`` or
    ``…`` stands for anything within a line); else the first shown line that does not."""
    got = [normalize(line) for line in actual.splitlines()]
    got = [line for line in got if line]
    position = 0
    for shown in expected:
        want = normalize(shown)
        if not want:
            continue
        parts = [part.strip() for part in re.split(r"\.\.\.|…", want)]
        pattern = re.compile(".*".join(re.escape(part) for part in parts) + "$")
        while position < len(got) and not pattern.match(got[position]):
            position += 1
        if position == len(got):
            return shown
        position += 1
    return None
