"""``strongroom events ...``: webhook subscriptions of the services that use a secret.

Each subscription has its own signing key (derived from the master key and its id, never
stored); `subscribe` prints it this once. Targets are checked as every webhook is: http(s)
only, never link-local or cloud metadata addresses, loopback and private ranges only when
STRONGROOM_WEBHOOK_ALLOW_LOOPBACK / STRONGROOM_WEBHOOK_ALLOW_PRIVATE allow them (exit 2).
"""

import sys
from typing import Annotated, Any

import typer

from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import Column, now_utc, when_cell
from strongroom.cli.runtime import NotFoundError, Wiring, command_group, output, run_any
from strongroom.services.events.subscriptions import EVENT_KINDS, EventSubscriptions

__all__ = ["app"]

app = command_group(
    "events", "Webhook subscriptions to what happens to secrets (rotated, revoked, expiring...)."
)

_KINDS = ", ".join(sorted(EVENT_KINDS))


def _events(strongroom: Wiring) -> EventSubscriptions:
    return EventSubscriptions(strongroom)


@app.command()
def subscribe(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(metavar="URL", help="The http(s) URL to POST events to.")],
    pattern: Annotated[
        str,
        typer.Option(
            "--pattern",
            "-p",
            metavar="GLOB",
            help="Only secrets whose name matches (fnmatch, case-insensitive): billing-*.",
        ),
    ] = "*",
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            metavar="KIND",
            help=f"Only this kind (repeat; default: all): {_KINDS}.",
        ),
    ] = None,
    json: JsonOpt = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print the signing key alone (for scripts).")
    ] = False,
) -> None:
    """Subscribe a webhook; prints its signing key this once (store it: it verifies each
    delivery's X-Strongroom-Signature). With --quiet, prints only the key."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await _events(strongroom).subscribe(url, pattern, event)

    sub = run_any(ctx, work)
    if out.json:
        out.data(sub)
        return
    if out.quiet:
        sys.stdout.write(sub["signing_key"] + "\n")
        return
    out.done(
        f"Subscribed {sub['id']}: {sub['url']} gets {', '.join(sub['events'])} "
        f"on secrets matching {sub['pattern']}"
    )
    out.done(f"signing key: {sub['signing_key']}")
    out.note(
        "Store the signing key now (e.g. as a secret of the receiving service): it is shown "
        "only this once. Check each delivery with strongroom.services.notify.verify_signature."
    )


@app.command()
def unsubscribe(
    ctx: typer.Context,
    subscription_id: Annotated[
        int, typer.Argument(metavar="ID", help="The subscription's id (from `events list`).")
    ],
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove a subscription: nothing more is sent to its URL."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> bool:
        return await _events(strongroom).unsubscribe(subscription_id)

    if not run_any(ctx, work):
        raise NotFoundError(f"no event subscription {subscription_id}")
    out.done(f"Unsubscribed {subscription_id}", {"id": subscription_id, "unsubscribed": True})


@app.command("list")
def list_(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every subscription: URL, pattern, kinds, who created it (never a signing key)."""
    out = output(ctx, json=json)

    async def work(strongroom: Wiring) -> list[dict[str, Any]]:
        return await _events(strongroom).list_subscriptions()

    subs = run_any(ctx, work)
    if out.json:
        out.data(subs)
        return
    now = now_utc()
    out.table(
        [
            Column("id", justify="right"),
            Column("url"),
            Column("pattern", no_wrap=True),
            Column("events"),
            Column("created by"),
            Column("created"),
        ],
        [
            [
                str(s["id"]),
                s["url"],
                s["pattern"],
                "all" if set(s["events"]) >= EVENT_KINDS else ", ".join(s["events"]),
                s["created_by"] or "-",
                when_cell(s["created_at"], now),
            ]
            for s in subs
        ],
        caption=f"{len(subs)} subscription{'s' if len(subs) != 1 else ''}",
    )


@app.command("check-expiry")
def check_expiry(
    ctx: typer.Context,
    warning_days: Annotated[
        int | None,
        typer.Option(
            "--warning-days",
            min=0,
            metavar="DAYS",
            help="Warn about secrets expiring within DAYS (default STRONGROOM_EXPIRY_WARNING_DAYS"
            ", 30).",
        ),
    ] = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Send near-expiry and expired events now, once per version (`rotation run` does too)."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> int:
        return await _events(strongroom).check_expiry(warning_days=warning_days)

    sent = run_any(ctx, work)
    out.done(
        f"Sent {sent} expiry notice{'s' if sent != 1 else ''} (each version is announced once)",
        {"sent": sent},
    )
