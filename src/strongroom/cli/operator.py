"""``strongroom operator ...``: custody of the master key (init, unseal, seal, status).

``init`` runs where the stores are (it splits the key and prints each share once); the others
talk to a running service over HTTP(S), as key holders do from their own terminals.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from strongroom.cli.options import JsonOpt
from strongroom.cli.runtime import UsageError, command_group, output, settings, user_agent
from strongroom.core import errors
from strongroom.services.custody.holders import open_for_holder, parse_recipients, seal_for_holder
from strongroom.services.custody.init import init_custody

__all__ = ["app"]

app = command_group("operator", "Custody of the master key: init, unseal, seal, status.")

AddrOpt = Annotated[
    str,
    typer.Option("--addr", envvar="STRONGROOM_ADDR", help="The service's URL.", show_default=True),
]
CaOpt = Annotated[
    Path | None,
    typer.Option("--ca-cert", envvar="STRONGROOM_CACERT", help="CA bundle to trust (PEM)."),
]
_DEFAULT_ADDR = "http://127.0.0.1:8200"
#: Error codes of the service, as the errors they were raised as.
_ERRORS: dict[str, type[errors.StrongroomError]] = {
    "bad_share": errors.ShareError,
    "foreign_share": errors.ForeignShareError,
    "duplicate_share": errors.DuplicateShareError,
    "wrong_shares": errors.WrongSharesError,
    "sealed": errors.SealedError,
    "custody": errors.CustodyError,
    "unauthorized": errors.AuthenticationError,
    "forbidden": errors.PermissionDeniedError,
    "bad_parameter": errors.ValidationError,
}


@app.command()
def init(
    ctx: typer.Context,
    key_shares: Annotated[
        int, typer.Option("--key-shares", min=1, max=16, help="Shares to make (one per holder).")
    ] = 5,
    key_threshold: Annotated[
        int, typer.Option("--key-threshold", min=1, max=16, help="Shares needed to unseal.")
    ] = 3,
    holder_key: Annotated[
        list[str] | None,
        typer.Option(
            "--holder-key",
            metavar="AGE_PUBLIC_KEY",
            help="Encrypt each share to its holder's age public key (one per share, in order).",
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Split the master key among key holders; print each share and a first admin token once.

    A new store gets a new master key; a store whose key is configured now (key file or
    STRONGROOM_MASTER_KEY) has that key split. Then run the service with STRONGROOM_SEAL=shamir
    and remove the key file or variable: the service starts sealed. With STRONGROOM_SEAL=pkcs11
    the key is wrapped by a key in the HSM instead (no shares); with
    STRONGROOM_SEAL=azurekeyvault, by the Key Vault key STRONGROOM_AZURE_SEAL_KEY_ID.
    """
    out = output(ctx, json=json)
    config = settings()
    # Checked before anything is made: a bad key must not leave a store with unusable shares.
    recipients = parse_recipients(holder_key, shares=key_shares) if holder_key else None
    result = asyncio.run(init_custody(config, shares=key_shares, threshold=key_threshold))
    if result.shares is None:
        message = (
            f"The master key is wrapped by the HSM's key {result.record.key_label!r}; every "
            "process with STRONGROOM_SEAL=pkcs11 and the HSM's settings unseals itself."
            if result.record.kind == "pkcs11"
            else f"The master key is wrapped by the Key Vault key {result.record.key_label}; "
            "every process with STRONGROOM_SEAL=azurekeyvault and its credentials unseals itself."
        )
        out.done(message, {"seal": result.record.kind, "admin_token": result.admin_token,
                           "new_key": result.new_key})  # fmt: skip
        if not out.json:
            sys.stdout.write(f"Initial admin token: {result.admin_token}\n")
        _warn_configured(out, result.new_key)
        return
    shares = list(result.shares.shares)
    if recipients is not None:
        shares = [seal_for_holder(share, r) for share, r in zip(shares, recipients, strict=True)]
    if out.json:
        out.data(
            {
                "threshold": key_threshold,
                "shares": shares,
                "admin_token": result.admin_token,
                "new_key": result.new_key,
            }
        )
        return
    if recipients is not None:
        lines = [
            f"Key share {i} of {len(shares)}, for {r}:\n{share}"
            for i, (share, r) in enumerate(zip(shares, recipients, strict=True), 1)
        ]
    else:
        lines = [f"Key share {i} of {len(shares)}: {share}" for i, share in enumerate(shares, 1)]
    sys.stdout.write("\n".join(lines) + "\n\n")
    sys.stdout.write(f"Initial admin token: {result.admin_token}\n\n")
    sys.stdout.write(
        f"Give each share to one key holder; any {key_threshold} of them unseal the service.\n"
        "They are shown this once and stored nowhere. Start the service with "
        "STRONGROOM_SEAL=shamir\n"
    )
    _warn_configured(out, result.new_key)


