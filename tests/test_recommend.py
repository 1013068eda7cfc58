"""Rotation recommendations: pure rules, each factor explained; and their agreement with
generated histories of known risk, read back through the real audit log."""

from __future__ import annotations

import pytest

from strongroom import Strongroom
from strongroom.services.analytics.evaluate import evaluate
from strongroom.services.analytics.recommend import Exposure, RiskLevel, recommend


def exposure(**changes: int) -> Exposure:
    base = {"readers": 1, "addresses": 1, "reads": 30, "refused": 0, "detections": 0,
            "age_days": 10}  # fmt: skip
    base.update(changes)
    return Exposure(name="k", secret_type="api_key", policy_days=90, window_days=90, **base)


def test_a_quiet_secret_keeps_its_policy() -> None:
    rec = recommend(exposure())
    assert (rec.recommended_days, rec.level, rec.factors) == (90, RiskLevel.LOW, ())


def test_each_exposure_factor_shortens_and_says_why() -> None:
    wide = recommend(exposure(readers=12, addresses=15))
    assert wide.recommended_days == 27  # 90 x 0.5 x 0.6
    assert [f.name for f in wide.factors] == ["readers", "addresses"]
    assert "12 distinct identities" in wide.factors[0].reason
    assert wide.level is RiskLevel.HIGH


def test_never_longer_than_policy_nor_below_the_floor() -> None:
    worst = recommend(exposure(readers=50, addresses=50, reads=900_000, refused=5))
    assert 7 <= worst.recommended_days < 90
    short = Exposure(name="j", secret_type="jwt_secret", policy_days=30, window_days=90)
    assert recommend(short).recommended_days == 30


def test_an_attacked_secret_rotates_now() -> None:
    rec = recommend(exposure(detections=1))
    assert rec.rotate_now
    assert rec.recommended_days == 1
    assert rec.level in (RiskLevel.HIGH, RiskLevel.CRITICAL)
    assert rec.factors[-1].name == "rotate_now"


def test_an_old_version_is_flagged_due() -> None:
    rec = recommend(exposure(readers=12, age_days=60))
    assert any(f.name == "age" for f in rec.factors)


@pytest.mark.stores("sqlite", "postgres")
async def test_agreement_on_generated_histories(app: Strongroom) -> None:
    result = await evaluate(app, per_level=12, seed=11)
    assert result.secrets == 48
    assert result.agreement >= 0.8
    assert result.within_one_level == 1.0
    # Every generated critical secret is recommended critical: attacks are never missed.
    assert result.confusion["critical"]["critical"] == 12
