"""``strongroom report ...``: signed compliance reports and their verification; and
``strongroom rotation recommend``: rotation intervals recommended from each secret's exposure.

Reports are signed by strongroom's Ed25519 report key, derived from the master key: on the
server's host they are made from the stores, in the remote profile by the server
(``/v1/reports``). ``report verify`` checks a file with that key (asking the server for its
public half in the remote profile), or with a public key file (``report public-key``).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.exitcodes import ExitCode
from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import Column, Output
from strongroom.cli.runtime import UsageError, Wiring, command_group, output, run_any
from strongroom.services.wiring import Strongroom

__all__ = ["app", "recommend"]

app = command_group(
    "report",
    "Compliance reports (SOC 2, PCI DSS, HIPAA) signed by strongroom's report key, and their "
    "verification.",
)


def _day(text: str | None, label: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{label} takes a date (2026-09-01) or an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command()
def compliance(
    ctx: typer.Context,
    framework: Annotated[str, typer.Option("--framework", help="soc2, pci-dss or hipaa.")] = "soc2",
    start: Annotated[
        str | None,
        typer.Option("--from", metavar="DATE", help="Start of the period (default: 90 days ago)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", metavar="DATE", help="End of the period (default: now).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="pdf, html, json or csv.")] = "pdf",
    out_file: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write here (default: stdout)."),
    ] = None,
) -> None:
    """A signed compliance report for a period: rotation evidence, access review, revocations,
    unauthorized attempts and threats, audit integrity."""
    from strongroom.services.reports.document import signed_report  # noqa: PLC0415

    out = output(ctx)

    async def work(wiring: Wiring) -> bytes:
        if not isinstance(wiring, Strongroom):  # the remote profile: the server signs it
            params = {"framework": framework, "from": start, "to": end, "format": fmt}
            document: bytes = await wiring.request_bytes("/v1/reports/compliance", params)
            return document
        until = _day(end, "--to") or wiring.clock()
        since = _day(start, "--from") or until - timedelta(days=90)
        return await signed_report(wiring, framework, since, until, fmt)

    _day(start, "--from")  # bad dates are refused here, before any call (exit 2)
    _day(end, "--to")
    document = run_any(ctx, work)
    if out_file is None:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
        return
    out_file.write_bytes(document)
    out.done(f"Wrote a signed {fmt} report to {out_file} ({len(document):,} bytes)",
             {"file": str(out_file), "bytes": len(document)})  # fmt: skip


@app.command()
def verify(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A signed report.")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key", metavar="PEM", help="Verify with this key instead of the master key's."
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Check a report's digest and signature (exit 1 when it was changed or signed by another
    key)."""
    from strongroom.services.reports.signing import (  # noqa: PLC0415
        load_public_key,
        verify_document,
    )

    out = output(ctx, json=json)
    data = file.read_bytes()
    if public_key is not None:
        result = verify_document(data, load_public_key(public_key.read_bytes()))
    else:

        async def work(wiring: Wiring) -> Any:
            return verify_document(data, load_public_key((await _public_pem(wiring)).encode()))

        result = run_any(ctx, work)
    out.done(
        f"Valid {result.format} report: SHA-256 {result.sha256}, signed by strongroom key "
        f"{result.key_id}",
        {"valid": True, "format": result.format, "sha256": result.sha256,
         "key_id": result.key_id},
    )  # fmt: skip


@app.command("public-key")
def public_key_cmd(ctx: typer.Context) -> None:
    """Print the report key's public half (PEM), for verifying reports without the master key."""

    sys.stdout.write(run_any(ctx, _public_pem))


async def _public_pem(wiring: Wiring) -> str:
    """The report key's public half: from the master key, or from the server."""
    from strongroom.services.reports.signing import ReportSigner  # noqa: PLC0415

    if isinstance(wiring, Strongroom):
        return ReportSigner(wiring.report_signing_seed).public_key_pem()
    return (await wiring.request_bytes("/v1/reports/public-key")).decode("ascii")


def recommend(
    ctx: typer.Context,
    name: Annotated[
        list[str] | None, typer.Argument(metavar="[NAME]...", help="Only these secrets.")
    ] = None,
    window_days: Annotated[
        int, typer.Option("--window-days", metavar="N", help="Exposure over the last N days.")
    ] = 90,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rotation intervals recommended from each secret's exposure (readers, addresses, read
    rate, refused attempts, detections, age), with the factors that moved each one."""
    from strongroom.services.analytics.exposure import recommendations  # noqa: PLC0415

    out = output(ctx, json=json, quiet=quiet)
    if not 1 <= window_days <= 3650:
        raise UsageError("--window-days takes 1-3650")
    names = {n.lower() for n in name} if name else None

    async def work(wiring: Wiring) -> list[dict[str, Any]]:
        if not isinstance(wiring, Strongroom):
            params = {"window_days": window_days, "name": sorted(names) if names else None}
            found: list[dict[str, Any]] = await wiring.request(
                "GET", "/v1/analytics/recommendations", params=params
            )
            return found
        made = await recommendations(wiring, window_days=window_days, names=names)
        return [r.to_dict() for r in made]

    found = run_any(ctx, work)
    if out.json:
        out.data(found)
        return
    if not out.quiet:
        _show(out, found)
    if any(r["rotate_now"] for r in found):
        raise typer.Exit(ExitCode.ERROR)


def _show(out: Output, found: list[dict[str, Any]]) -> None:
    styles = {"critical": "bold red", "high": "red", "medium": "yellow", "low": None}
    rows = [
        [r["name"], r["secret_type"], str(r["policy_days"]),
         ("now" if r["rotate_now"] else str(r["recommended_days"]), styles[r["level"]]),
         (f"{r['level']} ({r['score']})", styles[r["level"]]),
         "; ".join(f"{f['reason']} (x{f['multiplier']:g})" for f in r["factors"]) or "-"]
        for r in found
    ]  # fmt: skip
    out.table(
        [Column("secret", no_wrap=True), Column("type"), Column("policy days", justify="right"),
         Column("recommended days", justify="right"), Column("risk"), Column("why")],
        rows,
        caption=f"{len(found)} secrets; exit 1 when one should rotate now",
    )  # fmt: skip
