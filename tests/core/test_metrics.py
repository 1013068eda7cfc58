"""In-process counters: amounts add up, labels name one series whatever their order."""

from __future__ import annotations

from strongroom.core.metrics import Metrics


def test_counters_add_their_amounts_per_series() -> None:
    metrics = Metrics()
    metrics.inc("events_total")
    metrics.inc("events_total", 3)
    metrics.inc("operations_total", 2, action="READ", result="SUCCESS")
    metrics.inc("operations_total", result="SUCCESS", action="READ")
    metrics.add("operations_total", (("action", "READ"), ("result", "SUCCESS")), 4)
    metrics.add("operations_total", (("action", "READ"), ("result", "FAILURE")))
    assert metrics.value("events_total") == 4
    assert metrics.value("operations_total", action="READ", result="SUCCESS") == 7
    assert metrics.value("operations_total", result="FAILURE", action="READ") == 1
    assert metrics.value("operations_total") == 0  # no labels: another series
    assert metrics.value("nothing_total") == 0
