"""Revocation requests as callers see them, and the checks their steps share (pure)."""

from __future__ import annotations

from typing import Any

from strongroom.core.errors import ConfigurationError, ValidationError
from strongroom.core.revocation import Severity

__all__ = ["approvals_from", "check_actor", "public_revocation"]


def approvals_from(text: str | None) -> dict[Severity, int]:
    """``"critical=2,high=2"`` (STRONGROOM_REVOCATION_APPROVALS) as a severity -> count map."""
    policy: dict[Severity, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, count = part.partition("=")
        try:
            severity, number = Severity(name.strip().lower()), int(count)
        except ValueError:
            raise ConfigurationError(
                "STRONGROOM_REVOCATION_APPROVALS looks like critical=2,high=1"
            ) from None
        if not 1 <= number <= 10:
            raise ConfigurationError("a revocation needs 1-10 approvals")
        policy[severity] = number
    return policy


def check_actor(who: object, label: str) -> None:
    if not isinstance(who, str) or not 1 <= len(who) <= 256 or not who.strip():
        raise ValidationError(f"{label} must name someone (1-256 characters)")


def public_revocation(row: dict[str, Any]) -> dict[str, Any]:
    details = row["details"]
    return {
        "revocation_id": row["id"],
        "secret_name": row["secret_name"],
        "status": row["status"],
        "reason": row["reason"],
        "severity": row["severity"],
        "requested_by": row["requested_by"],
        "requested_at": row["requested_at"],
        "approved_by": row["approved_by"],
        "approvals": row["approvals"],
        "required_approvals": row["required_approvals"],
        "revoked_at": row["revoked_at"],
        "closed_by": row["closed_by"],
        "closed_at": row["closed_at"],
        "notify_recipients": row["notify_recipients"],
        "immediate": bool(details.get("immediate")),
        "break_glass": bool(details.get("break_glass")),
        "risk": details.get("risk"),
        "description": details.get("description", ""),
        "error": details.get("error"),
        "versions_revoked": details.get("versions_revoked"),
        "new_version": details.get("new_version"),
        "deliveries": details.get("deliveries", []),
        "updated_at": row["updated_at"],
    }
