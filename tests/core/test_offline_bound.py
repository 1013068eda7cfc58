"""The edge's offline bound (monotonic, pure) and the sync time it carries across restarts."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest

from strongroom.core.clock import ManualClock
from strongroom.core.errors import EdgeOfflineTooLongError
from strongroom.core.offline import OfflineBound
from strongroom.services.edge import EdgeState, in_scope


class Ticks:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_online_serves_and_offline_counts_from_the_last_moment_heard() -> None:
    ticks = Ticks()
    bound = OfflineBound(100, carried=0.0, monotonic=ticks)
    bound.mark_online()
    ticks.now += 1000  # online: time does not count
    bound.check()
    assert bound.offline_for() == 0
    bound.heard()
    ticks.now += 30  # silence before the loss is noticed counts too
    bound.mark_offline()
    assert bound.offline_for() == 30
    ticks.now += 70
    bound.check()  # exactly at the bound: still served
    assert bound.remaining() == 0
    ticks.now += 0.5
    with pytest.raises(EdgeOfflineTooLongError, match="past its bound of 100 s") as caught:
        bound.check()
    assert caught.value.code == "edge_offline_too_long"
    bound.mark_online()
    bound.check()


def test_a_replica_that_never_synchronised_serves_nothing() -> None:
    bound = OfflineBound(100, carried=None, monotonic=Ticks())
    assert math.isinf(bound.offline_for())
    with pytest.raises(EdgeOfflineTooLongError, match="not synchronised"):
        bound.check()


def test_time_down_before_a_restart_is_charged_against_the_bound() -> None:
    ticks = Ticks()
    bound = OfflineBound(100, carried=99.0, monotonic=ticks)
    bound.check()
    ticks.now += 2
    with pytest.raises(EdgeOfflineTooLongError):
        bound.check()


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        OfflineBound(0, carried=0.0)


def test_the_state_file_carries_the_last_sync_and_distrusts_a_clock_gone_back(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    state = EdgeState(tmp_path / "edge-state.json", clock)
    assert state.carried_offline() is None  # never synchronised
    state.record_sync()
    assert (tmp_path / "edge-state.json").stat().st_mode & 0o077 == 0
    clock.advance(seconds=90)
    assert state.carried_offline() == 90
    clock.now -= timedelta(seconds=120)  # the wall clock was set back
    assert state.carried_offline() is None
    (tmp_path / "edge-state.json").write_text("not json")
    assert state.carried_offline() is None


def test_scopes_are_globs_that_ignore_case() -> None:
    assert in_scope("Dispatch-North-Radio", ["dispatch-north-*"])
    assert not in_scope("dispatch-south-radio", ["dispatch-north-*"])
    assert in_scope("b", ["a*", "b"])
