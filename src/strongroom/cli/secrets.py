"""``strongroom secret ...``: create, read, version, delete and recover secrets.

Every command is one :class:`~strongroom.SecretsManager` call (so one audit event), except
``list`` filters, which run on the listing. Only ``get`` ever prints a value.
"""

import sys
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Annotated, Any, TypeVar

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
from strongroom.cli.output import (
    Column,
    Lines,
    Output,
    name_column,
    now_utc,
    short_version,
    when,
    when_cell,
)
from strongroom.cli.runtime import command_group, output, require_tty, run
from strongroom.cli.values import read_value
from strongroom.core.errors import SecretIsDeletedError
from strongroom.core.models import SecretType
from strongroom.services.secrets.secrets_manager import SecretsManager
from strongroom.services.wiring import Strongroom

__all__ = ["app"]

T = TypeVar("T")

app = command_group(
    "secret",
    "Create, read, version, delete and recover secrets.",
    # Import and export carry the file formats and the passphrase crypto: loaded on use.
    lazy={
        "import": "strongroom.cli.secrets_transfer:import_",
        "export": "strongroom.cli.secrets_transfer:export",
    },
)

TypeOpt = Annotated[
    SecretType | None,
    typer.Option("--type", case_sensitive=False, help="What the secret is for."),
]


def _expiry_cell(moment: Any, now: Any, *, cell: bool = True) -> tuple[str | Lines, str | None]:
    """Expired in red, expiring within two weeks in yellow."""
    if moment is None:
        return ("never", "dim")
    style = "red" if moment <= now else "yellow" if (moment - now).days < 14 else None
    return ((when_cell if cell else when)(moment, now), style)


def _tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _call(ctx: typer.Context, call: Callable[[SecretsManager], Awaitable[T]]) -> T:
    """One SecretsManager call on the configured stores (so one audit event)."""
    return run(ctx, lambda strongroom: call(SecretsManager(strongroom)))


def _exists(ctx: typer.Context, name: str) -> None:
    """Raise SecretNotFoundError unless ``name`` is a live or soft-deleted secret."""
    try:
        _call(ctx, lambda m: m.get_secret_properties(name))
    except SecretIsDeletedError:
        return


def _written(out: Output, verb: str, props: dict[str, Any]) -> None:
    out.done(f"{verb} secret {props['name']} (version {short_version(props['version'])})", props)


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

    props = _call(
        ctx, lambda m: m.create_secret(name, text, secret_type, tags, expires_in_days, content_type)
    )
    _written(out, "Created", props)


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

    props = _call(
        ctx,
        lambda m: m.update_secret(
            name, text, tags, secret_type=secret_type, content_type=content_type,
            expires_in_days=expires_in_days,
        ),
    )  # fmt: skip
    _written(out, "Updated", props)


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

    props = _call(ctx, lambda m: m.update_secret_properties(name, version, enabled=enabled))
    _written(out, "Enabled" if enabled else "Disabled", props)


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
        _exists(ctx, name)  # ask only when there is something to purge (exit 3 if not)
        require_tty("--purge destroys every version and asks first (add --yes to skip)")
        typer.confirm(f"Purge secret {name} and every version for good?", abort=True)

    result = _call(ctx, lambda m: m.delete_secret(name, immediate=purge))
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

    _written(out, "Recovered", _call(ctx, lambda m: m.recover_deleted_secret(name)))


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
        _call(ctx, lambda m: m.get_deleted_secret(name))  # deleted, live (1) or unknown (3)?
        require_tty("purge destroys every version and asks first (add --yes to skip)")
        typer.confirm(f"Purge deleted secret {name} for good?", abort=True)

    out.done(f"Purged secret {name}", _call(ctx, lambda m: m.purge_deleted_secret(name)))


# -- reads ---------------------------------------------------------------------------------


