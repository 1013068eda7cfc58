"""Revocation's pure rules: the risk score of a request and what a request may contain."""

from __future__ import annotations

import pytest

from strongroom.core.errors import ValidationError
from strongroom.core.models import SecretType
from strongroom.core.revocation import (
    RevocationReason,
    RevocationRequest,
    Severity,
    assess_risk,
    parse_reason,
)


def test_the_risk_score_adds_up_its_factors() -> None:
    risk = assess_risk(Severity.HIGH, SecretType.DATABASE_CREDENTIAL, 2, 1)
    assert risk.factors == {"severity": 40, "secret_type": 15, "readers": 6, "in_use": 15}
    assert (risk.score, risk.level) == (76, "high")
    quiet = assess_risk(Severity.LOW, SecretType.GENERIC, 0, 0)
    assert quiet.factors == {"severity": 10, "secret_type": 5, "readers": 0, "in_use": 0}
    assert (quiet.score, quiet.level) == (15, "low")


def test_readers_count_three_points_each_up_to_fifteen() -> None:
    readers = [
        assess_risk(Severity.LOW, SecretType.GENERIC, n, 0).factors["readers"]
        for n in (1, 5, 6, 50)
    ]
    assert readers == [3, 15, 15, 15]


@pytest.mark.parametrize(("reads", "points"), [(0, 0), (1, 15), (2, 15)])
def test_a_secret_read_in_the_last_hour_counts_as_in_use(reads: int, points: int) -> None:
    assert assess_risk(Severity.LOW, SecretType.GENERIC, 0, reads).factors["in_use"] == points


@pytest.mark.parametrize(
    ("severity", "secret_type", "readers", "reads", "score", "level"),
    [
        (Severity.CRITICAL, SecretType.API_KEY, 0, 1, 80, "critical"),
        (Severity.CRITICAL, SecretType.DATABASE_CREDENTIAL, 3, 0, 79, "high"),
        (Severity.HIGH, SecretType.GENERIC, 0, 1, 60, "high"),
        (Severity.HIGH, SecretType.API_KEY, 3, 0, 59, "medium"),
        (Severity.MEDIUM, SecretType.API_KEY, 0, 0, 35, "medium"),
        (Severity.LOW, SecretType.DATABASE_CREDENTIAL, 3, 0, 34, "low"),
        (Severity.CRITICAL, SecretType.ENCRYPTION_KEY, 9, 9, 100, "critical"),
    ],
)
def test_risk_levels_start_at_35_60_and_80(
    severity: Severity, secret_type: SecretType, readers: int, reads: int, score: int, level: str
) -> None:
    risk = assess_risk(severity, secret_type, readers, reads)
    assert (risk.score, risk.level) == (score, level)


def test_an_unknown_reason_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as refused:
        parse_reason("boredom")
    assert "one of " + ", ".join(r.value for r in RevocationReason) in str(refused.value)


def request(**changes: object) -> RevocationRequest:
    fields: dict[str, object] = {
        "secret_name": "fleet-db",
        "reason": "key_compromise",
        "requested_by": "alice",
    }
    return RevocationRequest(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("requested_by", ["a", "a" * 256])
def test_who_asks_is_one_to_256_characters(requested_by: str) -> None:
    assert request(requested_by=requested_by).validated().requested_by == requested_by


@pytest.mark.parametrize("requested_by", ["", "a" * 257, None])
def test_who_asks_must_be_named(requested_by: object) -> None:
    with pytest.raises(ValidationError, match="requested_by must name who asks"):
        request(requested_by=requested_by).validated()


def test_who_asks_is_text_without_nul() -> None:
    with pytest.raises(ValidationError, match="requested_by must be valid Unicode"):
        request(requested_by="al\x00ice").validated()


def test_the_description_holds_up_to_4000_characters() -> None:
    assert len(request(description="d" * 4000).validated().description) == 4000
    with pytest.raises(ValidationError, match="description must be text of at most 4000"):
        request(description="d" * 4001).validated()


def test_plain_addresses_are_kept() -> None:
    longest = "a" * 242 + "@example.org"
    assert len(longest) == 254
    recipients = ["sec@example.org", "Xavier.X@example.org", longest]
    assert request(notify_recipients=recipients).validated().notify_recipients == recipients


@pytest.mark.parametrize(
    "address",
    [
        "sec.example.org",
        "a@b@example.org",
        *(f"sec{c}x@example.org" for c in "\r\n\x00 ,<>"),
        "a" * 243 + "@example.org",
        12345,
    ],
)
def test_anything_but_a_plain_address_is_refused(address: object) -> None:
    with pytest.raises(ValidationError, match="plain e-mail addresses"):
        request(notify_recipients=["ok@example.org", address]).validated()
