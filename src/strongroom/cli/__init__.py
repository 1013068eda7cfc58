"""The ``strongroom`` command line (typer + rich) over the library.

``app`` is the typer application; ``main`` runs it and turns errors into exit codes. ``app``
loads on first use: ``strongroom secret get`` runs without typer (cli.hotpath).
"""

from typing import Any

from strongroom.cli.main import main

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from strongroom.cli.root import app  # noqa: PLC0415 (typer only when asked for)

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
