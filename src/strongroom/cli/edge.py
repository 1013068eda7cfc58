"""``strongroom edge``: run a site's read-only replica of an upstream strongroom server."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.options import JsonOpt
from strongroom.cli.runtime import UsageError, output, settings
from strongroom.core.errors import ConfigurationError, StoreUnavailableError
from strongroom.core.logging import configure_logging

__all__ = ["app"]

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.callback(invoke_without_command=True)
def edge(
    ctx: typer.Context,
    upstream: Annotated[
        str | None, typer.Option(help="the central server, https://host:port")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="names to replicate, a glob such as 'dispatch-north-*' (repeatable)"),
    ] = None,
    upstream_cacert: Annotated[
        Path | None,
        typer.Option(help="PEM bundle that verifies the upstream (or STRONGROOM_EDGE_CACERT)"),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8200,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
) -> None:
    """Serve a read-only replica of UPSTREAM's secrets within SCOPE to this site, kept current
    from the upstream's change feed; the site's credential is STRONGROOM_EDGE_TOKEN."""
    if ctx.invoked_subcommand is not None:
        return
    if upstream is None or not scope:
        raise UsageError("strongroom edge needs --upstream URL and at least one --scope GLOB")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    config = settings()
    configure_logging(config.log_level or "INFO", debug=config.debug)
    asyncio.run(_serve(upstream, scope, upstream_cacert, host, port, tls_cert, tls_key))


async def _serve(
    upstream: str,
    scopes: list[str],
    cacert: Path | None,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    import uvicorn  # noqa: PLC0415 (only this command needs the server)

    from strongroom.edge import EdgeNode  # noqa: PLC0415
    from strongroom.server.protocol import uvicorn_options  # noqa: PLC0415

    class EdgeServer(uvicorn.Server):
        """Stops on SIGINT/SIGTERM as uvicorn does, then returns instead of raising the signal
        again, so the edge closes its replica and audit trail before it exits."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    config = settings()
    node = await EdgeNode.open(config, upstream=upstream, scopes=scopes, cacert=cacert)
    try:
        node.start()
        scheme = "https" if tls_cert else "http"
        sys.stderr.write(
            f"strongroom edge of {node.client.addr} listening on {scheme}://{host}:{port}\n"
            f"Site tokens: STRONGROOM_HOME={node.wiring.settings.home} strongroom token create "
            "NAME --policy POLICY\n"
        )
        server = EdgeServer(
            uvicorn.Config(
                node.app(),
                host=host,
                port=port,
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None,
                log_level=(config.log_level or "INFO").lower(),
                lifespan="on",
                **uvicorn_options(config),
            )
        )
        await server.serve()
    finally:
        await node.close()


@app.command("status")
def status(
    ctx: typer.Context,
    addr: Annotated[
        str, typer.Option(help="the edge, as its consumers reach it")
    ] = "http://127.0.0.1:8200",
    cacert: Annotated[
        Path | None, typer.Option(help="PEM bundle that verifies the edge's certificate")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Upstream state, time offline, time left before the bound, replica lag (the edge's
    /readyz, which needs no token); exits 1 when the edge refuses reads."""
    out = output(ctx, json=json)
    report = asyncio.run(_readiness(addr, cacert))
    if out.json:
        out.data(report)
    else:
        figures = report.get("edge") or {}
        out.fields(
            {
                "status": str(report.get("status")),
                "upstream": "online" if figures.get("online") else "offline",
                "upstream error": str(figures.get("upstream_error") or "none"),
                "offline for": f"{figures.get('offline_seconds')} s",
                "left before the bound": f"{figures.get('seconds_left')} s",
                "replica lag": f"{figures.get('lag_seconds')} s",
                "events applied": str(figures.get("events_applied")),
                "journal unshipped": str(figures.get("journal_unshipped")),
                "journal": str(figures.get("journal_error") or "ok"),
            },
            title=f"edge at {addr}",
        )
    if report.get("status") != "ready":
        raise typer.Exit(1)


async def _readiness(addr: str, cacert: Path | None) -> dict[str, Any]:
    import httpx  # noqa: PLC0415 (only this command talks HTTP here)

    from strongroom.client.transport import check_addr, tls_context  # noqa: PLC0415

    base = check_addr(addr)
    try:
        async with httpx.AsyncClient(
            base_url=base, verify=tls_context(cacert), timeout=10, trust_env=False
        ) as client:
            answer = await client.get("/readyz")
    except httpx.HTTPError as exc:
        raise StoreUnavailableError(
            f"the edge at {base} cannot be reached ({type(exc).__name__})"
        ) from None
    body: Any = (
        answer.json()
        if answer.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if not isinstance(body, dict) or "edge" not in body:
        raise ConfigurationError(f"{base} is not a strongroom edge (its /readyz has no edge)")
    return body
