"""``strongroom rotation ...``: rotation policies, rotating now, compliance, one scheduler cycle.

Every command is one :class:`~strongroom.SecretsRotation` call. The command line registers
built-in generators only (a callback is code: it is attached by the service that owns it). No
command prints a value: a rotation reports the new version's id, `secret get` reads it.
"""

import enum
import inspect
from typing import Annotated, Any

import typer

from strongroom.cli.exitcodes import ExitCode
from strongroom.cli.options import JsonOpt, NameArg, QuietOpt
from strongroom.cli.output import (
    now_utc,
    relative,
    short_version,
    when,
)
from strongroom.cli.runtime import UsageError, Wiring, command_group, output, run_any
from strongroom.core.errors import RotationFailedError, RotationNotConfiguredError
from strongroom.core.models import SecretType
from strongroom.core.rotation import RotationConfig
from strongroom.services.rotation.generators import GENERATORS
from strongroom.services.rotation.secrets_rotation import SecretsRotation

__all__ = ["Generator", "app", "every", "parse_options", "rotation_of"]

app = command_group(
    "rotation",
    "Rotation policies: register, rotate now or at the next check, compliance, one scheduler "
    "cycle (for cron).",
    # Reading policies, history and compliance loads its own module, only when used.
    lazy={
        "list": "strongroom.cli.rotation_report:list_",
        "status": "strongroom.cli.rotation_report:status",
        "history": "strongroom.cli.rotation_report:history",
        "check": "strongroom.cli.rotation_report:check",
        "recommend": "strongroom.cli.report:recommend",
        "worker": "strongroom.cli.rotation_worker:worker",
    },
)


class Generator(enum.StrEnum):
    """The built-in generators (``generators.GENERATORS``), as choices for --generator."""

    PASSWORD = "password"  # noqa: S105 (a generator name, not a secret)
    API_KEY = "api_key"
    JWT_SECRET = "jwt_secret"  # noqa: S105 (a generator name, not a secret)
    RAW_KEY = "raw_key"


def parse_options(generator: str, options: list[str] | None) -> dict[str, Any]:
    """``--option KEY=VALUE`` as the generator's options: whole numbers where the generator
    takes one (length, bits, bytes), text otherwise; unknown keys are refused here."""
    params = inspect.signature(GENERATORS[generator]).parameters
    parsed: dict[str, Any] = {}
    for option in options or []:
        key, sep, text = option.partition("=")
        if not sep or not key:
            raise UsageError(f"--option takes KEY=VALUE, got {option!r}")
        param = params.get("bytes_" if key == "bytes" else key)
        if param is None:
            known = ", ".join(sorted(p.rstrip("_") for p in params)) or "none"
            raise UsageError(f"generator {generator} has no option {key!r} (options: {known})")
        if isinstance(param.default, int) and not isinstance(param.default, bool):
            try:
                parsed[key] = int(text)
            except ValueError:
                raise UsageError(f"--option {key} takes a whole number") from None
        else:
            parsed[key] = text
    return parsed


def rotation_of(strongroom: Wiring) -> SecretsRotation:
    return SecretsRotation(strongroom)


def every(status: dict[str, Any]) -> str:
    days = status["rotation_days"]
    return f"{days} day{'s' if days != 1 else ''}"


# -- writes --------------------------------------------------------------------------------