def _warn_configured(out: Any, new_key: bool) -> None:
    if not new_key:
        out.warn(
            "the configured master key is now under custody: remove the key file or "
            "STRONGROOM_MASTER_KEY, or custody guards nothing"
        )


def _client(addr: str, ca_cert: Path | None, token: str | None = None) -> httpx.Client:
    headers = {"User-Agent": user_agent()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    verify: Any = str(ca_cert) if ca_cert is not None else True
    return httpx.Client(base_url=addr.rstrip("/"), headers=headers, verify=verify, timeout=30)


def _call(addr: str, ca_cert: Path | None, method: str, path: str, **kwargs: Any) -> Any:
    """One call to the service; its error answers raised as the errors they were."""
    token = kwargs.pop("token", None)
    try:
        with _client(addr, ca_cert, token) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise errors.StoreUnavailableError(
            f"cannot reach the service at {addr} ({type(exc).__name__})"
        ) from None
    if response.status_code < 400:
        return response.json()
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "error", f"the service answered {response.status_code}"
    if code == "throttled":
        raise errors.RateLimitedError(message, float(response.headers.get("retry-after", "1")))
    raise _ERRORS.get(code, errors.StoreUnavailableError)(message)


def _show(out: Any, status: dict[str, Any]) -> None:
    if out.json:
        out.data(status)
        return
    if not status["sealed"]:
        out.done("Unsealed.", status)
        return
    if "threshold" in status:
        out.done(
            f"Sealed: {status['progress']} of {status['threshold']} shares given "
            f"({status['shares']} exist).",
            status,
        )
    else:
        out.done("Sealed.", status)


def _read_share(identity: Path | None) -> str:
    """One share: typed without echo, one line of stdin, or (with an identity) the age-encrypted
    share on stdin, opened here so that only the share travels to the service."""
    if identity is not None:
        if sys.stdin.isatty():
            raise UsageError("pipe the encrypted share into standard input with --identity")
        return open_for_holder(sys.stdin.read(), identity.read_text(encoding="utf-8"))
    if sys.stdin.isatty():
        entered: str = typer.prompt("Key share (input hidden)", hide_input=True)
        return entered
    return sys.stdin.readline()


@app.command()
def unseal(
    ctx: typer.Context,
    addr: AddrOpt = _DEFAULT_ADDR,
    ca_cert: CaOpt = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Forget the shares given so far instead.")
    ] = False,
    identity: Annotated[
        Path | None,
        typer.Option(
            "--identity",
            metavar="FILE",
            help="Your age identity: stdin holds your share as init encrypted it to you.",
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Give one key share to a sealed service (asked without echo, or one line of stdin)."""
    out = output(ctx, json=json)
    body = {"reset": True} if reset else {"share": _read_share(identity)}
    _show(out, _call(addr, ca_cert, "POST", "/v1/sys/unseal", json=body))


@app.command()
def seal(
    ctx: typer.Context,
    addr: AddrOpt = _DEFAULT_ADDR,
    ca_cert: CaOpt = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="STRONGROOM_TOKEN", help="An admin token."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Seal the service: it drops the master key and answers 503 until unsealed again."""
    out = output(ctx, json=json)
    if not token:
        raise errors.AuthenticationError(
            "sealing needs an admin token (--token or STRONGROOM_TOKEN)"
        )
    _show(out, _call(addr, ca_cert, "POST", "/v1/sys/seal", token=token))


@app.command()
def status(
    ctx: typer.Context, addr: AddrOpt = _DEFAULT_ADDR, ca_cert: CaOpt = None, json: JsonOpt = False
) -> None:
    """Whether the service is sealed, and the unseal's progress (k of n)."""
    out = output(ctx, json=json)
    _show(out, _call(addr, ca_cert, "GET", "/v1/sys/seal-status"))
