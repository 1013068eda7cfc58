"""Everything a compliance report states, collected for one period.

Sections: rotation compliance per secret with its rotation events as evidence; access review
(who can read what, who did, grants and tokens never used, tokens that never expire, wildcard
grants); revocations with their approval chains; break-glass uses; unauthorized attempts and
threat detections; audit integrity (the chain check and its head hash).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strongroom import __version__
from strongroom.core.actor import current_actor
from strongroom.core.audit import AuditAction
from strongroom.core.errors import ValidationError
from strongroom.core.policy import Action
from strongroom.services.analytics.lifecycle import token_usage
from strongroom.services.analytics.queries import analyse
from strongroom.services.audit.secrets_audit import SecretsAudit
from strongroom.services.audit.threats import detect
from strongroom.services.reports.frameworks import CONTROLS, TITLES, Framework
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke
from strongroom.services.rotation.secrets_rotation import SecretsRotation

if TYPE_CHECKING:
    from strongroom.services.wiring import Strongroom

__all__ = ["MAX_PERIOD_DAYS", "collect"]

MAX_PERIOD_DAYS = 3660
_TRAIL_PAGE = 10_000
_UNAUTHORIZED_ROWS = 1_000
#: One bound parameter per audit action a grant can show itself by (see console_grant_used).
_SLOTS = "abcdefghij"
#: "Who did read what": the most-read (identity, secret) pairs; every reader has a total.
DID_READ_ROWS = 10_000
#: Audit actions that show a grant's action was used on a secret.
USES: dict[Action, frozenset[str]] = {
    Action.READ: frozenset({"READ"}),
    Action.LIST: frozenset({"LIST", "DESCRIBE"}),
    Action.WRITE: frozenset({"CREATE", "UPDATE", "RECOVER"}),
    Action.DELETE: frozenset({"DELETE", "PURGE"}),
    Action.ROTATE: frozenset({"ROTATE", "UPDATE"}),
    Action.REVOKE_REQUEST: frozenset({"REVOKE"}),
    Action.REVOKE_APPROVE: frozenset({"REVOKE"}),
}


async def collect(
    app: Strongroom, framework: Framework | str, since: datetime, until: datetime
) -> dict[str, Any]:
    """The report's content for ``since <= t < until`` (plain data, times as datetimes)."""
    try:
        framework = Framework(framework)
    except ValueError:
        known = ", ".join(f.value for f in Framework)
        raise ValidationError(f"unknown framework; known: {known}") from None
    if since.tzinfo is None or until.tzinfo is None or not since < until:
        raise ValidationError("a report period is two timezone-aware times, from before to")
    if until - since > timedelta(days=MAX_PERIOD_DAYS):
        raise ValidationError(f"a report period is at most {MAX_PERIOD_DAYS} days")
    audit = SecretsAudit(app)
    rotation, access, revocations, unauthorized, integrity = await asyncio.gather(
        _rotation(app, audit, since, until),
        _access(app, since, until),
        _revocations(app, since, until),
        _unauthorized(app, since, until),
        _integrity(app, audit),
    )
    return {
        "meta": {
            "framework": framework.value,
            "framework_title": TITLES[framework],
            "controls": CONTROLS[framework],
            "from": since,
            "to": until,
            "generated_at": app.clock(),
            "generated_by": current_actor().id,
            "profile": app.profile,
            "strongroom_version": __version__,
        },
        "rotation": rotation,
        "access": access,
        "revocations": revocations,
        "unauthorized": unauthorized,
        "integrity": integrity,
    }


async def _rotation_events(
    audit: SecretsAudit, since: datetime, until: datetime
) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    offset = 0
    while True:
        page = await audit.get_audit_trail(
            None, AuditAction.ROTATE, _TRAIL_PAGE, since=since, until=until, offset=offset
        )
        for event in page:
            found.setdefault(str(event["resource_name"]), []).append(event)
        if len(page) < _TRAIL_PAGE:
            return found
        offset += _TRAIL_PAGE


