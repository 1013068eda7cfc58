"""``strongroom rotation list / status / history / check``: what is configured, what is due,
what happened, and compliance against each type's policy."""

from datetime import datetime
from typing import Annotated, Any

import typer

from strongroom.cli.exitcodes import ExitCode
from strongroom.cli.options import JsonOpt, NameArg, QuietOpt
from strongroom.cli.output import (
    RESULT_STYLE,
    Column,
    Lines,
    Output,
    name_column,
    now_utc,
    short_version,
    when,
    when_cell,
)
from strongroom.cli.rotation import every, rotation_of
from strongroom.cli.runtime import Wiring, output, run_any

__all__ = ["check", "history", "list_", "status"]

#: Secrets due within this many days are shown in yellow.
SOON_DAYS = 7


def _due_cell(
    status: dict[str, Any], now: datetime, *, cell: bool = True
) -> tuple[str | Lines, str | None]:
    """Overdue in red, due within a week in yellow, a disabled policy dimmed."""
    due = status["due_at"]
    shown = (when_cell if cell else when)(due, now)
    if not status.get("enabled", True):
        return (shown, "dim")
    if status["overdue"]:
        return (shown, "bold red")
    return (shown, "yellow" if (due - now).days < SOON_DAYS else None)


def _result_cell(status: dict[str, Any]) -> tuple[str, str | None]:
    result = status["last_result"]
    if result is None:
        return ("-", "dim")
    attempts = status["attempts"]
    text = f"{result} ({attempts} failed)" if result == "FAILURE" and attempts else result
    return (text, RESULT_STYLE.get(result))


