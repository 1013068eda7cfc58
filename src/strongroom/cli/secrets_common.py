"""What the ``strongroom secret`` commands share: one SecretsManager call per command, and how
expiry dates and tags are shown."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from strongroom.cli.output import Lines, Output, short_version, when, when_cell
from strongroom.cli.runtime import run_facade
from strongroom.core.errors import SecretIsDeletedError
from strongroom.core.models import SecretType
from strongroom.services.secrets.secrets_manager import SecretsManager

__all__ = ["TypeOpt", "call_manager", "expiry_cell", "require_secret", "tag_text", "written"]

T = TypeVar("T")

TypeOpt = Annotated[
    SecretType | None,
    typer.Option("--type", case_sensitive=False, help="What the secret is for."),
]


def expiry_cell(moment: Any, now: Any, *, cell: bool = True) -> tuple[str | Lines, str | None]:
    """Expired in red, expiring within two weeks in yellow."""
    if moment is None:
        return ("never", "dim")
    style = "red" if moment <= now else "yellow" if (moment - now).days < 14 else None
    return ((when_cell if cell else when)(moment, now), style)


def tag_text(tags: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def call_manager(ctx: typer.Context, call: Callable[[SecretsManager], Awaitable[T]]) -> T:
    """One SecretsManager call on the configured stores or the server (so one audit event)."""
    return run_facade(ctx, SecretsManager, call)


def require_secret(ctx: typer.Context, name: str) -> None:
    """Raise SecretNotFoundError unless ``name`` is a live or soft-deleted secret."""
    try:
        call_manager(ctx, lambda m: m.get_secret_properties(name))
    except SecretIsDeletedError:
        return


def written(out: Output, verb: str, props: dict[str, Any]) -> None:
    out.done(f"{verb} secret {props['name']} (version {short_version(props['version'])})", props)
