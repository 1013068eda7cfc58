"""``strongroom audit ...``: the trail, a summary, threat detection, integrity and export."""

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.exitcodes import ExitCode
from strongroom.cli.options import JsonOpt
from strongroom.cli.output import (
    RESULT_STYLE,
    SEVERITY_STYLE,
    Column,
    now_utc,
    open_private,
    relative,
    when_cell,
)
from strongroom.cli.runtime import UsageError, Wiring, command_group, output, run_any
from strongroom.core.validation import validate_name
from strongroom.services.audit.secrets_audit import SecretsAudit

__all__ = ["app", "parse_when"]

app = command_group(
    "audit", "Review the audit trail, hunt threats, verify the hash chain, export to a SIEM."
)

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

SecretOpt = Annotated[
    str | None, typer.Option("--secret", "-s", metavar="NAME", help="Only this secret.")
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since", metavar="WHEN", help="ISO date/time (UTC if no zone) or an age: 2h, 7d."
    ),
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", metavar="WHEN", help="ISO date/time or an age, exclusive.")
]


def parse_when(text: str | None, now: datetime) -> datetime | None:
    """``2026-11-01``, ``2026-11-01T08:00+01:00`` or an age such as ``90m``, ``2h``, ``7d``."""
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"cannot read {text!r} as a date/time or an age like 2h or 7d") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _audit(strongroom: Wiring) -> SecretsAudit:
    return SecretsAudit(strongroom)


@app.command()
def trail(
    ctx: typer.Context,
    secret: SecretOpt = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="CREATE, READ, UPDATE, DELETE, LIST, DESCRIBE, ..."),
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor id.")] = None,
    result: Annotated[
        str | None, typer.Option("--result", help="SUCCESS, FAILURE or PARTIAL.")
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many events.")] = 50,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many (paging).")] = 0,
    json: JsonOpt = False,
) -> None:
    """Audit events, newest first."""
    out = output(ctx, json=json)
    now = now_utc()
    start, end = parse_when(since, now), parse_when(until, now)

    if secret is not None:
        validate_name(secret)  # a search by name: an unknown name is an empty result, a bad one 2

    async def work(strongroom: Wiring) -> list[dict[str, Any]]:
        return await _audit(strongroom).get_audit_trail(
            secret,
            action,
            limit,
            actor_id=actor,
            result=result,
            since=start,
            until=end,
            offset=offset,
        )

    events = run_any(ctx, work)
    if out.json:
        out.data(events)
        return
    out.table(
        [
            Column("id", justify="right"),
            Column("when"),
            Column("action", no_wrap=True),
            Column("secret"),
            Column("result"),
            Column("actor"),
            Column("ip"),
            Column("error"),
        ],
        [
            [
                str(e["id"]),
                when_cell(e["timestamp"], now),
                e["action"],
                e["resource_name"] or "-",
                (e["result"], RESULT_STYLE.get(e["result"])),
                e["actor_id"] or "-",
                e["actor_ip"] or "-",
                e["error_code"] or "",
            ]
            for e in events
        ],
        caption=f"{len(events)} event{'s' if len(events) != 1 else ''} (newest first)",
    )


@app.command()
def summary(
    ctx: typer.Context,
    secret: SecretOpt = None,
    days: Annotated[int, typer.Option("--days", help="How far back (1-3650).")] = 30,
    json: JsonOpt = False,
) -> None:
    """Totals by action, result and actor; unique actors and IPs; failure rate."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await _audit(strongroom).get_audit_summary(secret, days)

    report = run_any(ctx, work)
    if out.json:
        out.data(report)
        return
    scope = f"secret {report['resource_name']}" if report["resource_name"] else "all secrets"
    rate = report["failure_rate"]
    out.fields(
        {
            "scope": scope,
            "period": f"last {days} days",
            "events": str(report["total_events"]),
            "failure rate": (f"{rate:.1%}", "red" if rate >= 0.05 else None),
            "unique actors": str(report["unique_actors"]),
            "unique IPs": str(report["unique_ips"]),
            "by action": _counts(report["by_action"]),
            "by result": _counts(report["by_result"]),
        },
        title="audit summary",
    )
    actors = list(report["by_actor"].items())[:10]
    if actors:
        out.table(
            [Column("actor"), Column("events", justify="right")],
            [[name, str(count)] for name, count in actors],
            title="busiest actors",
        )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


@app.command()
def threats(
    ctx: typer.Context,
    secret: SecretOpt = None,
    threshold: Annotated[
        int, typer.Option("--threshold", help="Failures in the window that make a burst.")
    ] = 5,
    window: Annotated[int, typer.Option("--window", metavar="MINUTES", help="Window.")] = 30,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor id.")] = None,
    json: JsonOpt = False,
) -> None:
    """Run every threat rule over the recent window (failure bursts, enumeration, new IPs...)."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await _audit(strongroom).detect_suspicious_activity(secret, threshold, window, actor)

    report = run_any(ctx, work)
    if out.json:
        out.data(report)
        return
    found = report["threats"]
    if not found:
        out.done(f"No threats in the last {window} minutes.")
        return
    now = now_utc()
    out.table(
        [
            Column("severity", no_wrap=True),
            Column("type", no_wrap=True),
            Column("actor"),
            Column("ip"),
            Column("secret"),
            Column("count", justify="right"),
            Column("last seen"),
            Column("evidence"),
        ],
        [
            [
                (t["severity"].upper(), SEVERITY_STYLE.get(t["severity"])),
                (t["type"], SEVERITY_STYLE.get(t["severity"])),
                t["actor_id"] or "-",
                t["actor_ip"] or "-",
                t["resource_name"] or "-",
                str(t["count"]),
                relative(t["last_seen"], now) if t["last_seen"] else "-",
                ", ".join(f"{k}={v}" for k, v in (t["evidence"] or {}).items()),
            ]
            for t in found
        ],
        title=f"{report['threats_detected']} threat{'s' if len(found) != 1 else ''} "
        f"in the last {window} minutes",
    )


@app.command()
def verify(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Walk the hash chain; exit 1 and name the first changed, removed or inserted event."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await _audit(strongroom).verify_integrity()

    report = run_any(ctx, work)
    if out.json:
        out.data(report)
    elif report["valid"]:
        out.done(f"Audit chain intact: {report['checked']} events verified.")
    else:
        where = f" at event {report['broken_at']}" if report["broken_at"] is not None else ""
        sys.stderr.write(f"audit chain BROKEN{where}: {report['reason']}\n")
    if not report["valid"]:
        raise typer.Exit(ExitCode.ERROR)


@app.command("export")
def export_(
    ctx: typer.Context,
    output_path: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="PATH", help="Write here (mode 0600) not stdout."),
    ] = None,
    secret: SecretOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Events oldest first as JSON lines (one event a line), for a SIEM."""
    out = output(ctx)
    now = now_utc()
    start, end = parse_when(since, now), parse_when(until, now)
    target = None if output_path is None or str(output_path) == "-" else output_path

    async def work(strongroom: Wiring) -> int:
        audit = _audit(strongroom)
        if target is None:
            return await audit.export(sys.stdout, resource_name=secret, since=start, until=end)
        with open_private(target, force=force) as handle:
            return await audit.export(handle, resource_name=secret, since=start, until=end)

    count = run_any(ctx, work)
    where = f" to {target}" if target is not None else ""
    out.note(f"Exported {count} event{'s' if count != 1 else ''}{where}")
