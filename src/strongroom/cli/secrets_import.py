"""``strongroom secret import``: many secrets at once (formats in ``transfer.py``).

Imports check the whole input and every name conflict before writing anything, then write
concurrently (the stores group-commit concurrent writes) with a progress bar.
"""

import enum
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer

from strongroom.cli import transfer
from strongroom.cli.options import JsonOpt, QuietOpt, TagOpt, parse_tags
from strongroom.cli.output import Column, Output
from strongroom.cli.runtime import UsageError, output, run_facade
from strongroom.cli.secrets_transfer import PassphraseFileOpt, bounded, read_passphrase
from strongroom.cli.values import read_secret_text
from strongroom.core.errors import (
    SecretAlreadyExistsError,
    StrongroomError,
)
from strongroom.core.models import SecretType
from strongroom.services.secrets.secrets_manager import SecretsManager

__all__ = ["import_"]

_SHOWN_RENAMES = 10


class Conflict(enum.StrEnum):
    FAIL = "fail"
    SKIP = "skip"
    UPDATE = "update"


class ImportFormat(enum.StrEnum):
    AUTO = "auto"
    ENV = "env"
    JSON = "json"


def _load(
    source: str, fmt: ImportFormat, passphrase_file: Path | None
) -> tuple[str, list[transfer.Item]]:
    raw = sys.stdin.buffer.read() if source == "-" else read_secret_text(Path(source))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the input is not UTF-8 text") from None
    kind, data = transfer.detect(text)
    if fmt is ImportFormat.ENV:
        kind, data = "env", None
    elif fmt is ImportFormat.JSON and kind == "env":
        raise UsageError("the input is not a JSON object")
    if kind == "encrypted":
        passphrase = read_passphrase(passphrase_file, twice=False)
        payload = transfer.decrypt_export(data, passphrase).decode("utf-8")
        kind, data = transfer.detect(payload)
        if kind != "document":
            raise UsageError("the encrypted export does not hold a strongroom document")
        return "encrypted", transfer.from_document(data)
    return kind, transfer.parse_input(kind, text, data)


def _plan(
    items: list[transfer.Item], live: set[str], deleted: set[str], on_conflict: Conflict
) -> dict[str, str]:
    """What happens to each name: create, update or skip; fails, writing nothing, if a
    conflict is not allowed."""
    plan: dict[str, str] = {}
    taken: list[str] = []
    held: list[str] = []
    for item in items:
        key = item.name.lower()
        if on_conflict is Conflict.SKIP and (key in live or key in deleted):
            plan[item.name] = "skip"
        elif key in deleted:
            held.append(item.name)
        elif key in live:
            if on_conflict is Conflict.FAIL:
                taken.append(item.name)
            plan[item.name] = "update"
        else:
            plan[item.name] = "create"
    if held:
        raise SecretAlreadyExistsError(
            f"{_names(held)} held by soft-deleted secrets; nothing was imported "
            "(recover or purge them first, or use --on-conflict skip)"
        )
    if taken:
        raise SecretAlreadyExistsError(
            f"{_names(taken)} already in use; nothing was imported "
            "(use --on-conflict skip or update)"
        )
    return plan


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{len(names)} name{'s' if len(names) != 1 else ''} ({shown})"


def _writer(
    manager: SecretsManager,
    item: transfer.Item,
    action: str,
    secret_type: SecretType | None,
    extra_tags: dict[str, str],
) -> Callable[[], Awaitable[str]]:
    kind = secret_type or item.secret_type or SecretType.GENERIC
    tags = {**(item.tags or {}), **extra_tags}

    async def write() -> str:
        if action == "create":
            await manager.create_secret(
                item.name,
                item.value,
                kind,
                tags,
                content_type=item.content_type,
                not_before=item.not_before,
            )
        else:
            await manager.update_secret(
                item.name,
                item.value,
                tags if (item.tags or extra_tags) else None,
                secret_type=secret_type or item.secret_type,
                content_type=item.content_type,
                not_before=item.not_before,
            )
        if item.expires_at is not None:
            await manager.update_secret_properties(item.name, expires_at=item.expires_at)
        return action

    return write


