"""``strongroom revoke reviews`` and ``revoke acknowledge``: break-glass uses that someone other
than the responder must answer for (registered on the ``revoke`` group by its module)."""

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import Column, Output, name_column, now_utc, when, when_cell
from strongroom.cli.runtime import Wiring, output, run_any
from strongroom.core.actor import current_actor
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke

__all__ = ["acknowledge", "review_table", "reviews"]

ReviewId = Annotated[
    int,
    typer.Argument(metavar="ID", help="The break-glass revocation's id (from `revoke reviews`)."),
]


def _state(r: dict[str, Any]) -> tuple[str, str | None]:
    if r["status"] != "OPEN":
        return "acknowledged", "green"
    return ("OVERDUE", "bold red") if r["overdue"] else ("open", "yellow")


def review_table(out: Output, rows: Sequence[dict[str, Any]], *, title: str, caption: str) -> None:
    """Reviews as a table: who broke the glass, by when it must be answered for, by whom."""
    now = now_utc()
    out.table(
        [
            Column("id", justify="right"),
            name_column("secret"),
            Column("used by"),
            Column("opened"),
            Column("due"),
            Column("review", no_wrap=True),
            Column("notices", justify="right"),
            Column("acknowledged by"),
        ],
        [
            [
                str(r["revocation_id"]),
                r["secret_name"],
                r["used_by"],
                when_cell(r["opened_at"], now),
                when(r["due_at"], now),
                _state(r),
                str(r["escalations"]),
                r["acknowledged_by"] or "",
            ]
            for r in rows
        ],
        title=title,
        caption=caption,
    )


def reviews(
    ctx: typer.Context,
    every: Annotated[
        bool, typer.Option("--all", help="Acknowledged reviews too (newest first).")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Break-glass revocations waiting for a second person's review (oldest due first)."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> list[dict[str, Any]]:
        return await EmergencyRevoke(strongroom).list_break_glass_reviews(open_only=not every)

    rows = run_any(ctx, work)
    if out.json:
        out.data(rows)
        return
    if not rows:
        out.done("No break-glass review is open." if not every else "No break-glass review yet.")
        return
    overdue = sum(1 for r in rows if r["overdue"])
    review_table(
        out,
        rows,
        title="break-glass reviews",
        caption=f"{len(rows)} review{'s' if len(rows) != 1 else ''}, {overdue} overdue; "
        "`strongroom revoke acknowledge ID --note TEXT` as someone other than who used it",
    )


def acknowledge(
    ctx: typer.Context,
    revocation_id: ReviewId,
    note: Annotated[
        str,
        typer.Option("--note", "-m", metavar="TEXT", help="What you checked (recorded)."),
    ],
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Answer for a break-glass use as yourself, with a note.

    Nobody acknowledges their own use (exit 4); an acknowledged review stays closed.
    """
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await EmergencyRevoke(strongroom).acknowledge_break_glass(
            revocation_id, current_actor().id, note
        )

    r = run_any(ctx, work)
    late = (
        " (it was overdue)" if r["acknowledged_at"] and r["acknowledged_at"] > r["due_at"] else ""
    )
    out.done(
        f"Break-glass revocation {revocation_id} of {r['secret_name']} by {r['used_by']} "
        f"acknowledged by {r['acknowledged_by']}{late}",
        r,
    )
