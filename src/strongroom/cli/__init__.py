"""The ``strongroom`` command line (typer + rich) over the library.

``app`` is the typer application; ``main`` runs it and turns errors into exit codes.
"""

from strongroom.cli.main import app, main

__all__ = ["app", "main"]
