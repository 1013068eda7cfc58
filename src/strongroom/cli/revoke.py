"""``strongroom revoke ...``: emergency revocation, with approvals and break-glass.

Every command is one :class:`~strongroom.EmergencyRevoke` call. Who requests, approves,
rejects or cancels is the CLI's actor (``--as NAME``, or the OS user at this host), so
separation of duties holds on the command line too: nobody approves their own request.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any

import typer

from strongroom.cli.options import JsonOpt, NameArg, QuietOpt
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
from strongroom.cli.revoke_review import acknowledge, review_table, reviews
from strongroom.cli.runtime import Wiring, command_group, output, run_any
from strongroom.core.actor import current_actor
from strongroom.core.errors import RevocationError
from strongroom.core.revocation import RevocationReason, RevocationRequest, Severity
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke
from strongroom.services.wiring import Strongroom

__all__ = ["app"]

app = command_group(
    "revoke",
    "Emergency revocation: request (or break-glass), approve, reject, cancel, review.",
)

STATUS_STYLE = {
    "PENDING": "yellow",
    "APPROVED": "cyan",
    "IN_PROGRESS": "cyan",
    "COMPLETED": "green",
    "FAILED": "bold red",
    "REJECTED": "dim",
    "CANCELLED": "dim",
}

IdArg = Annotated[
    int,
    typer.Argument(
        metavar="ID", help="The request's id (from `revoke request`, `pending` or `history`)."
    ),
]


def _revoke(strongroom: Wiring) -> EmergencyRevoke:
    return EmergencyRevoke(strongroom)


def _status_cell(status: str) -> tuple[str, str | None]:
    return (status, STATUS_STYLE.get(status))


def _severity_cell(severity: str) -> tuple[str, str | None]:
    return (severity, SEVERITY_STYLE.get(severity))


def _risk_cell(risk: dict[str, Any] | None) -> tuple[str, str | None]:
    if not risk:
        return ("-", None)
    return (f"{risk['level']} ({risk['score']})", SEVERITY_STYLE.get(risk["level"]))


def _review_cell(r: dict[str, Any], now: datetime) -> tuple[str, str | None]:
    """Where a break-glass use's review stands (`revoke acknowledge` closes it)."""
    if not r.get("review_status"):
        return "-", None
    if r["review_status"] != "OPEN":
        return f"acknowledged by {r['reviewed_by']}", "green"
    due = r["review_due_at"]
    late = due is not None and due <= now
    return f"open, due {when(due, now)}", "bold red" if late else "yellow"


def _approvals(r: dict[str, Any]) -> str:
    return f"{len(r['approvals'])} of {r['required_approvals']}"


def _warn_undelivered(out: Output, r: dict[str, Any], kinds: Iterable[str]) -> None:
    """Notifications of this step that did not arrive: the step itself stands (warning)."""
    wanted = set(kinds)
    for d in r["deliveries"]:
        if d.get("kind") in wanted and not d.get("ok"):
            out.warn(
                f"{d['kind']} notice via {d['channel']} to {d['target']} not delivered: "
                f"{d.get('error') or d.get('status')}"
            )


def _check_outcome(out: Output, r: dict[str, Any]) -> None:
    """A revocation that ran and FAILED: JSON still printed, then exit 1 with the reason."""
    if r["status"] == "FAILED":
        if out.json:
            out.data(r)
        revoked = r["versions_revoked"]
        also = f" ({revoked} versions were revoked)" if revoked else ""
        raise RevocationError(
            f"revocation {r['revocation_id']} of {r['secret_name']} FAILED: {r['error']}{also}"
        )


def _revoked_message(r: dict[str, Any]) -> str:
    count = r["versions_revoked"] or 0
    message = (
        f"{count} version{'s' if count != 1 else ''} of {r['secret_name']} revoked: every read "
        f"of {'it' if count == 1 else 'them'} now fails"
    )
    if r["new_version"]:
        message += f"; a fresh value is current as version {short_version(r['new_version'])}"
    return message


# -- writes --------------------------------------------------------------------------------


