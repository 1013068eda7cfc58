"""Rotation's pure rules: what a configuration may hold and how long a failed rotation waits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from strongroom.core.errors import ValidationError
from strongroom.core.rotation import MAX_ATTEMPT_DELAY, RotationConfig, retry_delay

LIMITS = {
    "rotation_days": (1, 3650),
    "rotation_hours_before_expiry": (0, 8760),
    "grace_period_hours": (0, 8760),
}


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_each_period_is_accepted_at_both_ends(field: str) -> None:
    for value in LIMITS[field]:
        RotationConfig(name="fleet-db", **{field: value}).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("field", sorted(LIMITS))
def test_each_period_is_refused_past_its_ends_and_named(field: str) -> None:
    low, high = LIMITS[field]
    for value in (low - 1, high + 1, True, 1.5):
        with pytest.raises(ValidationError) as refused:
            RotationConfig(name="fleet-db", **{field: value}).validate()  # type: ignore[arg-type]
        assert str(refused.value) == f"{field} must be a whole number from {low} to {high}"


def test_the_description_holds_up_to_1024_characters() -> None:
    RotationConfig(name="fleet-db", description="d" * 1024).validate()
    with pytest.raises(ValidationError, match="description must be text of at most 1024"):
        RotationConfig(name="fleet-db", description="d" * 1025).validate()


def test_a_failed_rotation_waits_longer_each_time_up_to_the_cap() -> None:
    assert retry_delay(0) == timedelta(0)
    assert [retry_delay(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert retry_delay(1000) == MAX_ATTEMPT_DELAY
