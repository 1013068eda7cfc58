"""``strongroom token ...`` and ``strongroom policy ...``: who may call the HTTP service.

On the server's host (master key at hand) these commands open the store directly, so they are
how the first admin token is made: ``strongroom token create admin --policy admin``. In the
remote profile (STRONGROOM_ADDR) they ask the server, which requires an admin grant.
"""

from datetime import timedelta
from typing import Annotated, Any

import typer

from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import Column, now_utc, when
from strongroom.cli.runtime import UsageError, Wiring, command_group, output, run_any
from strongroom.core.policy import Policy
from strongroom.services.access.admin import AccessAdmin, LocalAccessAdmin

__all__ = ["policy_app", "token_app"]

MAX_TTL_DAYS = 3650

token_app = command_group("token", "Issue, list and revoke bearer tokens for the HTTP service.")
policy_app = command_group(
    "policy", "Policies: which actions an identity may take on which secrets."
)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(help="who the token acts as, e.g. dispatch-api")],
    policy: Annotated[
        list[str] | None, typer.Option("--policy", "-p", help="attach this policy first")
    ] = None,
    description: Annotated[str, typer.Option(help="what the token is for")] = "",
    ttl_days: Annotated[
        float | None,
        typer.Option(help="expire after this many days (more than 0, at most 3650)"),
    ] = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Issue a token: printed once, stored only as a keyed hash.

    The identity needs at least one policy (`--policy`, or one attached before): a token with
    none could do nothing, so it is refused.
    """
    out = output(ctx, json=json, quiet=quiet)
    if ttl_days is not None and not 0 < ttl_days <= MAX_TTL_DAYS:
        raise UsageError(f"--ttl-days must be more than 0 and at most {MAX_TTL_DAYS}")

    async def work(wiring: Wiring) -> dict[str, Any]:
        admin = _admin(wiring)
        if not policy and not await _bound_policies(admin, identity):
            raise UsageError(
                f"identity {identity!r} has no policy, so its token could do nothing: give "
                f"--policy NAME (repeat for more), or first `strongroom policy attach NAME "
                f"{identity}`"
            )
        ttl = timedelta(days=ttl_days) if ttl_days is not None else None
        return await admin.create_token(identity, list(policy or []), description, ttl)

    result = run_any(ctx, work)
    if out.json:
        out.data(result)
        return
    # The token is the result: print it even with --quiet, alone on stdout for scripts.
    typer.echo(result["token"])
    out.note(
        f"Token {result['id']} for {result['identity']}; shown once, store it now. "
        "Use it as: Authorization: Bearer <token>"
    )


def _admin(wiring: Wiring) -> AccessAdmin:
    """The stores' administration, or the server's in the remote profile."""
    from strongroom.client.transport import RemoteClient  # noqa: PLC0415

    if isinstance(wiring, RemoteClient):
        from strongroom.services.remote.access import RemoteAccessAdmin  # noqa: PLC0415

        return RemoteAccessAdmin(wiring)
    return LocalAccessAdmin(wiring)


async def _bound_policies(admin: AccessAdmin, identity: str) -> list[str]:
    for bound in await admin.identities():
        if bound["identity"] == identity:
            return list(bound["policies"])
    return []


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    identity: Annotated[str | None, typer.Option(help="only this identity's tokens")] = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Tokens with their identity and state (never the tokens themselves)."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(wiring: Wiring) -> list[dict[str, Any]]:
        return await _admin(wiring).list_tokens(identity)

    rows = run_any(ctx, work)
    if out.json:
        out.data(rows)
        return
    now = now_utc()
    out.table(
        [Column("id", no_wrap=True, min_width=16), Column("identity", style="bold"),
         Column("created"), Column("expires"), Column("state"), Column("description")],
        [
            [
                r["id"], r["identity"], when(r["created_at"], now), when(r["expires_at"], now),
                "revoked" if r["revoked_at"] else
                "expired" if r["expires_at"] and r["expires_at"] <= now else "active",
                r["description"],
            ]
            for r in rows
        ],
    )  # fmt: skip


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="the token's id (or the token itself)")],
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Revoke a token at once."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(wiring: Wiring) -> dict[str, Any]:
        return await _admin(wiring).revoke_token(token_id)

    result = run_any(ctx, work)
    out.done(f"Token {result['id']} of {result['identity']} is revoked.", result)


@policy_app.command("set")
def policy_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="policy name")],
    grant: Annotated[
        list[str],
        typer.Option("--grant", "-g", help="ACTIONS:PATTERN, e.g. read,list:dispatch-*"),
    ],
    description: Annotated[str, typer.Option(help="what the policy is for")] = "",
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create or replace a policy. Actions: read, list, write, delete, rotate, revoke-request,
    revoke-approve, revoke-break-glass, audit-read, admin."""
    out = output(ctx, json=json, quiet=quiet)
    policy = Policy.build(name, list(grant), description)

    async def work(wiring: Wiring) -> dict[str, Any]:
        return await _admin(wiring).put_policy(policy)

    result = run_any(ctx, work)
    grants = "; ".join(f"{', '.join(g['actions'])} on {g['pattern']}" for g in result["grants"])
    out.done(f"Policy {name}: {grants}", result)


@policy_app.command("list")
def policy_list(ctx: typer.Context, json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Every policy, built in ones included."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(wiring: Wiring) -> list[dict[str, Any]]:
        return await _admin(wiring).list_policies()

    rows = run_any(ctx, work)
    if out.json:
        out.data(rows)
        return
    out.table(
        [Column("policy", style="bold", no_wrap=True), Column("grants"), Column("description")],
        [
            [
                r["name"],
                "; ".join(f"{','.join(g['actions'])}:{g['pattern']}" for g in r["grants"]),
                r["description"],
            ]
            for r in rows
        ],
    )


@policy_app.command("delete")
def policy_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="policy name")],
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete a policy; identities holding it lose what it granted at once."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(wiring: Wiring) -> dict[str, Any]:
        await _admin(wiring).delete_policy(name)
        return {"name": name, "deleted": True}

    out.done(f"Policy {name} deleted.", run_any(ctx, work))


@policy_app.command("attach")
def policy_attach(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="policy name")],
    identity: Annotated[str, typer.Argument(help="identity")],
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Give an identity a policy."""
    _bind(ctx, name, identity, attach=True, json=json, quiet=quiet)


@policy_app.command("detach")
def policy_detach(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="policy name")],
    identity: Annotated[str, typer.Argument(help="identity")],
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Take a policy away from an identity."""
    _bind(ctx, name, identity, attach=False, json=json, quiet=quiet)


def _bind(
    ctx: typer.Context, policy: str, identity: str, *, attach: bool, json: bool, quiet: bool
) -> None:
    out = output(ctx, json=json, quiet=quiet)

    async def work(wiring: Wiring) -> dict[str, Any]:
        admin = _admin(wiring)
        change = admin.attach if attach else admin.detach
        return {"identity": identity, "policies": await change(identity, policy)}

    result = run_any(ctx, work)
    out.done(f"{identity} holds: {', '.join(result['policies']) or 'nothing'}.", result)