async def _rotation(
    app: Strongroom, audit: SecretsAudit, since: datetime, until: datetime
) -> dict[str, Any]:
    report = await SecretsRotation(app).compliance_report()
    events = await _rotation_events(audit, since, until)
    entries = []
    for entry in report["entries"]:
        evidence = events.get(entry["name"].lower(), [])
        ok = [e for e in evidence if e["result"] == "SUCCESS"]
        entries.append({
            "name": entry["name"],
            "secret_type": entry["secret_type"],
            "policy": entry["policy"],
            "rotation_days": entry["rotation_days"],
            "last_rotation": entry["last_rotation"],
            "due_at": entry["due_at"],
            "status": "overdue" if entry["overdue"] else "compliant",
            "days_overdue": entry["days_overdue"],
            "rotations_in_period": len(ok),
            "failed_rotations_in_period": len(evidence) - len(ok),
            "evidence": [
                {"id": e["id"], "at": e["timestamp"], "result": e["result"],
                 "version": (e.get("details") or {}).get("version"), "actor": e["actor_id"]}
                for e in evidence[:20]
            ],
        })  # fmt: skip
    overdue = sum(1 for e in entries if e["status"] == "overdue")
    return {
        "secrets": len(entries),
        "compliant": len(entries) - overdue,
        "overdue": overdue,
        "without_policy": len(report["without_policy"]),
        "entries": entries,
    }


def _grant_text(actions: frozenset[Action], pattern: str) -> str:
    return f"{','.join(sorted(a.value for a in actions))}:{pattern}"


async def _access(app: Strongroom, since: datetime, until: datetime) -> dict[str, Any]:
    identities = await app.access.identities()
    policies = {p.name: p for p in await app.access.list_policies()}
    window: dict[str, Any] = {"since": since, "until": until}
    did_read, readers = await asyncio.gather(
        analyse(app, "console_did_read", limit=DID_READ_ROWS, **window),
        analyse(app, "console_readers", **window),
    )
    can_read: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    wildcard: list[dict[str, Any]] = []
    for entry in identities:
        identity = entry["identity"]
        for name in entry["policies"]:
            policy = policies.get(name)
            if policy is None:
                continue
            for grant in policy.grants:
                text = _grant_text(grant.actions, grant.pattern)
                if Action.READ in grant.actions or Action.ADMIN in grant.actions:
                    can_read.append({"identity": identity, "policy": name,
                                     "pattern": grant.pattern})  # fmt: skip
                if "*" in grant.pattern or "?" in grant.pattern:
                    wildcard.append({"identity": identity, "policy": name, "grant": text,
                                     "everything": grant.pattern == "*"})  # fmt: skip
                grants.append({"identity": identity, "policy": name, "grant": text,
                               "actions": grant.actions, "pattern": grant.pattern})  # fmt: skip
    used = await asyncio.gather(*(_grant_used(app, g, window) for g in grants))
    for entry_grant, was_used in zip(grants, used, strict=True):
        entry_grant["used"] = was_used
        del entry_grant["actions"], entry_grant["pattern"]
    tokens = await token_usage(app)
    return {
        "identities": identities,
        "can_read": can_read,
        "readers": sorted(
            (
                {
                    "identity": r["actor_id"],
                    "secrets": int(r["resources"]),
                    "reads": int(r["count"]),
                    "last_read": r["last_seen"],
                }
                for r in readers
            ),
            key=lambda r: r["identity"],
        ),
        "did_read": [
            {
                "identity": r["actor_id"],
                "secret": r["resource_name"],
                "reads": int(r["count"]),
                "last_read": r["last_seen"],
            }
            for r in did_read
        ],
        "did_read_limit": DID_READ_ROWS,
        "grants_never_used": [g for g in grants if g["used"] is False],
        "grants_not_measurable": [g for g in grants if g["used"] is None],
        "wildcard_grants": wildcard,
        "tokens_never_used": [t for t in tokens if t["live"] and not t["used"]],
        "tokens_never_expiring": [t for t in tokens if t["live"] and t["expires_at"] is None],
    }