def import_(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="A .env file, a JSON file or an export; - reads stdin."
        ),
    ],
    fmt: Annotated[
        ImportFormat,
        typer.Option("--format", help="auto detects an encrypted export, JSON and .env."),
    ] = ImportFormat.AUTO,
    on_conflict: Annotated[
        Conflict,
        typer.Option(
            "--on-conflict",
            help="When a name exists: fail (nothing is written), skip it, or update it.",
        ),
    ] = Conflict.FAIL,
    secret_type: Annotated[
        SecretType | None,
        typer.Option("--type", case_sensitive=False, help="Type of every imported secret."),
    ] = None,
    tag: TagOpt = None,
    passphrase_file: PassphraseFileOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would happen and write nothing.")
    ] = False,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import secrets from a .env file, a JSON object or an export, all checked before any write.

    .env names have `_` turned into `-` (names allow only letters, digits and -); the mapping
    is reported.
    """
    out = output(ctx, json=json, quiet=quiet)
    extra_tags = parse_tags(tag) or {}
    kind, items = _load(source, fmt, passphrase_file)
    renamed = {item.source: item.name for item in items if item.source}

    async def work(manager: SecretsManager) -> tuple[dict[str, str], list[tuple[str, str]]]:
        live = {s["name"].lower() for s in await manager.list_secrets()}
        gone = {s["name"].lower() for s in await manager.list_deleted_secrets()}
        plan = _plan(items, live, gone, on_conflict)
        if dry_run:
            return plan, []
        todo = [i for i in items if plan[i.name] != "skip"]
        with out.progress("importing", len(todo)) as bar:
            jobs = [_writer(manager, i, plan[i.name], secret_type, extra_tags) for i in todo]
            results = await bounded(jobs, bar)
        failed = [
            (i.name, r.code)
            for i, r in zip(todo, results, strict=True)
            if isinstance(r, StrongroomError)
        ]
        return plan, failed

    plan, failed = run_facade(ctx, SecretsManager, work)
    counts = {a: sum(1 for v in plan.values() if v == a) for a in ("create", "update", "skip")}
    _report(out, kind, plan, counts, renamed, failed, dry_run)
    if failed:
        names = ", ".join(f"{n} ({code})" for n, code in failed[:5])
        raise StrongroomError(f"{len(failed)} of {len(plan)} secrets were not imported: {names}")


def _report(
    out: Output,
    kind: str,
    plan: dict[str, str],
    counts: dict[str, int],
    renamed: dict[str, str],
    failed: list[tuple[str, str]],
    dry_run: bool,
) -> None:
    if out.json:
        out.data(
            {
                "format": kind,
                "dry_run": dry_run,
                "created": 0 if dry_run else counts["create"] - _failed(failed, plan, "create"),
                "updated": 0 if dry_run else counts["update"] - _failed(failed, plan, "update"),
                "skipped": counts["skip"],
                "failed": [{"name": n, "error_code": c} for n, c in failed],
                "renamed": renamed,
                "plan": plan,
            }
        )
        return
    if renamed and not out.quiet:
        for key, name in list(renamed.items())[:_SHOWN_RENAMES]:
            out.note(f"renamed {key} -> {name}")
        if len(renamed) > _SHOWN_RENAMES:
            out.note(f"... and {len(renamed) - _SHOWN_RENAMES} more renamed (see --json)")
    if dry_run:
        if not out.quiet:
            out.table(
                [Column("name", style="bold"), Column("action")],
                [[name, action] for name, action in plan.items()],
                title=f"import plan ({kind})",
            )
        out.note("--dry-run: nothing was written")
        return
    out.done(
        f"Imported from {kind}: {counts['create'] - _failed(failed, plan, 'create')} created, "
        f"{counts['update'] - _failed(failed, plan, 'update')} updated, {counts['skip']} skipped"
    )


def _failed(failed: list[tuple[str, str]], plan: dict[str, str], action: str) -> int:
    return sum(1 for name, _ in failed if plan.get(name) == action)
