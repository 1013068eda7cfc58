"""``strongroom key ...``: the keyring that wraps every data key."""

from typing import Any

import typer

from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.runtime import command_group, output, run
from strongroom.services.secrets.secrets_manager import SecretsManager
from strongroom.services.wiring import Strongroom

__all__ = ["app"]

app = command_group("key", "Manage the keyring that wraps every secret's data key.")


@app.command()
def rotate(ctx: typer.Context, json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Add a new key version and re-wrap every data key under it, then drop the old versions.

    Values are not re-encrypted, and reads keep working in every process while it runs. The
    master key itself (file or STRONGROOM_MASTER_KEY) stays the same.
    """
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Strongroom) -> dict[str, Any]:
        with out.progress("re-wrapping data keys", None) as bar:
            return await SecretsManager(strongroom).rotate_master_key(progress=bar.update)

    result = run(ctx, work)
    previous = ", ".join(str(v) for v in result["previous_versions"]) or "-"
    out.done(
        f"Key version {result['key_version']} is current (was {previous}); "
        f"{result['rewrapped']} data keys re-wrapped.",
        result,
    )
