"""Metrics across ``--workers N``: each worker publishes its counters to a shared folder, and
whichever worker answers ``/metrics`` reports the sum, so a scrape sees the whole service.

A worker writes its snapshot every second and on each scrape it answers; files of workers
that exited stay (their counts still happened), but their gauges are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from strongroom.core.logging import get_logger
from strongroom.core.metrics import LabelKey, Metrics

__all__ = ["METRICS_DIR_ENV", "SharedMetrics"]

METRICS_DIR_ENV = "STRONGROOM_METRICS_DIR"
log = get_logger("strongroom.server")


def _encode(series: dict[LabelKey, Any]) -> list[list[Any]]:
    return [[list(map(list, key)), value] for key, value in series.items()]


def _decode(rows: list[list[Any]]) -> dict[LabelKey, Any]:
    return {tuple(tuple(pair) for pair in key): value for key, value in rows}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedMetrics:
    def __init__(self, folder: Path, metrics: Metrics) -> None:
        self.folder = folder
        self.metrics = metrics
        self.pid = os.getpid()
        self._task: asyncio.Task[None] | None = None

    def publish(self) -> None:
        counters, gauges, histograms = self.metrics.snapshot()
        document = {
            "counters": {k: _encode(v) for k, v in counters.items()},
            "gauges": {k: _encode(v) for k, v in gauges.items()},
            "histograms": {k: _encode(v) for k, v in histograms.items()},
        }
        target = self.folder / f"{self.pid}.json"
        temp = target.with_suffix(".tmp")
        temp.write_text(json.dumps(document))
        temp.replace(target)

    def combined(self) -> Metrics:
        """Every worker's metrics summed into one (this worker's as of now)."""
        self.publish()
        total = Metrics()
        for path in self.folder.glob("*.json"):
            try:
                document = json.loads(path.read_text())
                pid = int(path.stem)
            except (OSError, ValueError):
                continue
            for name, rows in document.get("counters", {}).items():
                for key, value in _decode(rows).items():
                    total.counters[name][key] += value
            if _alive(pid):
                for name, rows in document.get("gauges", {}).items():
                    for key, value in _decode(rows).items():
                        total.gauges[name][key] = total.gauges[name].get(key, 0.0) + value
            for name, rows in document.get("histograms", {}).items():
                for key, row in _decode(rows).items():
                    have = total.histograms[name].get(key)
                    total.histograms[name][key] = (
                        list(row)
                        if have is None
                        else [a + b for a, b in zip(have, row, strict=True)]
                    )
        return total

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.publish()

    async def _run(self) -> None:
        while True:
            try:
                self.publish()
            except OSError as exc:
                log.warning("metrics not shared", error=type(exc).__name__)
            await asyncio.sleep(1.0)
