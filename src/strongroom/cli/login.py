"""``strongroom login`` and ``strongroom logout``: the remote profile's per-user credential.

``login`` checks a token against the server at STRONGROOM_ADDR and keeps it in the credential
file (mode 0600), so later commands and programs need only the address; ``logout`` removes it.
The token is read from standard input or a hidden prompt, never from the command line, and is
never printed.
"""

import asyncio
import getpass
import os
import sys
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
    json: JsonOpt = False,
) -> None:
    """Check a token with the server and store it in the credential file (mode 0600).

    The token comes from standard input or a hidden prompt (or STRONGROOM_TOKEN), never from
    the command line, where other users could see it."""
    out = output(ctx, json=json)
    config = settings()
    where = addr or config.addr
    if not where:
        raise UsageError("no server: set STRONGROOM_ADDR or pass --addr https://host:port")
    token = os.environ.get("STRONGROOM_TOKEN") if not token_stdin else None
    remote = RemoteConfig(
        addr=check_addr(where),
        token=token or _read_token(token_stdin),
        cacert=config.cacert,
        timeout=config.remote_timeout_seconds,
        retries=config.remote_retries,
    )
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
