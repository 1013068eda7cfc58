"""In-process counters and gauges (exported in Prometheus format by the HTTP service)."""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["Metrics"]

LabelKey = tuple[tuple[str, str], ...]


class Metrics:
    """Counters, gauges and summed durations keyed by name and labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[LabelKey, float]] = defaultdict(lambda: defaultdict(float))
        self.gauges: dict[str, dict[LabelKey, float]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self.counters[name][key] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self.gauges[name][key] = value

    def value(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            if name in self.gauges and key in self.gauges[name]:
                return self.gauges[name][key]
            return self.counters.get(name, {}).get(key, 0.0)
