"""``strongroom run``: start a program with secrets in its environment, for consumers that are
not Python.

The values go into the child's environment only (never its command line, never printed). The
child gets the signals ``strongroom run`` receives (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
SIGUSR2) and its exit code is returned (128 + N when signal N ended it, as a shell reports).
With ``--watch`` (the remote profile) the server's change feed is followed: when one of the
secrets changes, the child is restarted with the new values, or sent a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from strongroom.cli.runtime import UsageError, Wiring, run_any, state
from strongroom.core.errors import ConfigurationError, SecretNotFoundError, ValidationError
from strongroom.core.validation import validate_name
from strongroom.services.secrets.secrets_manager import SecretsManager

__all__ = ["Binding", "env_name", "parse_bindings", "run_command"]

FORWARDED = (
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
)  # fmt: skip
_VAR = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_STOP_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Binding:
    """An environment variable taken from a secret (or one field of a JSON object secret)."""

    variable: str
    secret: str
    field: str | None = None


def _check_variable(name: str) -> str:
    if not name or name[0].isdigit() or not set(name) <= _VAR:
        raise UsageError(f"{name!r} is not an environment variable name (A-Z, 0-9, _)")
    return name


def parse_bindings(specs: list[str]) -> list[Binding]:
    """``VAR=SECRET`` or ``VAR=SECRET#FIELD`` (a field of a JSON object secret)."""
    found = []
    for spec in specs:
        variable, sep, target = spec.partition("=")
        if not sep or not target:
            raise UsageError(f"--env takes VAR=SECRET or VAR=SECRET#FIELD, not {spec!r}")
        secret, _, field = target.partition("#")
        try:
            validate_name(secret)
        except ValidationError as exc:
            raise UsageError(str(exc)) from None
        found.append(Binding(_check_variable(variable), secret, field or None))
    return found


def env_name(secret: str, prefix: str) -> str:
    """``dispatch-radio-key`` with prefix ``dispatch-`` -> ``RADIO_KEY``."""
    return secret[len(prefix) :].upper().replace("-", "_")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


async def _values(
    manager: SecretsManager, bindings: list[Binding], prefix: str | None
) -> tuple[dict[str, str], set[str]]:
    """The environment to add, and the names of the secrets it came from."""
    env: dict[str, str] = {}
    names: set[str] = set()
    if prefix is not None:
        for props in await manager.list_secrets():
            name = props["name"]
            if name.lower().startswith(prefix.lower()) and len(name) > len(prefix):
                env[_check_variable(env_name(name, prefix))] = _text(await manager.get_secret(name))
                names.add(name.lower())
    for binding in bindings:
        value = await manager.get_secret(binding.secret)
        if binding.field is not None:
            if not isinstance(value, dict):
                raise UsageError(
                    f"secret {binding.secret!r} is not a JSON object; #FIELD needs one"
                )
            if binding.field not in value:
                raise SecretNotFoundError(
                    f"secret {binding.secret!r} has no field {binding.field!r}"
                )
            value = value[binding.field]
        env[binding.variable] = _text(value)
        names.add(binding.secret.lower())
    return env, names


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    """One child at a time, with the signals forwarded and restarts on change."""

    def __init__(self, command: list[str], base_env: Mapping[str, str]) -> None:
        self.command = command
        self.base_env = dict(base_env)
        self.child: asyncio.subprocess.Process | None = None
        self.stopping = False

    async def start(self, extra: Mapping[str, str]) -> asyncio.subprocess.Process:
        try:
            self.child = await asyncio.create_subprocess_exec(
                *self.command, env={**self.base_env, **extra}
            )
        except FileNotFoundError:
            raise UsageError(f"command not found: {self.command[0]}") from None
        return self.child

    def forward(self, signum: int) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            self.stopping = True  # the child's exit ends `strongroom run` too
        if self.child is not None and self.child.returncode is None:
            self.child.send_signal(signum)

    async def stop_for_restart(self) -> None:
        child = self.child
        if child is None or child.returncode is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.wait(), _STOP_SECONDS)
        except TimeoutError:
            child.kill()
            await child.wait()


