"""A pytest plugin for mutation runs only (``-p structlog_reopen``).

mutmut runs the tests several times in one process and swaps ``sys.stderr`` for a buffer it
closes between runs; a test that configured structlog keeps printing to the closed buffer and
the next run fails on "I/O operation on closed file". Before each test, a logger factory left
on a closed file is pointed at the current ``sys.stderr`` again.
"""

from __future__ import annotations

import sys

import pytest
import structlog


def pytest_runtest_setup(item: pytest.Item) -> None:
    factory = structlog.get_config().get("logger_factory")
    file = getattr(factory, "_file", None)
    if file is not None and getattr(file, "closed", False):
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
