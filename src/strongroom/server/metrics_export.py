"""strongroom's in-process metrics in Prometheus' text format (via prometheus_client)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from strongroom.core.metrics import BUCKETS, LabelKey, Metrics

__all__ = ["render"]

#: Exported names and help texts; anything not listed is still exported, with a plain help.
HELP = {
    "operations": "Secret operations by audit action and result",
    "unauthorized_attempts": "Requests refused for a missing or bad token, or outside policy",
    "rate_limited": "Requests refused with 429 by the rate limit",
    "rotations": "Rotations attempted, by result",
    "rotation_seconds": "How long a rotation took",
    "revocations": "Revocations executed, by severity",
    "suspicious_activity_alerts": "Threats reported by detect_suspicious_activity",
    "audit_events": "Audit events committed",
    "audit_batches": "Audit group commits",
    "audit_write_failures": "Audit events that could not be committed",
    "audit_write_seconds": "Time to commit one audit batch",
    "audit_queue_depth": "Audit events waiting for the next batch",
    "notifications": "Notifications sent, by channel and result",
    "edge_online": "1 while an edge follows its upstream's change feed, else 0",
    "edge_offline_seconds": "Seconds an edge has been cut off from its upstream (0 online)",
    "edge_seconds_left": "Seconds before a cut-off edge refuses reads (its offline bound)",
    "edge_lag_seconds": "Seconds between an upstream change and the edge applying it (last)",
    "edge_events_applied": "Change feed events an edge applied since it started",
}


def _base(name: str) -> str:
    return name.removesuffix("_total")


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        counters, gauges, histograms = self.metrics.snapshot()
        kinds = ((CounterMetricFamily, counters), (GaugeMetricFamily, gauges))
        for kind, table in kinds:
            for name, series in sorted(table.items()):
                base = _base(name)
                family = kind(f"strongroom_{base}", HELP.get(base, base), labels=_labels(series))
                for key, value in series.items():
                    family.add_metric([v for _, v in key], value)
                yield family
        for name, hist_series in sorted(histograms.items()):
            hist = HistogramMetricFamily(
                f"strongroom_{name}", HELP.get(name, name), labels=_labels(hist_series)
            )
            for key, row in hist_series.items():
                running, buckets = 0.0, []
                for bound, count in zip(BUCKETS, row, strict=False):
                    running += count
                    buckets.append((repr(bound), running))
                buckets.append(("+Inf", row[-1]))
                hist.add_metric([v for _, v in key], buckets, row[-2])
            yield hist


def _labels(series: Mapping[LabelKey, object]) -> list[str]:
    for key in series:
        return [k for k, _ in key]
    return []


def render(metrics: Metrics) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    return generate_latest(registry)