@app.command()
def get(
    ctx: typer.Context,
    name: NameArg,
    version: VersionOpt = None,
    json: Annotated[
        bool,
        typer.Option("--json", help="Print name, version, content type and value as JSON."),
    ] = False,
) -> None:
    """Print the value and nothing else, for scripts: `export TOKEN=$(strongroom secret get x)`.

    The exact stored text goes to stdout; a newline is added only when stdout is a terminal.
    """
    out = output(ctx, json=json)

    async def work(strongroom: Strongroom) -> tuple[dict[str, Any], bytes, Any]:
        bundle = await SecretsManager(strongroom).get_secret_bundle(name, version)
        return bundle.properties.to_dict(), bundle.value.reveal_bytes(), bundle.value.reveal()

    props, data, decoded = run(ctx, work)
    if out.json:
        keys = ("name", "version", "content_type")
        out.data({**{k: props[k] for k in keys}, "value": decoded})
        return
    stream = sys.stdout.buffer
    stream.write(data)
    if sys.stdout.isatty():
        stream.write(b"\n")
    stream.flush()


@app.command()
def show(
    ctx: typer.Context,
    name: NameArg,
    version: VersionOpt = None,
    json: JsonOpt = False,
) -> None:
    """A version's properties (never its value)."""
    out = output(ctx, json=json)

    props = _call(ctx, lambda m: m.get_secret_properties(name, version))
    if out.json:
        out.data(props)
        return
    now = now_utc()
    out.fields(
        {
            "name": props["name"],
            "version": props["version"],
            "current": "yes" if props["current"] else "no",
            "type": props["secret_type"],
            "content type": props["content_type"] or "-",
            "enabled": ("yes", "green") if props["enabled"] else ("no", "bold red"),
            "created": when(props["created_at"], now),
            "updated": when(props["updated_at"], now),
            "expires": _expiry_cell(props["expires_at"], now, cell=False),
            "not before": when(props["not_before"], now),
            "tags": _tags(props["metadata"]) or "-",
        },
        title=f"secret {props['name']}",
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    secret_type: TypeOpt = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", metavar="KEY=VALUE", help="Only secrets with this tag."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Every live secret's current properties (never a value)."""
    out = output(ctx, json=json)
    wanted = parse_tags(tag) or {}

    found = [
        s
        for s in _call(ctx, lambda m: m.list_secrets())
        if (secret_type is None or s["secret_type"] == secret_type.value)
        and all(s["metadata"].get(k) == v for k, v in wanted.items())
    ]
    found.sort(key=lambda s: s["name"].lower())
    if out.json:
        out.data(found)
        return
    now = now_utc()
    out.table(
        [
            name_column(),
            Column("type", no_wrap=True),
            Column("enabled", no_wrap=True, min_width=7),
            Column("updated"),
            Column("expires"),
            Column("tags"),
        ],
        [
            [
                s["name"],
                s["secret_type"],
                ("yes", None) if s["enabled"] else ("no", "bold red"),
                when_cell(s["updated_at"], now),
                _expiry_cell(s["expires_at"], now),
                _tags(s["metadata"]),
            ]
            for s in found
        ],
        caption=f"{len(found)} secret{'s' if len(found) != 1 else ''}",
    )


@app.command()
def versions(ctx: typer.Context, name: NameArg, json: JsonOpt = False) -> None:
    """Every version of a secret, newest first (never a value)."""
    out = output(ctx, json=json)

    found = _call(ctx, lambda m: m.get_secret_versions(name))
    if out.json:
        out.data(found)
        return
    now = now_utc()
    out.table(
        [
            Column("version", no_wrap=True, min_width=32),
            Column("current", no_wrap=True, min_width=7),
            Column("enabled", no_wrap=True, min_width=7),
            Column("created"),
            Column("expires"),
        ],
        [
            [
                v["version"],
                ("yes", "bold") if v["current"] else "",
                ("yes", None) if v["enabled"] else ("no", "bold red"),
                when_cell(v["created_at"], now),
                _expiry_cell(v["expires_at"], now),
            ]
            for v in found
        ],
        title=f"versions of {name}",
    )


@app.command()
def deleted(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Soft-deleted secrets and when each will be purged."""
    out = output(ctx, json=json)

    found = sorted(_call(ctx, lambda m: m.list_deleted_secrets()), key=lambda s: s["name"].lower())
    if out.json:
        out.data(found)
        return
    now = now_utc()
    out.table(
        [
            name_column(),
            Column("deleted"),
            Column("purged"),
        ],
        [
            [s["name"], when_cell(s["deleted_at"], now), when_cell(s["scheduled_purge_at"], now)]
            for s in found
        ],
        caption=f"{len(found)} deleted secret{'s' if len(found) != 1 else ''}",
    )
