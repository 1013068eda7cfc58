"""``strongroom revoke ...``: emergency revocation, with approvals and break-glass.

Every command is one :class:`~strongroom.EmergencyRevoke` call. Who requests, approves,
rejects or cancels is the CLI's actor (``--as NAME``, or the OS user at this host), so
separation of duties holds on the command line too: nobody approves their own request.
"""

from datetime import datetime
from typing import Annotated, Any

import typer

from strongroom.cli.options import JsonOpt, NameArg, QuietOpt
from strongroom.cli.output import (
    SEVERITY_STYLE,
    now_utc,
    when,
)
from strongroom.cli.revoke_display import (
    approvals_of,
    check_outcome,
    requests_table,
    review_cell,
    revoked_message,
    risk_cell,
    severity_cell,
    status_cell,
    warn_undelivered,
)
from strongroom.cli.revoke_review import acknowledge, review_table, reviews
from strongroom.cli.runtime import Wiring, command_group, output, run_any
from strongroom.core.actor import current_actor
from strongroom.core.revocation import RevocationReason, RevocationRequest, Severity
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke
from strongroom.services.wiring import Strongroom

__all__ = ["app"]

app = command_group(
    "revoke",
    "Emergency revocation: request (or break-glass), approve, reject, cancel, review.",
)

IdArg = Annotated[
    int,
    typer.Argument(
        metavar="ID", help="The request's id (from `revoke request`, `pending` or `history`)."
    ),
]


def _revoke(strongroom: Wiring) -> EmergencyRevoke:
    return EmergencyRevoke(strongroom)


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
    warn_undelivered(out, r, kinds)
    if notify and not mail:
        out.warn("no mail server is configured (STRONGROOM_SMTP_HOST): --notify was not e-mailed")
    check_outcome(out, r)
    rid = r["revocation_id"]
    if r["status"] == "COMPLETED":
        out.done(
            f"Revoked now (break-glass, request {rid}): {revoked_message(r)}. Someone else "
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
    warn_undelivered(out, r, ["revocation.approved", "revocation.completed", "revocation.failed"])
    check_outcome(out, r)
    if r["status"] == "PENDING":
        out.done(
            f"Approval recorded for request {revocation_id} ({approvals_of(r)}); it stays "
            "PENDING until enough people approve",
            r,
        )
        return
    out.done(f"Request {revocation_id} approved: {revoked_message(r)}", r)


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
    warn_undelivered(out, r, ["revocation.rejected"])
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
    warn_undelivered(out, r, ["revocation.cancelled"])
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
            "status": status_cell(r["status"]),
            "severity": severity_cell(r["severity"]),
            "reason": r["reason"],
            "description": r["description"] or "-",
            "risk": (
                f"{risk_cell(risk)[0]}: {factors}" if risk else "-",
                SEVERITY_STYLE.get(risk.get("level", "")),
            ),
            "break-glass": ("yes: no approval", "bold red") if r["break_glass"] else "no",
            "review": review_cell(r, now),
            "requested": f"{when(r['requested_at'], now)} by {r['requested_by']}",
            "approvals": f"{approvals_of(r)}{': ' + approvals if approvals else ''}",
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
    requests_table(
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
    requests_table(
        out,
        rows,
        title="pending revocation requests",
        caption=f"{len(rows)} pending{age}; `strongroom revoke approve ID` as someone other "
        "than the requester",
    )


app.command("reviews")(reviews)
app.command("acknowledge")(acknowledge)