@app.command()
def request(
    ctx: typer.Context,
    name: NameArg,
    reason: Annotated[
        RevocationReason,
        typer.Option("--reason", "-r", case_sensitive=False, help="Why it is revoked."),
    ],
    severity: Annotated[
        Severity,
        typer.Option(
            "--severity",
            "-s",
            case_sensitive=False,
            help="How bad it is: the risk score, notification priority and approvals needed.",
        ),
    ],
    description: Annotated[
        str,
        typer.Option("--description", "-d", metavar="TEXT", help="What happened (for people)."),
    ] = "",
    notify: Annotated[
        list[str] | None,
        typer.Option(
            "--notify",
            metavar="ADDRESS",
            help="E-mail this address at each step (repeat; needs STRONGROOM_SMTP_HOST).",
        ),
    ] = None,
    immediate: Annotated[
        bool,
        typer.Option(
            "--immediate",
            help="Break-glass: revoke now without approval (recorded and notified as such).",
        ),
    ] = False,
    rotate_after: Annotated[
        bool,
        typer.Option(
            "--rotate-after",
            help="Then issue a fresh value through the secret's rotation policy.",
        ),
    ] = False,
    soft_delete: Annotated[
        bool, typer.Option("--soft-delete", help="Then soft-delete the secret as well.")
    ] = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Ask to revoke every version of a secret; with --immediate, revoke it now.

    The request is recorded with a risk score and waits for approval by someone else
    (`revoke approve ID`); the requester is you (--as NAME or the OS user at this host).
    """
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> tuple[dict[str, Any], bool]:
        req = RevocationRequest(
            secret_name=name,
            reason=reason,
            requested_by=current_actor().id,
            severity=severity,
            description=description,
            notify_recipients=list(notify or []),
            immediate=immediate,
            rotate_after=rotate_after,
            soft_delete=soft_delete,
        )
        result = await _revoke(strongroom).request_revocation(req)
        # Remotely the server mails (or warns in its own log): no local setting to check.
        mail = not isinstance(strongroom, Strongroom) or strongroom.settings.smtp_host is not None
        return result, mail

    r, mail = run_any(ctx, work)
    kinds = ["revocation.requested", "revocation.completed", "revocation.failed"]
    _warn_undelivered(out, r, kinds)
    if notify and not mail:
        out.warn("no mail server is configured (STRONGROOM_SMTP_HOST): --notify was not e-mailed")
    _check_outcome(out, r)
    rid = r["revocation_id"]
    if r["status"] == "COMPLETED":
        out.done(
            f"Revoked now (break-glass, request {rid}): {_revoked_message(r)}. Someone else "
            f"must acknowledge this use (`strongroom revoke acknowledge {rid} --note TEXT`)",
            r,
        )
        return
    risk = r["risk"] or {}
    needed = r["required_approvals"]
    out.done(
        f"Revocation request {rid} for {r['secret_name']} is {r['status']} (risk "
        f"{risk.get('level', '-')}, {risk.get('score', '-')}/100): it needs {needed} "
        f"approval{'s' if needed != 1 else ''} by someone other than {r['requested_by']} "
        f"(`strongroom revoke approve {rid}`)",
        r,
    )


@app.command()
def approve(
    ctx: typer.Context, revocation_id: IdArg, json: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Approve a pending request as yourself; the last approval needed revokes the secret.

    Nobody approves their own request or approves one twice (exit 4).
    """
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await _revoke(strongroom).approve_revocation(revocation_id, current_actor().id)

    r = run_any(ctx, work)
    _warn_undelivered(out, r, ["revocation.approved", "revocation.completed", "revocation.failed"])
    _check_outcome(out, r)
    if r["status"] == "PENDING":
        out.done(
            f"Approval recorded for request {revocation_id} ({_approvals(r)}); it stays "
            "PENDING until enough people approve",
            r,
        )
        return
    out.done(f"Request {revocation_id} approved: {_revoked_message(r)}", r)


@app.command()
def reject(
    ctx: typer.Context,
    revocation_id: IdArg,
    reason: Annotated[
        str,
        typer.Option("--reason", "-r", metavar="TEXT", help="Why (recorded and notified)."),
    ],
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Reject a pending request as yourself: the secret stays readable; the request closes."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await _revoke(strongroom).reject_revocation(
            revocation_id, current_actor().id, reason
        )

    r = run_any(ctx, work)
    _warn_undelivered(out, r, ["revocation.rejected"])
    out.done(f"Request {revocation_id} for {r['secret_name']} rejected", r)


@app.command()
def cancel(
    ctx: typer.Context, revocation_id: IdArg, json: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Withdraw a request that has not run yet (recorded as cancelled by you)."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await _revoke(strongroom).cancel_revocation(revocation_id, current_actor().id)

    r = run_any(ctx, work)
    _warn_undelivered(out, r, ["revocation.cancelled"])
    out.done(f"Request {revocation_id} for {r['secret_name']} cancelled", r)


# -- reads ---------------------------------------------------------------------------------


@app.command()
def status(ctx: typer.Context, revocation_id: IdArg, json: JsonOpt = False) -> None:
    """One request: state, approvals, risk, what was revoked, notifications."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await _revoke(strongroom).get_revocation_status(revocation_id)

    r = run_any(ctx, work)
    if out.json:
        out.data(r)
        return
    now = now_utc()
    risk = r["risk"] or {}
    factors = ", ".join(f"{k} {v}" for k, v in sorted((risk.get("factors") or {}).items()))
    approvals = "; ".join(
        f"{a['by']} {when(datetime.fromisoformat(a['at']), now)}" for a in r["approvals"]
    )
    delivered = sum(1 for d in r["deliveries"] if d.get("ok"))
    failed = len(r["deliveries"]) - delivered
    out.fields(
        {
            "id": str(r["revocation_id"]),
            "secret": r["secret_name"],
            "status": _status_cell(r["status"]),
            "severity": _severity_cell(r["severity"]),
            "reason": r["reason"],
            "description": r["description"] or "-",
            "risk": (
                f"{_risk_cell(risk)[0]}: {factors}" if risk else "-",
                SEVERITY_STYLE.get(risk.get("level", "")),
            ),
            "break-glass": ("yes: no approval", "bold red") if r["break_glass"] else "no",
            "review": _review_cell(r, now),
            "requested": f"{when(r['requested_at'], now)} by {r['requested_by']}",
            "approvals": f"{_approvals(r)}{': ' + approvals if approvals else ''}",
            "revoked": when(r["revoked_at"], now),
            "versions revoked": str(r["versions_revoked"] or "-"),
            "new version": r["new_version"] or "-",
            "closed": (
                f"{when(r['closed_at'], now)}{' by ' + r['closed_by'] if r['closed_by'] else ''}"
                if r["closed_at"]
                else "-"
            ),
            "error": (r["error"], "bold red") if r["error"] else "-",
            "notify": ", ".join(r["notify_recipients"]) or "-",
            "notifications": (
                f"{delivered} delivered, {failed} failed",
                "red" if failed else None,
            ),
            "updated": when(r["updated_at"], now),
        },
        title=f"revocation request {r['revocation_id']}",
    )


def _table(out: Output, rows: Sequence[dict[str, Any]], *, title: str, caption: str) -> None:
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
                _status_cell(r["status"]),
                _severity_cell(r["severity"]),
                r["reason"] + (" (break-glass)" if r["break_glass"] else ""),
                _risk_cell(r["risk"]),
                r["requested_by"],
                _approvals(r),
                r["closed_by"] or r["approved_by"] or "",
            ]
            for r in rows
        ],
        title=title,
        caption=caption,
    )


@app.command()
def history(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="Only this secret's requests (default: all)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="At most this many requests (1-1000).")
    ] = 50,
    json: JsonOpt = False,
) -> None:
    """Revocation requests, newest first, whatever their state."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> list[dict[str, Any]]:
        return await _revoke(strongroom).get_revocation_history(name, limit)

    rows = run_any(ctx, work)
    if out.json:
        out.data(rows)
        return
    _table(
        out,
        rows,
        title=f"revocations of {name}" if name else "revocations",
        caption=f"{len(rows)} request{'s' if len(rows) != 1 else ''} (newest first)",
    )


@app.command()
def pending(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Requests waiting for approval, oldest first; then break-glass uses waiting for review
    (with ``--json``, the requests only: `revoke reviews --json` lists the reviews)."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        revoke = _revoke(strongroom)
        rows = await revoke.list_pending_revocations()
        return rows, [] if out.json else await revoke.list_break_glass_reviews()

    rows, open_reviews = run_any(ctx, work)
    if out.json:
        out.data(rows)
        return
    if open_reviews:
        overdue = sum(1 for r in open_reviews if r["overdue"])
        review_table(
            out,
            open_reviews,
            title="break-glass uses waiting for review",
            caption=f"{len(open_reviews)} open, {overdue} overdue; `strongroom revoke "
            "acknowledge ID --note TEXT` as someone other than who used it",
        )
    if not rows:
        out.done("No revocation request is pending.")
        return
    age = f", the oldest requested {when(rows[0]['requested_at'], now_utc())}"
    _table(
        out,
        rows,
        title="pending revocation requests",
        caption=f"{len(rows)} pending{age}; `strongroom revoke approve ID` as someone other "
        "than the requester",
    )


app.command("reviews")(reviews)
app.command("acknowledge")(acknowledge)
