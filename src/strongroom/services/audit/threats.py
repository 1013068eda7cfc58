"""Threat detection over the audit log: aggregation in SQL, rules as pure functions.

Each rule asks the store for a small aggregate (grouped and filtered in SQL, so a million
events cost one indexed scan per rule) and turns the rows into threats here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from strongroom.core.errors import ConfigurationError, ValidationError
from strongroom.db.audit_store import AuditStore

__all__ = ["ThreatRules", "detect", "rate_anomaly", "severity_for_failures"]


@dataclass(frozen=True, slots=True)
class ThreatRules:
    """What counts as suspicious. Every rule can be switched off or tuned."""

    failure_bursts: bool = True
    ip_failure_threshold: int | None = None  # defaults to the call's failure_threshold
    unavailable_access: bool = True
    enumeration_resources: int | None = 50  # distinct secrets one actor touches in the window
    enumeration_not_found: int | None = 10  # distinct missing names one actor asks for
    new_origin: bool = True
    new_origin_baseline_days: int = 30
    new_origin_min_history: int = 20  # events before the window that make a history
    business_hours: tuple[int, int] | None = None  # e.g. (7, 19); None: rule off (24/7 ops)
    business_timezone: str = "UTC"
    business_days: frozenset[int] = field(default_factory=lambda: frozenset(range(5)))
    rate_factor: float | None = 10.0
    rate_min_events: int = 100
    rate_baseline_days: int = 7

    def __post_init__(self) -> None:
        if self.business_hours is not None:
            start, end = self.business_hours
            if not (0 <= start < end <= 24):
                raise ConfigurationError(
                    "business hours must be (start, end) with 0<=start<end<=24"
                )
            try:
                ZoneInfo(self.business_timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigurationError(
                    f"unknown business time zone {self.business_timezone!r}"
                ) from None


def severity_for_failures(count: int, threshold: int) -> str:
    if count >= threshold * 4:
        return "critical"
    if count >= threshold * 2:
        return "high"
    return "medium"


def rate_anomaly(
    window_count: int,
    baseline_count: int,
    window: timedelta,
    history: timedelta,
    rules: ThreatRules,
) -> float | None:
    """How many times above its own baseline rate an actor is, when that is suspicious.

    ``history`` is how long the baseline really covers (an actor seen for two hours has two
    hours of baseline, not seven days); less history than one window is no baseline at all.
    """
    if (
        rules.rate_factor is None
        or baseline_count <= 0
        or window_count < rules.rate_min_events
        or history < window
    ):
        return None
    expected = baseline_count * (window / history)
    ratio = window_count / max(expected, 1.0)
    return ratio if ratio >= rules.rate_factor else None


def _threat(kind: str, severity: str, row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "severity": severity,
        "actor_id": row.get("actor_id"),
        "actor_ip": row.get("actor_ip"),
        "resource_name": row.get("resource_name"),
        "count": int(row.get("count") or 0),
        "first_seen": row.get("first_seen"),
        "last_seen": row.get("last_seen"),
        "evidence": extra,
    }


async def detect(
    store: AuditStore,
    rules: ThreatRules,
    *,
    now: datetime,
    resource_name: str | None,
    actor_id: str | None,
    failure_threshold: int,
    window_minutes: int,
) -> dict[str, Any]:
    for label, number in (("failure_threshold", failure_threshold),
                          ("time_window_minutes", window_minutes)):  # fmt: skip
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValidationError(f"{label} must be a whole number of at least 1")
    window = timedelta(minutes=window_minutes)
    since = now - window
    jobs = _plan(rules, since, resource_name, actor_id, failure_threshold)
    baseline = timedelta(days=rules.rate_baseline_days)
    names = list(jobs)
    results = await asyncio.gather(*(store.analyse(name, jobs[name]) for name in names))
    rows = dict(zip(names, results, strict=True))

    threats = _failure_threats(rows, jobs, failure_threshold)
    for row in rows.get("unavailable_access", []):
        severity = "critical" if row["error_code"] == "revoked" else "high"
        threats.append(
            _threat("unavailable_secret_access", severity, row, error_code=row["error_code"])
        )
    for row in rows.get("enumeration", []):
        threats.append(
            _threat(
                "enumeration",
                "high",
                row,
                distinct_resources=row["resources"],
                distinct_not_found=row["not_found"],
            )
        )
    for kind, name in (("new_ip", "new_ip"), ("new_user_agent", "new_user_agent")):
        for row in rows.get(name, []):
            threats.append(
                _threat(
                    kind,
                    "medium",
                    {**row, "actor_ip": row["origin"] if kind == "new_ip" else None},
                    origin=row["origin"],
                    baseline_days=rules.new_origin_baseline_days,
                )
            )
    if rules.business_hours is not None:
        threats.extend(_off_hours(rows.get("hourly", []), rules))
    for row in rows.get("rates", []):
        first_seen = row["first_seen"]
        history = since - max(since - baseline, first_seen) if first_seen else timedelta(0)
        ratio = rate_anomaly(
            int(row["window_count"]), int(row["baseline_count"]), window, history, rules
        )
        if ratio is not None:
            threats.append(
                _threat(
                    "rate_anomaly",
                    "high" if ratio >= rules.rate_factor * 5 else "medium",  # type: ignore[operator]
                    {**row, "count": row["window_count"]},
                    ratio=round(ratio, 1),
                    baseline_events=int(row["baseline_count"]),
                    baseline_days=rules.rate_baseline_days,
                )
            )
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    threats.sort(key=lambda t: (order[t["severity"]], -t["count"]))
    return {
        "threats_detected": len(threats),
        "threats": threats,
        "window": {"since": since, "until": now, "minutes": window_minutes},
        "resource_name": resource_name,
        "actor_id": actor_id,
        "failure_threshold": failure_threshold,
    }


def _plan(
    rules: ThreatRules,
    since: datetime,
    resource_name: str | None,
    actor_id: str | None,
    failure_threshold: int,
) -> dict[str, dict[str, Any]]:
    """Which analyses to run, with their parameters."""
    scope = {"resource_name": resource_name, "actor_id": actor_id, "since": since}
    jobs: dict[str, dict[str, Any]] = {}
    if rules.failure_bursts:
        jobs["failures_by_actor"] = {**scope, "threshold": failure_threshold}
        ip_threshold = rules.ip_failure_threshold or failure_threshold
        jobs["failures_by_ip"] = {**scope, "threshold": ip_threshold}
    if rules.unavailable_access:
        jobs["unavailable_access"] = scope
    if rules.enumeration_resources is not None or rules.enumeration_not_found is not None:
        jobs["enumeration"] = {
            **scope,
            "max_resources": rules.enumeration_resources or 2**31,
            "max_not_found": rules.enumeration_not_found or 2**31,
        }
    if rules.new_origin:
        history = {
            **scope,
            "baseline": since - timedelta(days=rules.new_origin_baseline_days),
            "min_history": rules.new_origin_min_history,
        }
        jobs["new_ip"] = history
        jobs["new_user_agent"] = history
    if rules.business_hours is not None:
        jobs["hourly"] = scope
    if rules.rate_factor is not None:
        jobs["rates"] = {**scope, "baseline": since - timedelta(days=rules.rate_baseline_days)}
    return jobs


def _failure_threats(
    rows: dict[str, list[dict[str, Any]]], jobs: dict[str, dict[str, Any]], threshold: int
) -> list[dict[str, Any]]:
    threats: list[dict[str, Any]] = []
    for row in rows.get("failures_by_actor", []):
        threats.append(
            _threat(
                "failure_burst_actor",
                severity_for_failures(row["count"], threshold),
                {**row, "actor_id": row["key"]},
                distinct_resources=row["resources"],
                threshold=threshold,
            )
        )
    for row in rows.get("failures_by_ip", []):
        threats.append(
            _threat(
                "failure_burst_ip",
                severity_for_failures(row["count"], jobs["failures_by_ip"]["threshold"]),
                {**row, "actor_ip": row["key"]},
                distinct_actors=row["actors"],
                threshold=jobs["failures_by_ip"]["threshold"],
            )
        )
    return threats


def _off_hours(rows: list[dict[str, Any]], rules: ThreatRules) -> list[dict[str, Any]]:
    """Events outside business hours in the configured zone, per actor."""
    assert rules.business_hours is not None  # noqa: S101 (caller checked)
    zone = ZoneInfo(rules.business_timezone)
    start, end = rules.business_hours
    per_actor: dict[str, dict[str, Any]] = {}
    for row in rows:
        hour: datetime = row["hour"]
        local = hour.astimezone(zone) if hour.tzinfo else hour.replace(tzinfo=UTC).astimezone(zone)
        if local.weekday() in rules.business_days and start <= local.hour < end:
            continue
        entry = per_actor.setdefault(
            row["actor_id"],
            {"actor_id": row["actor_id"], "actor_ip": row.get("actor_ip"), "count": 0, "hours": []},
        )
        entry["count"] += int(row["count"])
        entry["hours"].append(local.isoformat())
    return [
        _threat(
            "off_hours_access",
            "low",
            entry,
            business_hours=list(rules.business_hours),
            timezone=rules.business_timezone,
            hours=sorted(entry["hours"])[:24],
        )
        for entry in per_actor.values()
    ]