async def _grant_used(
    app: Strongroom, grant: dict[str, Any], window: dict[str, Any]
) -> bool | None:
    """Whether the audit shows the grant used in the period; None when its actions leave no
    per-secret event (audit-read alone)."""
    wanted: set[str] = set()
    for action in grant["actions"]:
        if action is Action.ADMIN:
            wanted |= {a for uses in USES.values() for a in uses}
        wanted |= USES.get(action, frozenset())
    if not wanted:
        return None
    slots = sorted(wanted) + [""] * (len(_SLOTS) - len(wanted))
    # Names and patterns are letters, digits and "-" (plus * and ?): nothing LIKE would treat
    # specially but the wildcards themselves; audit names are lower-case.
    like = grant["pattern"].lower().replace("*", "%").replace("?", "_")
    rows = await analyse(
        app, "console_grant_used", who=grant["identity"], pattern=like,
        **{f"act_{letter}": a for letter, a in zip(_SLOTS, slots, strict=True)}, **window,
    )  # fmt: skip
    return bool(rows and int(rows[0]["count"]))


async def _revocations(app: Strongroom, since: datetime, until: datetime) -> dict[str, Any]:
    revoke = EmergencyRevoke(app)
    rows = await revoke.get_revocation_history(None, 1000)
    chosen = [r for r in rows if since <= r["requested_at"] < until]
    reviews = {
        r["revocation_id"]: r for r in await revoke.list_break_glass_reviews(open_only=False)
    }
    entries = []
    for row in chosen:
        revoked = row["revoked_at"]
        entries.append({
            "id": row["revocation_id"],
            "secret": row["secret_name"],
            "reason": row["reason"],
            "severity": row["severity"],
            "status": row["status"],
            "requested_by": row["requested_by"],
            "requested_at": row["requested_at"],
            "approvals": row["approvals"],
            "required_approvals": row["required_approvals"],
            "revoked_at": revoked,
            "minutes_to_revoke": round((revoked - row["requested_at"]).total_seconds() / 60, 1)
            if revoked is not None else None,
            "break_glass": row["break_glass"],
            "review": _review(reviews.get(row["revocation_id"])),
        })  # fmt: skip
    used = [e for e in entries if e["break_glass"]]
    states = [e["review"]["status"] if e["review"] else "none" for e in used]
    return {
        "requests": len(entries),
        "entries": entries,
        "break_glass": used,
        "break_glass_reviews": {
            "acknowledged": states.count("ACKNOWLEDGED"),
            "open": states.count("OPEN"),
            "overdue": sum(1 for e in used if e["review"] and e["review"]["overdue"]),
        },
    }


def _review(review: dict[str, Any] | None) -> dict[str, Any] | None:
    """A break-glass use's review as evidence: who answered for it, when, and whether late."""
    if review is None:
        return None
    return {key: review[key] for key in (
        "status", "due_at", "overdue", "acknowledged_by", "acknowledged_at", "escalations",
    )}  # fmt: skip


async def _unauthorized(app: Strongroom, since: datetime, until: datetime) -> dict[str, Any]:
    rows = await analyse(
        app, "console_unauthorized", since=since, until=until, limit=_UNAUTHORIZED_ROWS
    )
    threats: list[dict[str, Any]] = []
    if app.audit.store is not None:
        minutes = max(1, int((until - since).total_seconds() // 60))
        found = await detect(
            app.audit.store, app.threat_rules, now=until, resource_name=None, actor_id=None,
            failure_threshold=5, window_minutes=minutes,
        )  # fmt: skip
        threats = found["threats"]
    by_type: dict[str, int] = {}
    for threat in threats:
        by_type[threat["type"]] = by_type.get(threat["type"], 0) + 1
    return {
        "attempts": sum(int(r["count"]) for r in rows),
        "sources": rows,
        "detections": len(threats),
        "detections_by_type": by_type,
        "threats": threats[:200],
    }


async def _integrity(app: Strongroom, audit: SecretsAudit) -> dict[str, Any]:
    if app.audit.store is None:
        return {"valid": None, "reason": "auditing is switched off"}
    state = await app.audit.store.chain_state()
    result = await audit.verify_integrity()
    return {
        **result,
        "head_id": state.last_seq,
        "head_hash": state.last_hash.hex(),
        "anchor_id": state.anchor_seq,
    }
