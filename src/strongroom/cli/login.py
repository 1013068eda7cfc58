"""``strongroom login`` and ``strongroom logout``: the remote profile's per-user credential.

``login`` checks a token against the server at STRONGROOM_ADDR and keeps it in the credential
file (mode 0600), so later commands and programs need only the address; ``logout`` removes it.
The token is read from standard input or a hidden prompt, never from the command line, and is
never printed.
"""

import asyncio
import dataclasses
import enum
import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from strongroom.cli.options import JsonOpt
from strongroom.cli.runtime import UsageError, output, settings, user_agent
from strongroom.client import credentials
from strongroom.client.transport import RemoteClient, RemoteConfig, check_addr

__all__ = ["login", "logout", "store_login"]


async def _whoami(config: RemoteConfig) -> dict[str, Any]:
    async with RemoteClient(config, user_agent=user_agent()) as client:
        found: dict[str, Any] = await client.request("GET", "/v1/auth/self")
        return found


def store_login(config: RemoteConfig) -> tuple[dict[str, Any], str]:
    """Check ``config``'s token with the server, then store it for ``config.addr``: who it
    belongs to and where it was stored. Other sign-in methods end here with their token."""
    if config.token is None:
        raise UsageError("no token to log in with")
    who = asyncio.run(_whoami(config))
    path = credentials.save(config.addr, config.token)
    return who, str(path)


def _read_token(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        token = getpass.getpass("Token (input hidden): ").strip()
    if not token:
        raise UsageError("no token given (pipe it on standard input, or type it when asked)")
    return token


class Method(enum.StrEnum):
    TOKEN = "token"  # noqa: S105 (a method name, not a secret)
    JWT = "jwt"
    CERT = "cert"


def _issued_token(
    remote: RemoteConfig,
    method: Method,
    *,
    jwt_file: Path | None,
    role: str | None,
    issuer: str | None,
    cert: Path | None,
    key: Path | None,
) -> str:
    """A short-lived token from the server for a JWT or the client certificate."""
    from strongroom.client.logins import exchange  # noqa: PLC0415 (only these logins need it)

    if method is Method.JWT:
        if jwt_file is None or role is None:
            raise UsageError("--method jwt needs --jwt-file FILE (or -) and --role ROLE")
        text = sys.stdin.read() if str(jwt_file) == "-" else _read_file(jwt_file)
        body: dict[str, Any] = {"jwt": text.strip(), "role": role, "method": issuer}
        issued = asyncio.run(exchange(remote, "/v1/auth/jwt/login", body, user_agent=user_agent()))
    else:
        if cert is None:
            raise UsageError("--method cert needs --cert FILE (with its key, or --key FILE)")
        issued = asyncio.run(exchange(remote, "/v1/auth/cert/login", client_cert=cert,
                                      client_key=key, user_agent=user_agent()))  # fmt: skip
    token = issued.get("token")
    if not isinstance(token, str):
        raise UsageError("the server answered the login without a token")
    return token


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc


def login(
    ctx: typer.Context,
    addr: Annotated[
        str | None,
        typer.Option("--addr", metavar="URL", help="The server (default: STRONGROOM_ADDR)."),
    ] = None,
    token_stdin: Annotated[
        bool,
        typer.Option("--token-stdin", help="Read the token from standard input (scripts)."),
    ] = False,
    method: Annotated[
        Method,
        typer.Option(
            help="token: a token you hold; jwt: exchange a JWT (a workload's "
            "platform token); cert: exchange the TLS client certificate"
        ),
    ] = Method.TOKEN,
    jwt_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="--method jwt: the JWT's file (- for stdin), e.g. "
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
        ),
    ] = None,
    role: Annotated[str | None, typer.Option(help="--method jwt: the role to log in as")] = None,
    issuer: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="--method jwt: the server's JWT method ([jwt.NAME]), when it has several",
        ),
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(metavar="FILE", help="--method cert: client certificate (PEM)")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="--method cert: its private key, if not in --cert"),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Log in and store the token in the credential file (mode 0600).

    With a token (the default), it comes from standard input or a hidden prompt (or
    STRONGROOM_TOKEN), never from the command line, where other users could see it. With
    --method jwt or cert, the server exchanges the proof for a short-lived token, stored the
    same way."""
    out = output(ctx, json=json)
    config = settings()
    where = addr or config.addr
    if not where:
        raise UsageError("no server: set STRONGROOM_ADDR or pass --addr https://host:port")
    remote = RemoteConfig(
        addr=check_addr(where),
        token=None,
        cacert=config.cacert,
        timeout=config.remote_timeout_seconds,
        retries=config.remote_retries,
    )
    if method is Method.TOKEN:
        token = os.environ.get("STRONGROOM_TOKEN") if not token_stdin else None
        token = token or _read_token(token_stdin)
    else:
        token = _issued_token(remote, method, jwt_file=jwt_file, role=role, issuer=issuer,
                              cert=cert, key=key)  # fmt: skip
    remote = dataclasses.replace(remote, token=token)
    who, path = store_login(remote)
    out.done(
        f"logged in to {remote.addr} as {who['identity']}; token stored in {path}",
        {"addr": remote.addr, "identity": who["identity"], "policies": who["policies"],
         "credential_file": path},
    )  # fmt: skip


def logout(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Remove the stored token (the credential file of `strongroom login`)."""
    out = output(ctx, json=json)
    path = credentials.credential_path()
    removed = credentials.forget(path)
    message = f"logged out; removed {path}" if removed else f"not logged in (no {path})"
    out.done(message, {"removed": removed, "credential_file": str(path)})
