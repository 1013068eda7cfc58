"""Rotation intervals recommended from a secret's exposure (pure: no I/O).

Start from the type's policy (the seed's: API keys 90 days, database credentials 60, JWT
secrets 30, anything else 90) and shorten it for each sign of exposure: many distinct readers or
addresses, a high read rate, refused attempts against it, threat detections. Each factor that
moved the interval is listed with its multiplier, so every recommendation explains itself.
A recommendation is never longer than the policy: the policy is the compliance ceiling.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Exposure", "Factor", "Recommendation", "RiskLevel", "recommend"]

#: The shortest interval recommended for a secret that is merely exposed (a detection or a
#: refused burst can bring it to 1 day: rotate now).
MIN_DAYS = 7


class RiskLevel(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Exposure:
    """What the audit log says about one secret over ``window_days``."""

    name: str
    secret_type: str
    policy_days: int
    window_days: int
    readers: int = 0
    addresses: int = 0
    reads: int = 0
    refused: int = 0
    detections: int = 0
    age_days: int = 0


@dataclass(frozen=True, slots=True)
class Factor:
    """One reason the interval moved: ``multiplier`` < 1 shortens it."""

    name: str
    multiplier: float
    reason: str
    points: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "factor": self.name,
            "multiplier": self.multiplier,
            "reason": self.reason,
            "points": self.points,
        }


@dataclass(frozen=True, slots=True)
class Recommendation:
    name: str
    secret_type: str
    policy_days: int
    recommended_days: int
    score: int
    level: RiskLevel
    rotate_now: bool
    factors: tuple[Factor, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "secret_type": self.secret_type,
            "policy_days": self.policy_days,
            "recommended_days": self.recommended_days,
            "score": self.score,
            "level": self.level.value,
            "rotate_now": self.rotate_now,
            "factors": [f.to_dict() for f in self.factors],
        }


# (threshold, multiplier, points) from the strongest down: the first threshold met applies.
_READERS = ((10, 0.5, 30), (4, 0.75, 15), (2, 0.9, 5))
_ADDRESSES = ((10, 0.6, 25), (4, 0.8, 10))
_READS_PER_DAY = ((1000, 0.8, 10), (100, 0.9, 5))
_REFUSED = ((10, 0.4, 35), (3, 0.6, 20), (1, 0.8, 10))
_DETECTIONS = ((3, 0.2, 50), (1, 0.35, 40))


def _step(value: float, table: tuple[tuple[float, float, int], ...]) -> tuple[float, int] | None:
    for threshold, multiplier, points in table:
        if value >= threshold:
            return multiplier, points
    return None


def level_for(score: int) -> RiskLevel:
    if score >= 70:
        return RiskLevel.CRITICAL
    if score >= 40:
        return RiskLevel.HIGH
    if score >= 15:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW


def recommend(exposure: Exposure) -> Recommendation:
    """The interval for one secret, with the factors that moved it."""
    factors: list[Factor] = []
    per_day = exposure.reads / max(1, exposure.window_days)
    checks = (
        ("readers", exposure.readers, _READERS,
         f"{exposure.readers} distinct identities read it in {exposure.window_days} days"),
        ("addresses", exposure.addresses, _ADDRESSES,
         f"read from {exposure.addresses} distinct addresses"),
        ("read_rate", per_day, _READS_PER_DAY, f"{per_day:,.0f} reads a day"),
        ("refused", exposure.refused, _REFUSED,
         f"{exposure.refused} refused or unauthorized attempts against it"),
        ("detections", exposure.detections, _DETECTIONS,
         f"{exposure.detections} threat detections name it"),
    )  # fmt: skip
    for name, value, table, reason in checks:
        hit = _step(value, table)
        if hit is not None:
            factors.append(Factor(name, hit[0], reason, hit[1]))
    score = min(100, sum(f.points for f in factors))
    multiplier = math.prod(f.multiplier for f in factors)
    policy = exposure.policy_days
    days = max(min(MIN_DAYS, policy), min(policy, math.floor(policy * multiplier)))
    rotate_now = exposure.detections > 0 or exposure.refused >= _REFUSED[0][0]
    if rotate_now:
        days = 1
        factors.append(Factor("rotate_now", 0.0, "attacked: rotate now, then shorten", 0))
    if exposure.age_days >= days and not rotate_now:
        factors.append(
            Factor("age", 1.0, f"current version is {exposure.age_days} days old: due now", 0)
        )
    return Recommendation(
        name=exposure.name,
        secret_type=exposure.secret_type,
        policy_days=policy,
        recommended_days=days,
        score=score,
        level=level_for(score),
        rotate_now=rotate_now,
        factors=tuple(factors),
    )
