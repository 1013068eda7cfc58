"""Command groups whose commands are imported only when used.

A script that runs ``strongroom secret get`` hundreds of times a day pays the import of every
command module on each start. Groups built with :func:`lazy_group` name their commands as
``"module:attribute"`` (a typer app for a sub-group, a function for a command) and import one
only when it is invoked, or when ``--help`` lists them.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["LazyGroup", "lazy_group"]


class LazyGroup(TyperGroup):
    """A typer group whose ``lazy`` commands load on first use, listed after its own."""

    lazy: dict[str, str] = {}  # noqa: RUF012 (set per subclass by lazy_group, never mutated)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        return _load(cmd_name, target)


def lazy_group(commands: dict[str, str]) -> type[LazyGroup]:
    """A LazyGroup class for typer's ``cls=``, with ``commands`` as name -> "module:attr"."""
    return type("LazyGroup", (LazyGroup,), {"lazy": dict(commands)})


@cache
def _load(name: str, target: str) -> Any:
    module, _, attribute = target.partition(":")
    found = getattr(importlib.import_module(module), attribute)
    command: Any
    if isinstance(found, typer.Typer):
        command = typer.main.get_group(found)
    else:
        single = typer.Typer(add_completion=False, rich_markup_mode=None)
        single.command(name)(found)
        command = typer.main.get_command(single)
    command.name = name
    return command
