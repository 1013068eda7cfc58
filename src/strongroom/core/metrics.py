"""In-process counters and gauges (exported in Prometheus format by the HTTP service)."""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["BUCKETS", "LabelKey", "Metrics"]

#: Histogram bucket bounds in seconds (Prometheus' defaults, plus finer ones below 5 ms).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0)  # fmt: skip

LabelKey = tuple[tuple[str, str], ...]


class Metrics:
    """Counters, gauges and summed durations keyed by name and labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[LabelKey, float]] = defaultdict(lambda: defaultdict(float))
        self.gauges: dict[str, dict[LabelKey, float]] = defaultdict(dict)
        #: name -> labels -> [count per bucket (cumulative at export)..., sum, count]
        self.histograms: dict[str, dict[LabelKey, list[float]]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.add(name, tuple(sorted(labels.items())) if labels else (), amount)

    def add(self, name: str, key: LabelKey, amount: float = 1.0) -> None:
        """:meth:`inc` with its labels already as a key (sorted pairs): for a caller that counts
        on every request and builds each key once."""
        with self._lock:
            self.counters[name][key] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self.gauges[name][key] = value

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Add one observation (seconds) to a histogram with :data:`BUCKETS`."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            row = self.histograms[name].get(key)
            if row is None:
                row = self.histograms[name][key] = [0.0] * (len(BUCKETS) + 2)
            for i, bound in enumerate(BUCKETS):
                if value <= bound:
                    row[i] += 1
                    break
            row[-2] += value
            row[-1] += 1

    def snapshot(
        self,
    ) -> tuple[
        dict[str, dict[LabelKey, float]],
        dict[str, dict[LabelKey, float]],
        dict[str, dict[LabelKey, list[float]]],
    ]:
        """Copies of the counters, gauges and histograms (for an exporter)."""
        with self._lock:
            return (
                {k: dict(v) for k, v in self.counters.items()},
                {k: dict(v) for k, v in self.gauges.items()},
                {k: {lk: list(row) for lk, row in v.items()} for k, v in self.histograms.items()},
            )

    def value(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        with self._lock:
            if name in self.gauges and key in self.gauges[name]:
                return self.gauges[name][key]
            return self.counters.get(name, {}).get(key, 0.0)
