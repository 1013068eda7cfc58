"""Exposure of every secret from the audit log, and the rotation recommendations it yields."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from strongroom.core.rotation import policy_days
from strongroom.services.analytics.queries import analyse, threats_by_secret
from strongroom.services.analytics.recommend import Exposure, Recommendation, recommend
from strongroom.services.audit.threats import detect

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = ["DEFAULT_WINDOW_DAYS", "exposures", "recommendations"]

DEFAULT_WINDOW_DAYS = 90
#: Threat detections counted against a secret: those of the last day.
DETECTION_WINDOW_MINUTES = 24 * 60


async def recent_threats(app: Strongroom) -> list[dict[str, Any]]:
    if app.audit.store is None:
        return []
    found = await detect(
        app.audit.store,
        app.threat_rules,
        now=app.clock(),
        resource_name=None,
        actor_id=None,
        failure_threshold=5,
        window_minutes=DETECTION_WINDOW_MINUTES,
    )
    threats: list[dict[str, Any]] = found["threats"]
    return threats


async def exposures(
    app: Strongroom, *, window_days: int = DEFAULT_WINDOW_DAYS, names: set[str] | None = None
) -> list[Exposure]:
    """One :class:`Exposure` per live secret (or those in ``names``, lower-case)."""
    now = app.clock()
    rows = await analyse(app, "console_exposure", since=now - timedelta(days=window_days))
    by_name = {str(r["resource_name"]): r for r in rows}
    detections = threats_by_secret(await recent_threats(app))
    found = []
    for props in await app.store.list_secrets():
        key = props.name.lower()
        if names is not None and key not in names:
            continue
        row = by_name.get(key, {})
        found.append(
            Exposure(
                name=props.name,
                secret_type=props.secret_type.value,
                policy_days=policy_days(props.secret_type),
                window_days=window_days,
                readers=int(row.get("readers") or 0),
                addresses=int(row.get("addresses") or 0),
                reads=int(row.get("reads") or 0),
                refused=int(row.get("refused") or 0),
                detections=detections.get(key, 0),
                age_days=max(0, (now - props.created_at).days),
            )
        )
    return found


async def recommendations(
    app: Strongroom, *, window_days: int = DEFAULT_WINDOW_DAYS, names: set[str] | None = None
) -> list[Recommendation]:
    """Recommendations for every live secret, riskiest first."""
    found = [recommend(e) for e in await exposures(app, window_days=window_days, names=names)]
    return sorted(found, key=lambda r: (-r.score, r.recommended_days, r.name.lower()))
