"""What every command shares: the global options, and running one library call.

Each command opens the configured stores (``Strongroom.open(Settings())`` from the same
environment variables as the library), acts as ``--as NAME`` or the OS user at this host, does
its work in one ``asyncio.run`` and closes the stores again. Errors are not handled here: they
travel up to :func:`strongroom.cli.main.main`, which maps them to exit codes in one place.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import strongroom
from strongroom.cli.output import Output
from strongroom.core.actor import acting_as, default_actor
from strongroom.core.config import Settings
from strongroom.core.errors import ConfigurationError, StrongroomError, ValidationError
from strongroom.core.logging import configure_logging

__all__ = [
    "CliState",
    "NotFoundError",
    "UsageError",
    "Wiring",
    "command_group",
    "output",
    "require_tty",
    "run",
    "run_any",
    "run_facade",
    "state",
    "user_agent",
]

if TYPE_CHECKING:
    import typer

    from strongroom.client.transport import RemoteClient
    from strongroom.services.wiring import Strongroom

T = TypeVar("T")
F = TypeVar("F")

#: What a command that also works remotely is given: the local wiring, or in the remote
#: profile the client of the server (the seed's facades take either).
Wiring: TypeAlias = "Strongroom | RemoteClient"


class UsageError(ValidationError):
    """Bad input caught by the CLI itself (exit code 2, like a bad option)."""


class NotFoundError(StrongroomError, LookupError):
    """Something a command names is not there and the library only said so with a False
    (an event subscription id): exit code 3, like a missing secret."""

    code = "not_found"


@dataclass(slots=True)
class CliState:
    """The root options (``strongroom --as NAME --json --quiet --verbose ...``)."""

    actor: str | None = None
    json: bool = False
    quiet: bool = False
    verbose: bool = False


def command_group(name: str, help_text: str, *, lazy: dict[str, str] | None = None) -> typer.Typer:
    """A command group with the settings every group shares: plain help (no rich panels: the
    same text on every terminal), -h, and its help when called without a command. ``lazy``
    names commands imported only when used ("module:function")."""
    # Imported here: this module serves the hot path too (cli.hotpath), which runs without typer.
    import typer  # noqa: PLC0415

    from strongroom.cli.lazy import lazy_group  # noqa: PLC0415

    return typer.Typer(
        name=name,
        cls=lazy_group(lazy or {}),
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def state(ctx: typer.Context | CliState) -> CliState:
    """The root options of a typer context (the hot path passes its own CliState)."""
    if isinstance(ctx, CliState):
        return ctx
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState()


def output(ctx: typer.Context | CliState, *, json: bool = False, quiet: bool = False) -> Output:
    """The output of this command: ``--json``/``--quiet`` given here or before the command."""
    root = state(ctx)
    return Output(json=json or root.json, quiet=quiet or root.quiet)


def user_agent() -> str:
    return f"strongroom-cli/{strongroom.__version__}"


def require_tty(what: str) -> None:
    """Refuse to prompt when nobody can answer (a script, a pipe)."""
    if not sys.stdin.isatty():
        raise UsageError(f"{what}, and standard input is not a terminal to ask on")


def _configure_logging(verbose: bool) -> None:
    """Library logs go to stderr as JSON lines: errors only (a command says what it did in
    its own words), everything from INFO with ``-v``, or what LOG_LEVEL says."""
    level = "INFO" if verbose else os.environ.get("LOG_LEVEL", "ERROR")
    configure_logging(level)


def settings() -> Settings:
    """The library's settings from the environment; a bad variable is a ConfigurationError
    that names the variable, never its value (a key, a token or a URL with a password)."""
    return Settings()


def run(
    ctx: typer.Context | CliState,
    work: Callable[[Strongroom], Awaitable[T]],
    *,
    config: Settings | None = None,
) -> T:
    """Open the configured stores (``config``, else the environment's), run ``work`` as the
    acting user, close the stores."""
    root = state(ctx)
    _configure_logging(root.verbose)
    config = config or settings()
    if config.remote:
        command = "" if isinstance(ctx, CliState) else ctx.command_path.partition(" ")[2]
        raise ConfigurationError(
            f"`strongroom {command}` works on the local stores only "
            "(it needs the master key); unset STRONGROOM_ADDR and run it on the server's host"
        )
    actor = root.actor if root.actor is not None else default_actor().id
    agent = user_agent()
    if root.actor is not None:
        # A claimed name never hides who acted: the OS user rides along in the audit row.
        agent = f"{agent} (os-user {default_actor().id})"

    # Imported here: the remote profile (run_any) never opens a local store.
    from strongroom.services.wiring import Strongroom  # noqa: PLC0415

    async def go() -> T:
        with acting_as(actor, user_agent=agent):
            app = await Strongroom.open(config)
            try:
                return await work(app)
            finally:
                await app.close()

    return asyncio.run(go())


@contextmanager
def _claimed(actor: str | None) -> Iterator[None]:
    """``--as NAME`` in the remote profile: a note the server records, never an identity."""
    if actor is None:
        yield
        return
    with acting_as(actor):
        yield


def run_any(
    ctx: typer.Context | CliState,
    work: Callable[[Wiring], Awaitable[T]],
    *,
    config: Settings | None = None,
) -> T:
    """``run`` for commands that also work in the remote profile (STRONGROOM_ADDR): there
    ``work`` gets one HTTPS client to the server, where the token's identity acts and
    ``--as`` is only a note; nothing local is opened."""
    config = config or settings()
    if not config.remote:
        return run(ctx, work, config=config)
    from strongroom.client.transport import RemoteClient, RemoteConfig  # noqa: PLC0415

    root = state(ctx)
    _configure_logging(root.verbose)
    remote = RemoteConfig.from_settings(config)

    async def go() -> T:
        async with RemoteClient(remote, user_agent=user_agent()) as client:
            with _claimed(root.actor):
                return await work(client)

    return asyncio.run(go())


def run_facade(
    ctx: typer.Context | CliState,
    make: Callable[[Any], F],
    work: Callable[[F], Awaitable[T]],
    *,
    config: Settings | None = None,
) -> T:
    """Build a facade (``make(wiring)``) and run ``work`` on it, locally or remotely."""
    return run_any(ctx, lambda wiring: work(make(wiring)), config=config)
