"""``strongroom rotation worker``: claim due rotations from a server and run their built-in
generators here, until stopped. Schedules are left to workers with ``rotation register
--worker``; a worker needs the ``rotate`` grant on the secrets it takes. SIGTERM or Ctrl-C
lets the rotation under way finish and releases the claimed ones not yet started."""

import asyncio
import json
import signal
import sys
from typing import Annotated, Any

import typer

from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import Output, short_version
from strongroom.cli.runtime import output, run_any, settings
from strongroom.core.errors import ConfigurationError
from strongroom.core.models import SecretType

__all__ = ["worker"]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _reporter(out: Output) -> Any:
    """One line per rotation; with ``--json``, one JSON object per line (JSON Lines: the
    command runs until stopped, so a reader takes each outcome as it comes)."""

    def report(outcome: dict[str, Any]) -> None:
        if out.json:
            sys.stdout.write(json.dumps(outcome, separators=(",", ":"), default=str) + "\n")
            sys.stdout.flush()
        elif outcome.get("rotated"):
            version = short_version(outcome["version"])
            out.done(f"rotated {outcome['name']}: version {version} is current")
        else:
            out.warn(f"rotation of {outcome['name']} failed: {outcome.get('error')}")

    return report


def worker(
    ctx: typer.Context,
    secret_type: Annotated[
        SecretType | None,
        typer.Option("--type", case_sensitive=False, help="Only secrets of this type."),
    ] = None,
    name_glob: Annotated[
        str | None,
        typer.Option("--name-glob", metavar="GLOB", help="Only names matching GLOB (* and ?)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", metavar="N", help="Rotations at once (1-100).")
    ] = 4,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch", metavar="N", help="Rotations claimed at once (1-100; default: concurrency)."
        ),
    ] = None,
    lease_seconds: Annotated[
        int,
        typer.Option(
            "--lease-seconds",
            metavar="S",
            help="How long a claim holds (2-3600): a worker that dies frees its rotations "
            "after S seconds.",
        ),
    ] = 60,
    wait_seconds: Annotated[
        float,
        typer.Option("--wait-seconds", metavar="S", help="Long-poll for due rotations (0-8)."),
    ] = 5.0,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rotate, with their built-in generators, the due secrets left to workers, until stopped.

    Each new value is made here and submitted; the server verifies it, makes it current, audits
    it and tells subscribers. Run several for availability: leases keep them from rotating the
    same secret twice.
    """
    from strongroom.services.remote.worker import RotationWorker, WorkerOptions  # noqa: PLC0415

    out = output(ctx, json=json, quiet=quiet)
    if not settings().remote:
        raise ConfigurationError(
            "`strongroom rotation worker` claims rotations from a server: set STRONGROOM_ADDR "
            "and a token (`strongroom rotation run` rotates on the local stores)"
        )
    options = WorkerOptions(
        generated=True,
        name_glob=name_glob,
        secret_type=None if secret_type is None else secret_type.value,
        concurrency=concurrency,
        batch=batch,
        lease_seconds=lease_seconds,
        wait_seconds=wait_seconds,
    )

    async def go(client: Any) -> RotationWorker:
        found = RotationWorker(client, options, on_result=_reporter(out))
        loop = asyncio.get_running_loop()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, found.stop)
        out.note(f"rotation worker claiming from {client.addr} (stop with Ctrl-C or SIGTERM)")
        try:
            await found.run()
        finally:
            for signum in _STOP_SIGNALS:
                loop.remove_signal_handler(signum)
        return found

    done = run_any(ctx, go)
    out.note(f"rotation worker stopped: {done.rotated} rotated, {done.failed} failed")