async def run_command(
    wiring: Wiring,
    command: list[str],
    bindings: list[Binding],
    prefix: str | None,
    *,
    watch: bool,
    on_change: str,
    change_signal: int,
) -> int:
    """Fetch, start, supervise; the child's exit code."""
    manager = SecretsManager(wiring)
    env, names = await _values(manager, bindings, prefix)
    supervisor = Supervisor(command, os.environ)
    loop = asyncio.get_running_loop()
    for signum in FORWARDED:
        loop.add_signal_handler(signum, supervisor.forward, signum)
    changed = asyncio.Event()
    follower = None
    if watch:
        from strongroom.client.transport import RemoteClient  # noqa: PLC0415
        from strongroom.services.remote.cache import FeedFollower, ValueCache  # noqa: PLC0415

        if not isinstance(wiring, RemoteClient):
            raise ConfigurationError(
                "--watch follows the server's change feed: set STRONGROOM_ADDR"
            )

        def seen(name: str) -> None:
            if name.lower() in names or (prefix and name.lower().startswith(prefix.lower())):
                changed.set()

        follower = FeedFollower(wiring, ValueCache(0, 1), on_change=seen)
        follower.start()
        await asyncio.wait_for(follower.connected.wait(), 30)
    try:
        child = await supervisor.start(env)
        while True:
            exited = asyncio.ensure_future(child.wait())
            change = asyncio.ensure_future(changed.wait())
            await asyncio.wait({exited, change}, return_when=asyncio.FIRST_COMPLETED)
            change.cancel()
            if exited.done():
                return _exit_code(exited.result())
            exited.cancel()
            changed.clear()
            if on_change == "signal":
                supervisor.forward(change_signal)
                continue
            env, names = await _values(manager, bindings, prefix)
            await supervisor.stop_for_restart()
            if supervisor.stopping:
                return _exit_code(child.returncode or 0)
            child = await supervisor.start(env)
    finally:
        for signum in FORWARDED:
            loop.remove_signal_handler(signum)
        if follower is not None:
            await follower.stop()
        with contextlib.suppress(ProcessLookupError):
            if supervisor.child is not None and supervisor.child.returncode is None:
                supervisor.child.kill()


def run(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(metavar="-- CMD [ARG...]", help="The program.")],
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", metavar="VAR=SECRET[#FIELD]", help="A variable (repeat)."),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            metavar="PREFIX",
            help="Every secret named PREFIX... as a variable (dispatch-radio-key: RADIO_KEY).",
        ),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Follow the change feed; act when one of the secrets changes."
        ),
    ] = False,
    on_change: Annotated[
        str,
        typer.Option(
            "--on-change", metavar="restart|signal", help="With --watch: restart CMD or signal it."
        ),
    ] = "restart",
    change_signal: Annotated[
        str, typer.Option("--signal", metavar="NAME", help="The signal for --on-change signal.")
    ] = "HUP",
) -> None:
    """Run CMD with secrets as environment variables (never on its command line).

    Signals are forwarded to CMD and its exit code is returned. Example:
    `strongroom run --env DB_PASSWORD=fleet-db-password -- ./dispatch-server`"""
    if not command:
        raise UsageError("give the command to run after --")
    if not env and prefix is None:
        raise UsageError("nothing to inject: give --env VAR=SECRET or --prefix PREFIX")
    if on_change not in ("restart", "signal"):
        raise UsageError("--on-change is restart or signal")
    try:
        signum = signal.Signals[f"SIG{change_signal.upper().removeprefix('SIG')}"]
    except KeyError:
        raise UsageError(f"unknown signal {change_signal!r}") from None
    bindings = parse_bindings(env or [])
    state(ctx)
    code = run_any(
        ctx,
        lambda wiring: run_command(
            wiring, list(command), bindings, prefix, watch=watch, on_change=on_change,
            change_signal=signum,
        ),
    )  # fmt: skip
    sys.stdout.flush()
    raise typer.Exit(code)
