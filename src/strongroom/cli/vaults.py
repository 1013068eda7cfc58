"""``strongroom vaults ...``: the Azure profile's primary and secondary vaults."""

from typing import Annotated, Any

import typer

from strongroom.cli.exitcodes import ExitCode
from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import Column, Lines
from strongroom.cli.runtime import command_group, output, run
from strongroom.services.secrets.regions import reconcile_vaults, vault_health
from strongroom.services.wiring import Strongroom

__all__ = ["app"]

app = command_group(
    "vaults", "The Azure profile's vaults in several regions: health, backlog, reconcile."
)


@app.command()
def status(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Each vault: primary or secondary, whether reads may go to it, and how many secret names
    (and since how long) the outbox still has to copy to it."""
    out = output(ctx, json=json)

    async def work(strongroom: Strongroom) -> list[dict[str, Any]]:
        return await vault_health(strongroom)

    rows = run(ctx, work)
    if out.json:
        out.data(rows)
        return
    out.table(
        [Column("vault", no_wrap=True), Column("role"), Column("reads"),
         Column("to copy", justify="right"), Column("oldest", justify="right")],
        [[r["url"], r["role"], "yes" if r["available"] else "skipped (failing)",
          str(r["backlog"]), f"{r['oldest_seconds']:.1f} s" if r["backlog"] else "-"]
         for r in rows],
    )  # fmt: skip


@app.command()
def reconcile(
    ctx: typer.Context,
    check: Annotated[
        bool, typer.Option("--check", help="Report drift only; change nothing (exit 1 if any).")
    ] = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare every secret name of every secondary vault with the primary and repair what
    differs: missing versions, properties, deletions, current version."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Strongroom) -> list[dict[str, Any]]:
        return await reconcile_vaults(strongroom, repair=not check)

    drift = run(ctx, work)
    if out.json:
        out.data({"repaired": not check, "drift": drift})
    elif drift and not out.quiet:
        out.table(
            [Column("vault", no_wrap=True), Column("secret", style="bold"), Column("found")],
            [[d["vault"], d["name"], Lines(d["problems"])] for d in drift],
        )
    verb = "found" if check else "repaired"
    if not out.json:
        out.done(f"{len(drift)} secret names with drift {verb}.")
    if check and drift:
        raise typer.Exit(ExitCode.ERROR)