@app.command()
def register(
    ctx: typer.Context,
    name: NameArg,
    generator: Annotated[
        Generator,
        typer.Option(
            "--generator",
            "-g",
            case_sensitive=False,
            help="Built-in generator of the new values (from the OS CSPRNG).",
        ),
    ],
    days: Annotated[
        int, typer.Option("--days", metavar="N", help="Rotate every N days (1-3650).")
    ] = 90,
    hours_before_expiry: Annotated[
        int,
        typer.Option(
            "--hours-before-expiry",
            metavar="H",
            help="For an expiring secret: rotate H hours before it expires, if that comes first.",
        ),
    ] = 24,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            metavar="KEY=VALUE",
            help="A generator option (repeat): password length, alphabet; api_key prefix, "
            "bits; jwt_secret bytes; raw_key bytes, encoding (hex or base64).",
        ),
    ] = None,
    secret_type: Annotated[
        SecretType | None,
        typer.Option(
            "--type",
            case_sensitive=False,
            help="Type of the secret if the first rotation creates it (default generic).",
        ),
    ] = None,
    grace_hours: Annotated[
        int,
        typer.Option(
            "--grace-hours",
            metavar="G",
            help="Keep the previous version readable by its id for G hours after a rotation.",
        ),
    ] = 24,
    description: Annotated[
        str, typer.Option("--description", "-d", metavar="TEXT", help="What this policy is for.")
    ] = "",
    disabled: Annotated[
        bool, typer.Option("--disabled", help="Store the policy but do not rotate on schedule.")
    ] = False,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="Leave the rotations to `strongroom rotation worker` processes, which run the "
            "generator on their host; the service's scheduler then never rotates it itself.",
        ),
    ] = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Register (or replace) the rotation policy of a secret, with a built-in generator.

    The generator runs once now to check its options (the value is dropped). The secret need not
    exist yet: it is due at once, and the first rotation creates it.
    """
    out = output(ctx, json=json, quiet=quiet)
    config = RotationConfig(
        name=name,
        rotation_days=days,
        rotation_hours_before_expiry=hours_before_expiry,
        enabled=not disabled,
        description=description,
        generator=generator.value,
        generator_options=parse_options(generator.value, option),
        grace_period_hours=grace_hours,
        secret_type=secret_type,
        worker=worker,
    )

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await rotation_of(strongroom).register_secret(config)

    status = run_any(ctx, work)
    now = now_utc()
    if not status["enabled"]:
        due = "disabled: not rotated on schedule"
    elif status["last_rotation"] is None:
        due = "due now: the first rotation creates the secret"
    else:
        due = f"next due {when(status['due_at'], now)}"
    by = " by rotation workers" if status.get("worker") else ""
    out.done(
        f"Registered rotation of {status['name']} every {every(status)} with generator "
        f"{status['generator']}{by}; {due}",
        status,
    )


@app.command()
def unregister(
    ctx: typer.Context, name: NameArg, json: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Remove a secret's rotation policy (the secret and its versions stay as they are)."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> bool:
        return await rotation_of(strongroom).unregister_secret(name)

    if not run_any(ctx, work):
        raise RotationNotConfiguredError(f"no rotation is configured for {name!r}")
    out.done(f"Unregistered rotation of {name}", {"name": name, "unregistered": True})


@app.command()
def rotate(
    ctx: typer.Context, name: NameArg, json: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Rotate now, due or not: generate, verify, make the new version current.

    The previous version stays readable by its id for the grace period. A failure leaves the
    current version as it was, is audited and retried by the scheduler (exit 1).
    """
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> tuple[dict[str, Any], dict[str, Any]]:
        rotation = rotation_of(strongroom)
        result = await rotation.rotate_secret(name, force=True)
        return result, await rotation.get_rotation_status(name)

    result, status = run_any(ctx, work)
    if not result["rotated"]:
        if out.json:
            out.data(result)
        reason = result.get("error") or result.get("reason") or "unknown reason"
        raise RotationFailedError(f"rotation of {result['name']} failed: {reason}")
    grace = status["grace_period_hours"]
    kept = f"; the previous version stays readable by its id for {grace} hours" if grace else ""
    out.done(
        f"Rotated {result['name']}: version {short_version(result['version'])} is current{kept}",
        result,
    )


@app.command()
def force(
    ctx: typer.Context, name: NameArg, json: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Rotate at the next check (`rotation run` or the service's scheduler), whatever the
    schedule says."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> dict[str, Any]:
        return await rotation_of(strongroom).force_rotation(name)

    status = run_any(ctx, work)
    out.done(
        f"{status['name']} will be rotated at the next check (`strongroom rotation run`)", status
    )


@app.command("run")
def run_(ctx: typer.Context, json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """One scheduler cycle (for cron): rotate every secret that is due, end grace periods,
    send expiry notices. Exit 1 when a rotation failed (it is retried with backoff)."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Wiring) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        rotation = rotation_of(strongroom)
        outcome = await rotation.run_check()
        failures = {n: await rotation.get_rotation_status(n) for n in outcome["failed"]}
        return outcome, failures

    outcome, failures = run_any(ctx, work)
    errors = {name: status["last_error"] for name, status in failures.items()}
    if out.json:
        out.data({**outcome, "errors": errors})
    else:
        rotated, ended = outcome["rotated"], outcome["grace_ended"]
        if rotated:
            out.done(f"Rotated {len(rotated)}: {', '.join(sorted(rotated))}")
        if ended:
            out.done(f"Previous versions disabled (grace period over): {', '.join(ended)}")
        if not (rotated or ended or failures):
            out.done("Nothing was due.")
    now = now_utc()
    for name, status in sorted(failures.items()):
        retry = status["next_attempt"]
        again = f"; retried {relative(retry, now)}" if retry is not None else ""
        out.warn(f"rotation of {name} failed: {status['last_error']}{again}")
    if failures:
        raise typer.Exit(ExitCode.ERROR)
