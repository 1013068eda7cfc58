"""``strongroom secret ...``: create, read, version, delete and recover secrets.

Every command is one :class:`~strongroom.SecretsManager` call (so one audit event), except
``list`` filters, which run on the listing. Only ``get`` ever prints a value.
"""

from datetime import UTC
from typing import Annotated, TypeVar

import typer

from strongroom.cli.options import (
    ContentTypeOpt,
    ExpiresOpt,
    FromFileOpt,
    JsonOpt,
    KeepNewlineOpt,
    NameArg,
    QuietOpt,
    SourceArg,
    TagOpt,
    ValueOpt,
    VersionOpt,
    YesOpt,
    parse_tags,
)
from strongroom.cli.runtime import command_group, output, require_tty
from strongroom.cli.secrets_common import TypeOpt, call_manager, require_secret, written
from strongroom.cli.values import read_value
from strongroom.core.models import SecretType

__all__ = ["app"]

T = TypeVar("T")

app = command_group(
    "secret",
    "Create, read, version, delete and recover secrets.",
    # Reads (the hot path: `secret get`) and import/export (formats, passphrase crypto) load
    # only when used.
    lazy={
        "get": "strongroom.cli.secrets_read:get",
        "show": "strongroom.cli.secrets_read:show",
        "list": "strongroom.cli.secrets_read:list_",
        "versions": "strongroom.cli.secrets_read:versions",
        "deleted": "strongroom.cli.secrets_read:deleted",
        "import": "strongroom.cli.secrets_import:import_",
        "export": "strongroom.cli.secrets_transfer:export",
    },
)

# -- writes --------------------------------------------------------------------------------


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    source: SourceArg = None,
    from_file: FromFileOpt = None,
    value: ValueOpt = None,
    secret_type: Annotated[
        SecretType, typer.Option("--type", case_sensitive=False, help="What the secret is for.")
    ] = SecretType.GENERIC,
    tag: TagOpt = None,
    expires_in_days: ExpiresOpt = None,
    content_type: ContentTypeOpt = None,
    keep_newline: KeepNewlineOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Store a new secret (the name must be free; `update` adds versions).

    The value comes from a prompt without echo, from standard input (`-`) or `--from-file`.
    """
    out = output(ctx, json=json, quiet=quiet)
    tags = parse_tags(tag)
    text = read_value(
        out,
        source=source,
        from_file=from_file,
        value=value,
        keep_newline=keep_newline,
        confirm=True,
    )

    props = call_manager(
        ctx, lambda m: m.create_secret(name, text, secret_type, tags, expires_in_days, content_type)
    )
    written(out, "Created", props)


@app.command()
def update(
    ctx: typer.Context,
    name: NameArg,
    source: SourceArg = None,
    from_file: FromFileOpt = None,
    value: ValueOpt = None,
    secret_type: TypeOpt = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            "-t",
            metavar="KEY=VALUE",
            help="Replace the tags with these (repeat; default: keep the current tags).",
        ),
    ] = None,
    expires_in_days: ExpiresOpt = None,
    content_type: ContentTypeOpt = None,
    keep_newline: KeepNewlineOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Add a new current version with a new value; type and tags carry over unless given."""
    out = output(ctx, json=json, quiet=quiet)
    tags = parse_tags(tag)
    text = read_value(
        out,
        source=source,
        from_file=from_file,
        value=value,
        keep_newline=keep_newline,
        confirm=True,
    )

    props = call_manager(
        ctx,
        lambda m: m.update_secret(
            name, text, tags, secret_type=secret_type, content_type=content_type,
            expires_in_days=expires_in_days,
        ),
    )  # fmt: skip
    written(out, "Updated", props)


@app.command()
def enable(
    ctx: typer.Context,
    name: NameArg,
    version: VersionOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Allow a version's value to be read again."""
    _set_enabled(ctx, name, version, enabled=True, json=json, quiet=quiet)


@app.command()
def disable(
    ctx: typer.Context,
    name: NameArg,
    version: VersionOpt = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Refuse reads of a version's value (it stays stored; `enable` undoes this)."""
    _set_enabled(ctx, name, version, enabled=False, json=json, quiet=quiet)


def _set_enabled(
    ctx: typer.Context, name: str, version: str | None, *, enabled: bool, json: bool, quiet: bool
) -> None:
    out = output(ctx, json=json, quiet=quiet)

    props = call_manager(ctx, lambda m: m.update_secret_properties(name, version, enabled=enabled))
    written(out, "Enabled" if enabled else "Disabled", props)


@app.command()
def delete(
    ctx: typer.Context,
    name: NameArg,
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Delete for good at once, with every version (asks first)."),
    ] = False,
    yes: YesOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Soft-delete a secret: recoverable for the recovery window (`recover`, `purge`)."""
    out = output(ctx, json=json, quiet=quiet)
    if purge and not yes:
        require_secret(ctx, name)  # ask only when there is something to purge (exit 3 if not)
        require_tty("--purge destroys every version and asks first (add --yes to skip)")
        typer.confirm(f"Purge secret {name} and every version for good?", abort=True)

    result = call_manager(ctx, lambda m: m.delete_secret(name, immediate=purge))
    if purge:
        out.done(f"Purged secret {name}", result)
    else:
        purge_at = result["scheduled_purge_at"]
        out.done(
            f"Deleted secret {name}; recoverable for {result['recoverable_days']} days "
            f"(until {purge_at.astimezone(UTC):%Y-%m-%d %H:%MZ}) with `secret recover`",
            result,
        )


@app.command()
def recover(
    ctx: typer.Context, name: NameArg, json: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Bring back a soft-deleted secret with all its versions."""
    out = output(ctx, json=json, quiet=quiet)

    written(out, "Recovered", call_manager(ctx, lambda m: m.recover_deleted_secret(name)))


@app.command()
def purge(
    ctx: typer.Context,
    name: NameArg,
    yes: YesOpt = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove a soft-deleted secret for good (asks first)."""
    out = output(ctx, json=json, quiet=quiet)
    if not yes:
        call_manager(ctx, lambda m: m.get_deleted_secret(name))  # deleted, live (1) or unknown (3)?
        require_tty("purge destroys every version and asks first (add --yes to skip)")
        typer.confirm(f"Purge deleted secret {name} for good?", abort=True)

    out.done(f"Purged secret {name}", call_manager(ctx, lambda m: m.purge_deleted_secret(name)))