def list_(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every rotation policy: schedule, last rotation, when it is due (overdue in red)."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> list[dict[str, Any]]:
        return await rotation_of(strongroom).list_rotation_configs()

    found = sorted(run_any(ctx, work), key=lambda s: s["name"].lower())
    if out.json:
        out.data(found)
        return
    now = now_utc()
    out.table(
        [
            name_column(),
            Column("enabled", no_wrap=True, min_width=7),
            Column("every", no_wrap=True),
            Column("generator", no_wrap=True),
            Column("last rotation"),
            Column("due"),
            Column("last result"),
        ],
        [
            [
                s["name"],
                ("yes", None) if s["enabled"] else ("no", "dim"),
                every(s),
                _made_by(s),
                when_cell(s["last_rotation"], now, empty="never"),
                _due_cell(s, now),
                _result_cell(s),
            ]
            for s in found
        ],
        caption=f"{len(found)} rotation polic{'ies' if len(found) != 1 else 'y'}",
    )


def _made_by(s: dict[str, Any]) -> str:
    """What makes the new values, and where: ``(workers)`` when rotation workers do."""
    maker = s["generator"] or s["rotator"] or "callback"
    return f"{maker} (workers)" if s.get("worker") else maker


def status(ctx: typer.Context, name: NameArg, json: JsonOpt = False) -> None:
    """One secret's rotation policy and state: due date, forced, retries, last error."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await rotation_of(strongroom).get_rotation_status(name)

    s = run_any(ctx, work)
    if out.json:
        out.data(s)
        return
    now = now_utc()
    hours = s["rotation_hours_before_expiry"]
    out.fields(
        {
            "name": s["name"],
            "enabled": ("yes", "green") if s["enabled"] else ("no", "dim"),
            "every": f"{every(s)}, or {hours} hours before it expires",
            "generator": s["generator"] or "-",
            "rotator": s["rotator"] or "-",
            "rotated by": (
                "rotation workers (strongroom rotation worker, or a registered callback)"
                if s.get("worker")
                else "the service's scheduler"
            ),
            "description": s["description"] or "-",
            "last rotation": when(
                s["last_rotation"], now, empty="never (the first rotation creates the secret)"
            ),
            "expires": when(s["expires_at"], now, empty="never"),
            "due": _due_cell(s, now, cell=False),
            "overdue": ("yes", "bold red") if s["overdue"] else "no",
            "forced": ("yes: at the next check", "yellow") if s["force_on_next"] else "no",
            "next attempt": when(s["next_attempt"], now),
            "last attempt": when(s["last_attempt"], now, empty="never"),
            "last result": _result_cell(s),
            "last error": (s["last_error"], "red") if s["last_error"] else "-",
            "grace period": f"{s['grace_period_hours']} hours",
        },
        title=f"rotation of {s['name']}",
    )


def history(
    ctx: typer.Context,
    name: NameArg,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many events.")] = 50,
    json: JsonOpt = False,
) -> None:
    """A secret's rotations (ROTATE audit events, newest first), failed ones included."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> list[dict[str, Any]]:
        return await rotation_of(strongroom).get_rotation_history(name, limit)

    events = run_any(ctx, work)
    if out.json:
        out.data(events)
        return
    now = now_utc()
    out.table(
        [
            Column("id", justify="right"),
            Column("when"),
            Column("result"),
            Column("version", no_wrap=True),
            Column("attempt", justify="right"),
            Column("actor"),
            Column("error"),
        ],
        [
            [
                str(e["id"]),
                when_cell(e["timestamp"], now),
                (e["result"], RESULT_STYLE.get(e["result"])),
                short_version((e["details"] or {}).get("version")) or "-",
                str((e["details"] or {}).get("attempt", "")),
                e["actor_id"] or "-",
                e["error_message"] or e["error_code"] or "",
            ]
            for e in events
        ],
        title=f"rotations of {name}",
        caption=f"{len(events)} event{'s' if len(events) != 1 else ''} (newest first)",
    )


def check(
    ctx: typer.Context,
    fail_on_overdue: Annotated[
        bool,
        typer.Option(
            "--fail-on-overdue", help="Exit 1 when any secret is overdue (for cron and CI)."
        ),
    ] = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compliance: every live secret with its policy (its own, or its type's default: API keys
    90 days, database credentials 60, JWT secrets 30, others 90), overdue ones in red.

    With --quiet only overdue secrets are reported (on stderr).
    """
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await rotation_of(strongroom).compliance_report()

    report = run_any(ctx, work)
    overdue = report["overdue"]
    if out.json:
        out.data(report)
    elif not out.quiet:
        _show_compliance(out, report)
    elif overdue:
        out.warn(f"overdue for rotation: {', '.join(overdue)}")
    if fail_on_overdue and overdue:
        raise typer.Exit(ExitCode.ERROR)


def _show_compliance(out: Output, report: dict[str, Any]) -> None:
    now = now_utc()
    entries = sorted(report["entries"], key=lambda e: (not e["overdue"], e["due_at"]))
    rows = []
    for e in entries:
        if e["policy"] == "default":
            policy: tuple[str, str | None] = ("none: type default", "yellow")
        else:
            policy = ("configured", None) if e["enabled"] else ("configured, disabled", "dim")
        days = e["days_overdue"]
        late = f"{days} day{'s' if days != 1 else ''}" if days else "under a day"
        rows.append(
            [
                e["name"],
                e["secret_type"],
                policy,
                every(e),
                when_cell(e["last_rotation"], now, empty="never"),
                _due_cell({**e, "enabled": True}, now),
                (late, "bold red") if e["overdue"] else "",
            ]
        )
    without = len(report["without_policy"])
    count = report["secrets"]
    out.table(
        [
            name_column(),
            Column("type", no_wrap=True),
            Column("policy"),
            Column("every", no_wrap=True),
            Column("last rotation"),
            Column("due"),
            Column("overdue by"),
        ],
        rows,
        title="rotation compliance",
        caption=f"{count} secret{'s' if count != 1 else ''}: {report['compliant']} compliant, "
        f"{without} without a policy, {len(report['overdue'])} overdue",
    )
