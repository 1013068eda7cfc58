"""How the ``strongroom revoke`` commands show requests: status, severity and risk cells,
break-glass reviews, the requests table, undelivered notices and a failed revocation."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from strongroom.cli.output import (
    SEVERITY_STYLE,
    Column,
    Output,
    name_column,
    now_utc,
    short_version,
    when,
    when_cell,
)
from strongroom.core.errors import RevocationError

__all__ = [
    "STATUS_STYLE",
    "approvals_of",
    "check_outcome",
    "requests_table",
    "review_cell",
    "revoked_message",
    "risk_cell",
    "severity_cell",
    "status_cell",
    "warn_undelivered",
]

STATUS_STYLE = {
    "PENDING": "yellow",
    "APPROVED": "cyan",
    "IN_PROGRESS": "cyan",
    "COMPLETED": "green",
    "FAILED": "bold red",
    "REJECTED": "dim",
    "CANCELLED": "dim",
}


def status_cell(status: str) -> tuple[str, str | None]:
    return (status, STATUS_STYLE.get(status))


def severity_cell(severity: str) -> tuple[str, str | None]:
    return (severity, SEVERITY_STYLE.get(severity))


def risk_cell(risk: dict[str, Any] | None) -> tuple[str, str | None]:
    if not risk:
        return ("-", None)
    return (f"{risk['level']} ({risk['score']})", SEVERITY_STYLE.get(risk["level"]))


def review_cell(r: dict[str, Any], now: datetime) -> tuple[str, str | None]:
    """Where a break-glass use's review stands (`revoke acknowledge` closes it)."""
    if not r.get("review_status"):
        return "-", None
    if r["review_status"] != "OPEN":
        return f"acknowledged by {r['reviewed_by']}", "green"
    due = r["review_due_at"]
    late = due is not None and due <= now
    return f"open, due {when(due, now)}", "bold red" if late else "yellow"


def approvals_of(r: dict[str, Any]) -> str:
    return f"{len(r['approvals'])} of {r['required_approvals']}"


def warn_undelivered(out: Output, r: dict[str, Any], kinds: Iterable[str]) -> None:
    """Notifications of this step that did not arrive: the step itself stands (warning)."""
    wanted = set(kinds)
    for d in r["deliveries"]:
        if d.get("kind") in wanted and not d.get("ok"):
            out.warn(
                f"{d['kind']} notice via {d['channel']} to {d['target']} not delivered: "
                f"{d.get('error') or d.get('status')}"
            )


def check_outcome(out: Output, r: dict[str, Any]) -> None:
    """A revocation that ran and FAILED: JSON still printed, then exit 1 with the reason."""
    if r["status"] == "FAILED":
        if out.json:
            out.data(r)
        revoked = r["versions_revoked"]
        also = f" ({revoked} versions were revoked)" if revoked else ""
        raise RevocationError(
            f"revocation {r['revocation_id']} of {r['secret_name']} FAILED: {r['error']}{also}"
        )


def revoked_message(r: dict[str, Any]) -> str:
    count = r["versions_revoked"] or 0
    message = (
        f"{count} version{'s' if count != 1 else ''} of {r['secret_name']} revoked: every read "
        f"of {'it' if count == 1 else 'them'} now fails"
    )
    if r["new_version"]:
        message += f"; a fresh value is current as version {short_version(r['new_version'])}"
    return message


def requests_table(
    out: Output, rows: Sequence[dict[str, Any]], *, title: str, caption: str
) -> None:
    now = now_utc()
    out.table(
        [
            Column("id", justify="right"),
            Column("requested"),
            name_column("secret"),
            Column("status", no_wrap=True),
            Column("severity", no_wrap=True),
            Column("reason"),
            Column("risk", no_wrap=True),
            Column("requested by"),
            Column("approvals", no_wrap=True),
            Column("approved or closed by"),
        ],
        [
            [
                str(r["revocation_id"]),
                when_cell(r["requested_at"], now),
                r["secret_name"],
                status_cell(r["status"]),
                severity_cell(r["severity"]),
                r["reason"] + (" (break-glass)" if r["break_glass"] else ""),
                risk_cell(r["risk"]),
                r["requested_by"],
                approvals_of(r),
                r["closed_by"] or r["approved_by"] or "",
            ]
            for r in rows
        ],
        title=title,
        caption=caption,
    )
