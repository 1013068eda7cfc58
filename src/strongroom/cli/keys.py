"""``strongroom key ...``: the keyring that wraps every data key."""

import asyncio
import sys
from json import dumps
from typing import Any

import typer

from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import Output
from strongroom.cli.runtime import command_group, output, run, settings
from strongroom.core.errors import CustodyError, StrongroomError
from strongroom.core.shares import ShareSet
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


@app.command("replace-master")
def replace_master(ctx: typer.Context, json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Replace the master key (key file, STRONGROOM_MASTER_KEY, HSM or Key Vault key).

    The root key every other key hangs from stays the same, stored wrapped by the new master
    key: nothing is re-encrypted, tokens stay valid, and reads and writes go on in every
    process. A key file is replaced in place (the new key goes to <file>.new first; after a
    crash, run the command again). With STRONGROOM_MASTER_KEY the new key is printed once:
    set it and restart; the old key works until a process starts with the new one. Under an
    HSM or a Key Vault key (STRONGROOM_SEAL), the new key is wrapped by it as at init. Under
    a quorum (STRONGROOM_SEAL=shamir), the threshold of current shares is read (typed without
    echo, or one per line of stdin) and a new share set of the same shape is printed once; it
    is in force when the command says so. The old key no longer opens the store once the
    replacement is finished.
    """
    from strongroom.services.custody.replace import (  # noqa: PLC0415 (loaded on use)
        replace_master as replace,
    )

    out = output(ctx, json=json, quiet=quiet)
    if settings().seal == "shamir":
        _replace_quorum(out)
        return
    result = run(ctx, replace)
    report: dict[str, Any] = {
        "epoch": result.epoch,
        "custody": result.custody,
        "finished": result.finished,
        "resumed": result.resumed,
        "key_file": str(result.key_file) if result.key_file is not None else None,
    }
    if result.new_key is not None:
        report["new_master_key"] = result.new_key
        if out.json:
            out.data(report)
            return
        sys.stdout.write(f"New master key: {result.new_key}\n")
        out.note(
            "Set STRONGROOM_MASTER_KEY to this key in every process and restart them; it is "
            "shown this once. The old key works until the first process starts with the new one."
        )
        return
    where = f"in {result.key_file}" if result.key_file is not None else f"({result.custody})"
    out.done(
        f"Master key replaced {where} (epoch {result.epoch}); the old key no longer opens "
        "this store.",
        report,
    )


def _replace_quorum(out: Output) -> None:
    """The quorum's replacement: current shares in, a new share set out (printed before it is
    put in force, so that a crash never loses the only shares that open the store)."""
    from strongroom.db.seal_store import read_seal  # noqa: PLC0415 (loaded on use)
    from strongroom.services.custody.quorum_replace import (  # noqa: PLC0415
        replace_quorum_master,
    )

    config = settings()
    record = asyncio.run(read_seal(config))
    if record is None:
        raise CustodyError("this store has no share set yet: run `strongroom operator init` first")
    if sys.stdin.isatty():
        shares = [
            typer.prompt(f"Current key share {i} of {record.threshold} (input hidden)",
                         hide_input=True)
            for i in range(1, record.threshold + 1)
        ]  # fmt: skip
    else:
        shares = [line for line in sys.stdin.read().splitlines() if line.strip()]

    def announce(share_set: ShareSet) -> None:
        if out.json:
            sys.stdout.write(dumps({"threshold": share_set.threshold,
                                    "shares": list(share_set.shares)}) + "\n")  # fmt: skip
        else:
            lines = [f"New key share {i} of {len(share_set.shares)}: {share}"
                     for i, share in enumerate(share_set.shares, 1)]  # fmt: skip
            sys.stdout.write("\n".join(lines) + "\n\n")
        sys.stdout.flush()

    try:
        result = asyncio.run(replace_quorum_master(config, shares, announce))
    except StrongroomError:
        out.warn("the replacement did not finish: the current share set stays in force, and "
                 "any new shares printed above open nothing")  # fmt: skip
        raise
    out.note(
        f"The new share set is in force (epoch {result.epoch}): give each share to one key "
        "holder; the old shares no longer unseal this store. A replica that is sealed now "
        "takes the new set at the next share it is given."
    )
