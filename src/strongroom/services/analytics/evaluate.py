"""Evaluate the recommender on generated histories whose risk level is known.

Each generated secret gets a level (low, medium, high, critical) and an audit history drawn
from that level's profile: how many identities read it, from how many addresses, how many
refused attempts, whether someone kept reading it after it was disabled. The histories go into
the real audit log, the recommender reads them back through the same SQL the console uses,
and ``agreement`` is the share of secrets whose recommended level equals the generated one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from strongroom.core.audit import AuditEvent
from strongroom.core.models import SecretType
from strongroom.services.analytics.exposure import recommendations
from strongroom.services.analytics.recommend import RiskLevel

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = ["PROFILES", "Evaluation", "evaluate"]

# (readers, addresses, refused, unavailable reads in the last day): inclusive ranges.
PROFILES: dict[RiskLevel, tuple[tuple[int, int], ...]] = {
    RiskLevel.LOW: ((1, 2), (1, 3), (0, 0), (0, 0)),
    RiskLevel.MEDIUM: ((3, 8), (1, 5), (0, 1), (0, 0)),
    RiskLevel.HIGH: ((9, 16), (3, 9), (1, 4), (0, 0)),
    RiskLevel.CRITICAL: ((5, 20), (4, 20), (3, 12), (1, 3)),
}
WINDOW_DAYS = 30


@dataclass(frozen=True, slots=True)
class Evaluation:
    secrets: int
    agreement: float
    confusion: dict[str, dict[str, int]]
    within_one_level: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "secrets": self.secrets,
            "agreement": round(self.agreement, 4),
            "within_one_level": round(self.within_one_level, 4),
            "confusion": self.confusion,
        }


def _history(
    rng: random.Random, name: str, level: RiskLevel, now: Any, index: int
) -> list[AuditEvent]:
    readers_r, addresses_r, refused_r, unavailable_r = PROFILES[level]
    readers = rng.randint(*readers_r)
    addresses = rng.randint(*addresses_r)
    events = []
    for k in range(max(readers, addresses) * 2):
        events.append(AuditEvent.build(
            action="READ", resource_name=name, result="SUCCESS",
            timestamp=now - timedelta(minutes=rng.randint(60, WINDOW_DAYS * 24 * 60 - 60)),
            actor_id=f"svc-{index}-{k % readers}",
            actor_ip=f"10.{index % 250}.{index // 250}.{1 + k % addresses}",
        ))  # fmt: skip
    for _ in range(rng.randint(*refused_r)):
        events.append(AuditEvent.build(
            action="READ", resource_name=name, result="FAILURE", error_code="forbidden",
            timestamp=now - timedelta(minutes=rng.randint(60, WINDOW_DAYS * 24 * 60 - 60)),
            actor_id=f"intruder-{rng.randint(1, 5)}", actor_ip=f"203.0.113.{rng.randint(1, 254)}",
        ))  # fmt: skip
    for _ in range(rng.randint(*unavailable_r)):
        events.append(AuditEvent.build(
            action="READ", resource_name=name, result="FAILURE", error_code="disabled",
            timestamp=now - timedelta(minutes=rng.randint(5, 600)),
            actor_id=f"svc-{index}-0", actor_ip="198.51.100.7",
        ))  # fmt: skip
    return events


async def evaluate(app: Strongroom, *, per_level: int = 25, seed: int = 7) -> Evaluation:
    """Generate ``per_level`` secrets of each level into ``app`` (an empty store), then compare
    the recommender's levels with the generated ones."""
    from strongroom.services.secrets.secrets_manager import SecretsManager  # noqa: PLC0415

    assert app.audit.store is not None  # noqa: S101 (an evaluation needs the audit log)
    rng = random.Random(seed)  # noqa: S311 (test data, not a secret)
    manager = SecretsManager(app)
    now = app.clock()
    labels: dict[str, RiskLevel] = {}
    events: list[AuditEvent] = []
    for level in RiskLevel:
        for i in range(per_level):
            name = f"eval-{level.value}-{i}"
            index = len(labels)
            await manager.create_secret(name, "x" * 16, SecretType.API_KEY)
            labels[name] = level
            events += _history(rng, name, level, now, index)
    events.sort(key=lambda e: e.timestamp)
    for start in range(0, len(events), 1000):
        await app.audit.store.append(events[start : start + 1000], app.audit.key)
    found = await recommendations(app, window_days=WINDOW_DAYS, names=set(labels))
    order = list(RiskLevel)
    confusion = {a.value: {b.value: 0 for b in order} for a in order}
    hits = near = 0
    for rec in found:
        truth = labels[rec.name]
        confusion[truth.value][rec.level.value] += 1
        hits += rec.level is truth
        near += abs(order.index(rec.level) - order.index(truth)) <= 1
    total = len(found)
    return Evaluation(total, hits / total, confusion, near / total)
