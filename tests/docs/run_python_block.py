"""Run one Python example from the documentation: top-level ``await`` is allowed, as in the
examples (a reader pastes them into ``python -m asyncio`` or an async function)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import sys
from pathlib import Path


def main(path: str) -> None:
    source = Path(path).read_text()
    code = compile(source, path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, object] = {"__name__": "__main__"}
    result = eval(code, namespace)  # noqa: S307 (the project's own documentation examples)
    if inspect.iscoroutine(result):
        asyncio.run(result)


if __name__ == "__main__":
    main(sys.argv[1])
