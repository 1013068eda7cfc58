"""``strongroom serve``: the HTTP service (REST API, Key Vault-compatible API, metrics) and the
rotation scheduler, in one process or several workers."""

import asyncio
import os
import shlex
import shutil
import ssl
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.runtime import UsageError, settings
from strongroom.core.config import Backend, Settings
from strongroom.core.logging import configure_logging
from strongroom.server.metrics_share import METRICS_DIR_ENV
from strongroom.server.protocol import client_certificate_context, uvicorn_options
from strongroom.services.wiring import Strongroom

__all__ = ["admin_hint", "client_certificates", "serve"]


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8200,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            help="ask clients for a certificate verified against this CA bundle (PEM; mTLS, "
            "optional per client); default STRONGROOM_TLS_CLIENT_CA"
        ),
    ] = None,
    graceful_timeout: Annotated[
        int, typer.Option(min=1, help="seconds to finish in-flight requests on shutdown")
    ] = 30,
) -> None:
    """Serve the API until SIGINT/SIGTERM; shutdown finishes in-flight requests first."""
    import uvicorn  # noqa: PLC0415 (only this command needs the server)

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    config = settings()
    client_ca = tls_client_ca or config.tls_client_ca
    if client_ca is not None and tls_cert is None:
        raise UsageError("client certificates need TLS: give --tls-cert and --tls-key too")
    configure_logging(config.log_level or "INFO", debug=config.debug)
    if config.backend is Backend.MEMORY and workers > 1:
        raise UsageError("the memory profile keeps secrets in one process: use --workers 1")
    if config.seal == "shamir" and workers > 1:
        # Each worker process would need its own unseal, and a load balancer picks which one
        # a key holder reaches: one worker per replica (docs/custody.md).
        raise UsageError("a service sealed by a quorum runs one worker: use --workers 1")
    if config.seal == "key":
        # Open once before any worker starts: creates the key file and schema exactly once.
        # (Under custody the stores open only once unsealed: an HSM that is down leaves the
        # service up and sealed, saying why.)
        asyncio.run(_prepare(config))
    if workers > 1:
        # Workers publish their metrics here so /metrics, whichever worker answers, sums them.
        folder = config.home / "run" / f"metrics-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700)
        os.environ[METRICS_DIR_ENV] = str(folder)
    scheme = "https" if tls_cert else "http"
    sys.stderr.write(
        f"strongroom {config.backend.value} profile listening on {scheme}://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''})\n" + admin_hint(config)
    )
    uvicorn.run(
        "strongroom.server.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        **client_certificates(client_ca),
        timeout_graceful_shutdown=graceful_timeout,
        log_level=(config.log_level or "INFO").lower(),
        lifespan="on",
        **uvicorn_options(config),  # the HTTP protocol with its timeouts, no proxy headers
    )
    if workers > 1:
        shutil.rmtree(folder, ignore_errors=True)


def client_certificates(ca: Path | None) -> dict[str, Any]:
    """uvicorn's options to ask for a client certificate chained to ``ca`` (optional: token
    callers need none; another CA's certificate fails the handshake, and the application checks
    the dates and the whole chain again, answering 401 with an audit event)."""
    if ca is None:
        return {}
    return {
        "ssl_ca_certs": str(ca),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "ssl_context_factory": client_certificate_context,
    }


def admin_hint(config: Settings) -> str:
    """How to get the first token: the very command, with this server's store, runnable as
    printed (the full path of this strongroom, the data directory it uses)."""
    beside_python = Path(sys.executable).with_name("strongroom")
    if Path(sys.argv[0]).name == "strongroom" and Path(sys.argv[0]).exists():
        command = shlex.quote(str(Path(sys.argv[0]).absolute()))
    elif beside_python.exists():
        command = shlex.quote(str(beside_python))
    else:
        command = f"{shlex.quote(sys.executable)} -m strongroom.cli"
    if config.seal == "shamir":
        return (
            "The service starts sealed: each key holder gives a share with\n"
            f"  {command} operator unseal --addr URL\n"
        )
    if config.backend is Backend.MEMORY:
        return (
            "The memory profile keeps everything in this process, tokens included: another "
            "process cannot issue one. Use the embedded default to try the service.\n"
        )
    if config.backend in (Backend.SQLITE, Backend.AZURE) and not config.state_in_postgres:
        env = f"STRONGROOM_HOME={shlex.quote(str(config.home))} "
        same = ""
    else:
        env = ""
        same = "  (in an environment with the same DATABASE_URL and master key as this server)\n"
    return (
        "Get an admin token (printed once) with:\n"
        f"  {env}{command} token create admin --policy admin\n{same}"
    )


async def _prepare(config: Settings) -> None:
    app = await Strongroom.open(config)
    await app.close()
