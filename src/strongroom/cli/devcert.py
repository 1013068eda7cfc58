"""``strongroom dev-cert``: HTTPS on one machine in one command (a private CA, a server
certificate, and the lines to use them with serve, curl and the Azure SDK)."""

import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.runtime import UsageError, output, settings
from strongroom.core.devcert import DEFAULT_HOSTS, make_dev_certificates

__all__ = ["dev_cert"]

FILES = {
    "ca_cert": ("ca.pem", 0o644),
    "ca_key": ("ca-key.pem", 0o600),
    "server_cert": ("server.pem", 0o644),
    "server_key": ("server-key.pem", 0o600),
}


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)


def dev_cert(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(metavar="DIR", help="Where to write them (default: $STRONGROOM_HOME/tls)."),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="NAME",
            help="A name or address the server answers to (repeat; default: localhost, "
            "vault.localhost, 127.0.0.1, ::1).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace certificates already there.")] = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Make a development CA and a server certificate for HTTPS on this machine.

    For trying strongroom only: the CA's key is written beside its certificate.
    """
    out = output(ctx, json=json, quiet=quiet)
    folder = directory or settings().home / "tls"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {key: folder / name for key, (name, _) in FILES.items()}
    if not force and any(path.exists() for path in paths.values()):
        raise UsageError(f"certificates already exist in {folder} (add --force to replace them)")
    certs = make_dev_certificates(tuple(host) if host else DEFAULT_HOSTS)
    for key, (_, mode) in FILES.items():
        _write(paths[key], getattr(certs, key), mode)
    shown = {key: str(path) for key, path in paths.items()}
    if out.json:
        out.data({**shown, "not_after": certs.not_after})
        return
    ca, cert, key = (shlex.quote(shown[k]) for k in ("ca_cert", "server_cert", "server_key"))
    for line in (
        f"Development certificates in {folder} (until {certs.not_after:%Y-%m-%d}; for trying "
        "strongroom only)",
        f"  serve:  strongroom serve --tls-cert {cert} --tls-key {key}",
        f"  curl:   curl --cacert {ca} https://localhost:8200/healthz",
        f"  Python: STRONGROOM_CACERT={ca}, or the Azure SDK's connection_verify={ca}",
    ):
        out.done(line)
