"""The reliability suite: real faults against a real service, and the figures they leave.

Every scenario records its figures in ``figures`` (a session-wide table), printed at the end of
the run. ``make chaos`` runs the full scenarios (``STRONGROOM_CHAOS=full``: at least five
``kill -9`` per store, ten PostgreSQL backend terminations, ...); ``make test`` runs the same
scenarios at a small size, so CI keeps them working without paying for the full run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

FULL = os.environ.get("STRONGROOM_CHAOS") == "full"


def size(sample: int, full: int) -> int:
    """How many times a scenario repeats: ``full`` under ``make chaos``, else ``sample``."""
    return full if FULL else sample


@dataclass
class Figure:
    scenario: str
    store: str
    figure: str
    value: str
    target: str
    ok: bool


@dataclass
class Figures:
    rows: list[Figure] = field(default_factory=list)

    def add(
        self, scenario: str, store: str, figure: str, value: object, target: str, ok: bool
    ) -> None:
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        self.rows.append(Figure(scenario, store, figure, shown, target, ok))

    def table(self) -> str:
        lines = [
            "| scenario | store | figure | measured | target | |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            mark = "PASS" if r.ok else "**MISS**"
            lines.append(
                f"| {r.scenario} | {r.store} | {r.figure} | {r.value} | {r.target} | {mark} |"
            )
        return "\n".join(lines)


_FIGURES = Figures()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _FIGURES


#: Scenarios only ``make chaos`` runs: what they guard is tested elsewhere in the suite
#: (tests/server/test_connection_limits.py, tests/cli/test_serve_openapi_fuzz.py); here they
#: measure, which CI need not repeat.
FULL_ONLY = ("test_slow_clients.py", "test_fuzz.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = []
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        if "tests/chaos/" not in path:
            continue
        item.add_marker(pytest.mark.slow)
        item.add_marker(pytest.mark.chaos)
        if not FULL and path.endswith(FULL_ONLY):
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES.rows:
        return
    mode = "full" if FULL else "sample (make chaos runs the full scenarios)"
    terminalreporter.write_sep("=", f"reliability figures: {mode}")
    terminalreporter.write_line(_FIGURES.table())
    report = os.environ.get("STRONGROOM_CHAOS_REPORT")
    if report:
        with open(report, "w", encoding="utf-8") as out:
            out.write(_FIGURES.table() + "\n")
