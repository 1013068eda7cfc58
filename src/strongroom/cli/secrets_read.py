"""``strongroom secret get / show / list / versions / deleted``: reading values and
properties. ``get`` is the hot path of scripts: this module loads only what it needs."""

from typing import Annotated

import typer

from strongroom.cli.getvalue import pick_field, print_value
from strongroom.cli.options import JsonOpt, NameArg, VersionOpt, parse_tags
from strongroom.cli.output import Column, name_column, now_utc, when, when_cell
from strongroom.cli.runtime import output
from strongroom.cli.secrets_common import TypeOpt, call_manager, expiry_cell, tag_text

__all__ = ["deleted", "get", "list_", "pick_field", "show", "versions"]


def get(
    ctx: typer.Context,
    name: NameArg,
    version: VersionOpt = None,
    json: Annotated[
        bool,
        typer.Option("--json", help="Print name, version, content type and value as JSON."),
    ] = False,
    field: Annotated[
        str | None,
        typer.Option(
            "--field", metavar="KEY", help="Print one field of a JSON object secret instead."
        ),
    ] = None,
) -> None:
    """Print the value and nothing else, for scripts: `export TOKEN=$(strongroom secret get x)`.

    The exact stored text goes to stdout; a newline is added only when stdout is a terminal.
    """
    print_value(ctx, name, version=version, json=json, field=field)


def show(
    ctx: typer.Context,
    name: NameArg,
    version: VersionOpt = None,
    json: JsonOpt = False,
) -> None:
    """A version's properties (never its value)."""
    out = output(ctx, json=json)

    props = call_manager(ctx, lambda m: m.get_secret_properties(name, version))
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
            "expires": expiry_cell(props["expires_at"], now, cell=False),
            "not before": when(props["not_before"], now),
            "tags": tag_text(props["metadata"]) or "-",
        },
        title=f"secret {props['name']}",
    )


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
        for s in call_manager(ctx, lambda m: m.list_secrets())
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
                expiry_cell(s["expires_at"], now),
                tag_text(s["metadata"]),
            ]
            for s in found
        ],
        caption=f"{len(found)} secret{'s' if len(found) != 1 else ''}",
    )


def versions(ctx: typer.Context, name: NameArg, json: JsonOpt = False) -> None:
    """Every version of a secret, newest first (never a value)."""
    out = output(ctx, json=json)

    found = call_manager(ctx, lambda m: m.get_secret_versions(name))
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
                expiry_cell(v["expires_at"], now),
            ]
            for v in found
        ],
        title=f"versions of {name}",
    )


def deleted(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Soft-deleted secrets and when each will be purged."""
    out = output(ctx, json=json)

    found = sorted(
        call_manager(ctx, lambda m: m.list_deleted_secrets()), key=lambda s: s["name"].lower()
    )
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
