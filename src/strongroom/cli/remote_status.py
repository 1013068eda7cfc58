"""``strongroom status`` in the remote profile: which server, as whom, and whether it is ready.

Nothing local is opened: the answer comes from the server (``/v1/auth/self``, ``/readyz`` and,
with ``--verify``, ``POST /v1/audit/verify``).
"""

from __future__ import annotations

from typing import Any

import typer

from strongroom.cli.output import Output
from strongroom.cli.runtime import Wiring, run_any
from strongroom.client.transport import RemoteClient
from strongroom.core.config import Settings
from strongroom.core.errors import StoreUnavailableError

__all__ = ["remote_status"]


async def _report(wiring: Wiring, verify: bool) -> dict[str, Any]:
    if not isinstance(wiring, RemoteClient):  # run_any gives a client in the remote profile
        raise TypeError("the remote status needs the server's client")
    who = await wiring.request("GET", "/v1/auth/self")
    try:
        ready = await wiring.request("GET", "/readyz")
    except StoreUnavailableError:
        ready = {"status": "unavailable"}
    report: dict[str, Any] = {
        "profile": "remote",
        "server": wiring.addr,
        "identity": who["identity"],
        "policies": who["policies"],
        "server_status": ready.get("status", "unknown"),
    }
    if verify:
        report["audit_chain"] = await wiring.request("POST", "/v1/audit/verify", idempotent=True)
    return report


def remote_status(ctx: typer.Context, out: Output, config: Settings, *, verify: bool) -> None:
    report = run_any(ctx, lambda wiring: _report(wiring, verify), config=config)
    problems = []
    if report["server_status"] != "ready":
        problems.append(f"the server is {report['server_status']}")
    chain = report.get("audit_chain")
    if chain is not None and not chain.get("valid"):
        problems.append("the audit hash chain does not verify")
    report["health"] = "ok" if not problems else "degraded"
    report["problems"] = problems
    if out.json:
        out.data(report)
    else:
        out.fields(
            {
                "profile": "remote",
                "server": report["server"],
                "identity": report["identity"],
                "policies": ", ".join(report["policies"]) or "-",
                "server status": report["server_status"],
                "health": ("ok", "green") if not problems else ("degraded", "bold red"),
            },
            title="strongroom status",
        )
        for problem in problems:
            out.warn(problem)
    if problems:
        raise typer.Exit(1)
