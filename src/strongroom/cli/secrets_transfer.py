"""``strongroom secret export``, and what it shares with ``secret import`` (the passphrase, the
bounded concurrency): move many secrets at once (formats in ``transfer.py``).

Exports are encrypted with a passphrase unless ``--plain`` is given.
"""

import asyncio
import enum
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from strongroom.cli import transfer
from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import ProgressBar, now_utc, open_private
from strongroom.cli.runtime import UsageError, output, require_tty, run_facade
from strongroom.cli.values import read_secret_text
from strongroom.core.errors import (
    SecretNotReadableError,
    StrongroomError,
)
from strongroom.services.secrets.secrets_manager import SecretsManager

__all__ = ["PassphraseFileOpt", "bounded", "export", "read_passphrase"]

PASSPHRASE_ENV = "STRONGROOM_EXPORT_PASSPHRASE"  # noqa: S105 (a variable name)
_CONCURRENCY = 16  # below the PostgreSQL pool's default size of 16

T = TypeVar("T")


class ExportFormat(enum.StrEnum):
    JSON = "json"
    ENV = "env"


PassphraseFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        metavar="PATH",
        help=f"Read the passphrase from this file (else ${PASSPHRASE_ENV}, else a prompt).",
    ),
]


def read_passphrase(path: Path | None, *, twice: bool) -> str:
    if path is not None:
        text = read_secret_text(path, "passphrase file").decode("utf-8", "replace")
        return text.rstrip("\r\n")
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    require_tty(f"a passphrase is needed (use --passphrase-file or ${PASSPHRASE_ENV})")
    entered: str = typer.prompt("Passphrase", hide_input=True, confirmation_prompt=twice)
    return entered


async def bounded(
    jobs: list[Callable[[], Awaitable[T]]], bar: ProgressBar
) -> list[T | BaseException]:
    """Run jobs with at most ``_CONCURRENCY`` at a time; a failure is returned, not raised."""
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(job: Callable[[], Awaitable[T]]) -> T | BaseException:
        async with gate:
            try:
                return await job()
            except StrongroomError as exc:
                return exc
            finally:
                bar.advance()

    return await asyncio.gather(*(one(job) for job in jobs))


# -- export --------------------------------------------------------------------------------


def _write_output(path: Path | None, text: str, force: bool) -> None:
    """Write to stdout, or to a new owner-only file (an existing one only with --force)."""
    if path is None or str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with open_private(path, force=force) as handle:
        handle.write(text)


def export(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="[NAME]...", help="Secrets to export (default: every one)."),
    ] = None,
    output_path: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="PATH", help="Write here (mode 0600) not stdout."),
    ] = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", help="json: strongroom's document; env: a .env file (plain)."),
    ] = ExportFormat.JSON,
    plain: Annotated[
        bool, typer.Option("--plain", help="Write values unencrypted (a warning is printed).")
    ] = False,
    passphrase_file: PassphraseFileOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export current values, encrypted with a passphrase (Argon2id + AES-256-GCM) by default.

    The passphrase must be at least 12 characters and hard to guess (zxcvbn strength 4 of 4).

    Each value read is audited. Disabled, expired and not-yet-valid secrets are skipped with a
    warning. Re-import with `strongroom secret import`.
    """
    out = output(ctx, json=json, quiet=quiet)
    if fmt is ExportFormat.ENV and not plain:
        raise UsageError("a .env export is plaintext: add --plain to write one")
    passphrase = None if plain else read_passphrase(passphrase_file, twice=True)
    if passphrase is not None:
        transfer.check_passphrase(passphrase)  # before anything is read: exit 2, nothing written

    async def work(manager: SecretsManager) -> tuple[list[transfer.Item], list[str]]:
        wanted = names or [s["name"] for s in await manager.list_secrets()]
        with out.progress("exporting", len(wanted)) as bar:
            found = await bounded([_reader(manager, name) for name in wanted], bar)
        items: list[transfer.Item] = []
        skipped: list[str] = []
        for name, result in zip(wanted, found, strict=True):
            if isinstance(result, SecretNotReadableError):
                skipped.append(name)
            elif isinstance(result, BaseException):
                raise result
            else:
                items.append(result)
        return items, skipped

    items, skipped = run_facade(ctx, SecretsManager, work)
    for name in skipped:
        out.warn(f"skipped {name}: not readable now (disabled, expired, revoked or not yet valid)")
    if passphrase is not None:
        document = transfer.dumps_document(items, exported_at=now_utc()).encode()
        text = transfer.encrypt_export(document, passphrase)
    else:
        out.warn("writing secret values unencrypted (--plain)")
        text = (
            transfer.render_env(items)
            if fmt is ExportFormat.ENV
            else transfer.dumps_document(items, exported_at=now_utc())
        )
    _write_output(output_path, text, force)
    to_stdout = output_path is None or str(output_path) == "-"
    summary = {
        "exported": len(items),
        "skipped": skipped,
        "encrypted": not plain,
        "format": "encrypted" if not plain else fmt.value,
        "output": None if to_stdout else str(output_path),
    }
    message = (
        f"Exported {len(items)} secret{'s' if len(items) != 1 else ''} "
        f"{'encrypted' if not plain else 'in plaintext'}"
        f"{'' if to_stdout else f' to {output_path}'}"
    )
    if to_stdout:
        out.note(message)  # stdout carries the export itself
    else:
        out.done(message, summary)


def _reader(manager: SecretsManager, name: str) -> Callable[[], Awaitable[transfer.Item]]:
    async def read() -> transfer.Item:
        bundle = await manager.get_secret_bundle(name)
        props = bundle.properties
        return transfer.Item(
            name=props.name,
            value=bundle.value.reveal_bytes().decode("utf-8"),
            secret_type=props.secret_type.value,
            content_type=props.content_type,
            tags=dict(props.tags),
            expires_at=props.expires_at,
            not_before=props.not_before,
        )

    return read
