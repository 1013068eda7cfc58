"""``strongroom rotation ...``: rotation policies, rotating now, compliance, one scheduler cycle.

Every command is one :class:`~strongroom.SecretsRotation` call. The command line registers
built-in generators only (a callback is code: it is attached by the service that owns it). No
command prints a value: a rotation reports the new version's id, `secret get` reads it.
"""

import enum
import inspect
from datetime import datetime
from typing import Annotated, Any

import typer

from strongroom.cli.exitcodes import ExitCode
from strongroom.cli.options import JsonOpt, NameArg, QuietOpt
from strongroom.cli.output import (
    RESULT_STYLE,
    Column,
    Lines,
    Output,
    name_column,
    now_utc,
    relative,
    short_version,
    when,
    when_cell,
)
from strongroom.cli.runtime import UsageError, command_group, output, run
from strongroom.core.errors import RotationFailedError, RotationNotConfiguredError
from strongroom.core.models import SecretType
from strongroom.core.rotation import RotationConfig
from strongroom.services.rotation.generators import GENERATORS
from strongroom.services.rotation.secrets_rotation import SecretsRotation
from strongroom.services.wiring import Strongroom

__all__ = ["Generator", "app", "parse_options"]

app = command_group(
    "rotation",
    "Rotation policies: register, rotate now or at the next check, compliance, one scheduler "
    "cycle (for cron).",
)

#: Secrets due within this many days are shown in yellow.
SOON_DAYS = 7


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


def _rotation(strongroom: Strongroom) -> SecretsRotation:
    return SecretsRotation(strongroom)


def _due_cell(
    status: dict[str, Any], now: datetime, *, cell: bool = True
) -> tuple[str | Lines, str | None]:
    """Overdue in red, due within a week in yellow, a disabled policy dimmed."""
    due = status["due_at"]
    shown = (when_cell if cell else when)(due, now)
    if not status.get("enabled", True):
        return (shown, "dim")
    if status["overdue"]:
        return (shown, "bold red")
    return (shown, "yellow" if (due - now).days < SOON_DAYS else None)


def _result_cell(status: dict[str, Any]) -> tuple[str, str | None]:
    result = status["last_result"]
    if result is None:
        return ("-", "dim")
    attempts = status["attempts"]
    text = f"{result} ({attempts} failed)" if result == "FAILURE" and attempts else result
    return (text, RESULT_STYLE.get(result))


def _every(status: dict[str, Any]) -> str:
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
    )

    async def work(strongroom: Strongroom) -> dict[str, Any]:
        return await _rotation(strongroom).register_secret(config)

    status = run(ctx, work)
    now = now_utc()
    if not status["enabled"]:
        due = "disabled: not rotated on schedule"
    elif status["last_rotation"] is None:
        due = "due now: the first rotation creates the secret"
    else:
        due = f"next due {when(status['due_at'], now)}"
    out.done(
        f"Registered rotation of {status['name']} every {_every(status)} with generator "
        f"{status['generator']}; {due}",
        status,
    )


@app.command()
def unregister(
    ctx: typer.Context, name: NameArg, json: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Remove a secret's rotation policy (the secret and its versions stay as they are)."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Strongroom) -> bool:
        return await _rotation(strongroom).unregister_secret(name)

    if not run(ctx, work):
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

    async def work(strongroom: Strongroom) -> tuple[dict[str, Any], dict[str, Any]]:
        rotation = _rotation(strongroom)
        result = await rotation.rotate_secret(name, force=True)
        return result, await rotation.get_rotation_status(name)

    result, status = run(ctx, work)
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

    async def work(strongroom: Strongroom) -> dict[str, Any]:
        return await _rotation(strongroom).force_rotation(name)

    status = run(ctx, work)
    out.done(
        f"{status['name']} will be rotated at the next check (`strongroom rotation run`)", status
    )


@app.command("run")
def run_(ctx: typer.Context, json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """One scheduler cycle (for cron): rotate every secret that is due, end grace periods,
    send expiry notices. Exit 1 when a rotation failed (it is retried with backoff)."""
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Strongroom) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        rotation = _rotation(strongroom)
        outcome = await rotation.run_check()
        failures = {n: await rotation.get_rotation_status(n) for n in outcome["failed"]}
        return outcome, failures

    outcome, failures = run(ctx, work)
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


# -- reads ---------------------------------------------------------------------------------


@app.command("list")
def list_(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every rotation policy: schedule, last rotation, when it is due (overdue in red)."""
    out = output(ctx, json=json)

    async def work(strongroom: Strongroom) -> list[dict[str, Any]]:
        return await _rotation(strongroom).list_rotation_configs()

    found = sorted(run(ctx, work), key=lambda s: s["name"].lower())
    if out.json:
        out.data(found)
        return
    now = now_utc()
    out.table(
        [
            name_column(),
            Column("enabled", no_wrap=True, min_width=7),
            Column("every", no_wrap=True),
            Column("generator", no_wrap=True),
            Column("last rotation"),
            Column("due"),
            Column("last result"),
        ],
        [
            [
                s["name"],
                ("yes", None) if s["enabled"] else ("no", "dim"),
                _every(s),
                s["generator"] or s["rotator"] or "callback",
                when_cell(s["last_rotation"], now, empty="never"),
                _due_cell(s, now),
                _result_cell(s),
            ]
            for s in found
        ],
        caption=f"{len(found)} rotation polic{'ies' if len(found) != 1 else 'y'}",
    )


@app.command()
def status(ctx: typer.Context, name: NameArg, json: JsonOpt = False) -> None:
    """One secret's rotation policy and state: due date, forced, retries, last error."""
    out = output(ctx, json=json)

    async def work(strongroom: Strongroom) -> dict[str, Any]:
        return await _rotation(strongroom).get_rotation_status(name)

    s = run(ctx, work)
    if out.json:
        out.data(s)
        return
    now = now_utc()
    hours = s["rotation_hours_before_expiry"]
    out.fields(
        {
            "name": s["name"],
            "enabled": ("yes", "green") if s["enabled"] else ("no", "dim"),
            "every": f"{_every(s)}, or {hours} hours before it expires",
            "generator": s["generator"] or "-",
            "rotator": s["rotator"] or "-",
            "description": s["description"] or "-",
            "last rotation": when(
                s["last_rotation"], now, empty="never (the first rotation creates the secret)"
            ),
            "expires": when(s["expires_at"], now, empty="never"),
            "due": _due_cell(s, now, cell=False),
            "overdue": ("yes", "bold red") if s["overdue"] else "no",
            "forced": ("yes: at the next check", "yellow") if s["force_on_next"] else "no",
            "next attempt": when(s["next_attempt"], now),
            "last attempt": when(s["last_attempt"], now, empty="never"),
            "last result": _result_cell(s),
            "last error": (s["last_error"], "red") if s["last_error"] else "-",
            "grace period": f"{s['grace_period_hours']} hours",
        },
        title=f"rotation of {s['name']}",
    )


@app.command()
def history(
    ctx: typer.Context,
    name: NameArg,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many events.")] = 50,
    json: JsonOpt = False,
) -> None:
    """A secret's rotations (ROTATE audit events, newest first), failed ones included."""
    out = output(ctx, json=json)

    async def work(strongroom: Strongroom) -> list[dict[str, Any]]:
        return await _rotation(strongroom).get_rotation_history(name, limit)

    events = run(ctx, work)
    if out.json:
        out.data(events)
        return
    now = now_utc()
    out.table(
        [
            Column("id", justify="right"),
            Column("when"),
            Column("result"),
            Column("version", no_wrap=True),
            Column("attempt", justify="right"),
            Column("actor"),
            Column("error"),
        ],
        [
            [
                str(e["id"]),
                when_cell(e["timestamp"], now),
                (e["result"], RESULT_STYLE.get(e["result"])),
                short_version((e["details"] or {}).get("version")) or "-",
                str((e["details"] or {}).get("attempt", "")),
                e["actor_id"] or "-",
                e["error_message"] or e["error_code"] or "",
            ]
            for e in events
        ],
        title=f"rotations of {name}",
        caption=f"{len(events)} event{'s' if len(events) != 1 else ''} (newest first)",
    )


@app.command()
def check(
    ctx: typer.Context,
    fail_on_overdue: Annotated[
        bool,
        typer.Option(
            "--fail-on-overdue", help="Exit 1 when any secret is overdue (for cron and CI)."
        ),
    ] = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compliance: every live secret with its policy (its own, or its type's default: API keys
    90 days, database credentials 60, JWT secrets 30, others 90), overdue ones in red.

    With --quiet only overdue secrets are reported (on stderr).
    """
    out = output(ctx, json=json, quiet=quiet)

    async def work(strongroom: Strongroom) -> dict[str, Any]:
        return await _rotation(strongroom).compliance_report()

    report = run(ctx, work)
    overdue = report["overdue"]
    if out.json:
        out.data(report)
    elif not out.quiet:
        _show_compliance(out, report)
    elif overdue:
        out.warn(f"overdue for rotation: {', '.join(overdue)}")
    if fail_on_overdue and overdue:
        raise typer.Exit(ExitCode.ERROR)


def _show_compliance(out: Output, report: dict[str, Any]) -> None:
    now = now_utc()
    entries = sorted(report["entries"], key=lambda e: (not e["overdue"], e["due_at"]))
    rows = []
    for e in entries:
        if e["policy"] == "default":
            policy: tuple[str, str | None] = ("none: type default", "yellow")
        else:
            policy = ("configured", None) if e["enabled"] else ("configured, disabled", "dim")
        days = e["days_overdue"]
        late = f"{days} day{'s' if days != 1 else ''}" if days else "under a day"
        rows.append(
            [
                e["name"],
                e["secret_type"],
                policy,
                _every(e),
                when_cell(e["last_rotation"], now, empty="never"),
                _due_cell({**e, "enabled": True}, now),
                (late, "bold red") if e["overdue"] else "",
            ]
        )
    without = len(report["without_policy"])
    count = report["secrets"]
    out.table(
        [
            name_column(),
            Column("type", no_wrap=True),
            Column("policy"),
            Column("every", no_wrap=True),
            Column("last rotation"),
            Column("due"),
            Column("overdue by"),
        ],
        rows,
        title="rotation compliance",
        caption=f"{count} secret{'s' if count != 1 else ''}: {report['compliant']} compliant, "
        f"{without} without a policy, {len(report['overdue'])} overdue",
    )
