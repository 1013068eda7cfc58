"""``strongroom init`` and ``strongroom status``: set up a profile and see how it is doing."""

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from strongroom.cli.options import JsonOpt, QuietOpt
from strongroom.cli.output import Output
from strongroom.cli.runtime import UsageError, output, run, settings
from strongroom.core.config import Backend, Settings
from strongroom.core.errors import WrongMasterKeyError
from strongroom.core.keyfile import create_key_file
from strongroom.services.audit.secrets_audit import SecretsAudit
from strongroom.services.custody.advice import custody_warnings
from strongroom.services.custody.replace import replacement_status
from strongroom.services.wiring import Strongroom

__all__ = ["init", "status"]


def _where(config: Settings) -> str:
    """Where the secrets live, without credentials."""
    backend = config.backend
    if backend is Backend.SQLITE:
        return str(config.sqlite_path)
    if backend is Backend.POSTGRES and config.database_url is not None:
        url = urlsplit(config.database_url.get_secret_value())
        host = url.hostname or "localhost"
        port = f":{url.port}" if url.port else ""
        return f"postgresql://{host}{port}{url.path} schema {config.pg_schema}"
    if backend is Backend.MEMORY:
        return "process memory (nothing persists)"
    return backend.value


def _audit_where(config: Settings) -> str:
    if config.audit_database_url is not None:
        url = urlsplit(config.audit_database_url.get_secret_value())
        return f"postgresql://{url.hostname or 'localhost'}{url.path}"
    return "beside the secrets"


def _key_source(config: Settings) -> tuple[str, Path | None]:
    """Where the master key comes from, and the key file to create if there is none yet."""
    if config.seal == "pkcs11":
        return (
            f"HSM (PKCS#11 token {config.pkcs11_token_label!r}, key {config.pkcs11_key_label!r})",
            None,
        )
    if config.seal == "azurekeyvault":
        return f"a Key Vault key ({config.azure_seal_key_id})", None
    if config.seal == "shamir":
        return "a quorum of key holders (unsealed service only)", None
    if config.master_key is not None:
        return "STRONGROOM_MASTER_KEY", None
    if config.master_key_file is not None:
        return str(config.master_key_file), config.master_key_file
    return str(config.default_key_file), config.default_key_file


@dataclass(frozen=True, slots=True)
class _KeyFileState:
    source: str
    created: Path | None


def _ensure_key(config: Settings) -> _KeyFileState:
    """Make the key file where the configuration expects one, unless it exists (checked when
    the store opens), the key comes from the environment, or an embedded database is already
    there (a new key could not open it: opening reports the missing file instead)."""
    source, path = _key_source(config)
    existing_db = config.backend is Backend.SQLITE and config.sqlite_path.exists()
    if config.backend is Backend.MEMORY or path is None or path.exists() or existing_db:
        return _KeyFileState(source, created=None)
    create_key_file(path)
    return _KeyFileState(source, created=path)


def init(
    ctx: typer.Context,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            metavar="PATH",
            help="Create the master key file here (default: STRONGROOM_MASTER_KEY_FILE or "
            "$STRONGROOM_HOME/master.key). Every replica of a cluster needs the same key.",
        ),
    ] = None,
    json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Set up the configured profile: data directory, master key file (mode 0600), schema.

    Safe to run again: an existing key file is kept and checked, the schema is brought up to
    date. On the cluster profile, point every replica at the same key (STRONGROOM_MASTER_KEY or
    STRONGROOM_MASTER_KEY_FILE).
    """
    out = output(ctx, json=json, quiet=quiet)
    config = settings()
    if key_file is not None:
        if config.master_key is not None:
            raise UsageError("--key-file and STRONGROOM_MASTER_KEY cannot both be used")
        config = config.model_copy(update={"master_key_file": key_file})
    if config.backend is Backend.SQLITE:
        config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = _ensure_key(config)

    async def work(strongroom: Strongroom) -> dict[str, Any]:
        # The HTTP service's first admin identity is created here once the server lands.
        return {
            "profile": strongroom.profile,
            "store": _where(config),
            "master_key": key.source,
            "key_file_created": key.created is not None,
            "key_version": await strongroom.store.key_version(),
            "secrets": await strongroom.store.count(),
        }

    try:
        report = run(ctx, work, config=config)
    except WrongMasterKeyError:
        if key.created is not None:
            key.created.unlink()  # a store is already there under another key: leave no stray
        raise
    verb = "created" if key.created else "found"
    out.done(
        f"strongroom {report['profile']} profile ready at {report['store']}; "
        f"master key {verb} at {report['master_key']}",
        report,
    )
    if key.created and config.backend is Backend.POSTGRES:
        out.note(
            f"Every replica must use this key: set STRONGROOM_MASTER_KEY_FILE={key.source} "
            "(mode 0600) or STRONGROOM_MASTER_KEY; keep a copy somewhere safe."
        )


def status(
    ctx: typer.Context,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also verify the audit hash chain (reads it all).")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Profile, stores, key version, counts and health (remote profile: the server, the
    token's identity and whether the server is ready)."""
    out = output(ctx, json=json)
    config = settings()
    if config.remote:
        from strongroom.cli.remote_status import remote_status  # noqa: PLC0415

        remote_status(ctx, out, config, verify=verify)
        return

    async def work(strongroom: Strongroom) -> dict[str, Any]:
        audit = SecretsAudit(strongroom)
        report: dict[str, Any] = {
            "profile": strongroom.profile,
            "store": _where(config),
            "audit_store": _audit_where(config),
            "master_key": _key_source(config)[0],
            "key_version": await strongroom.store.key_version(),
            "secrets": await strongroom.store.count(),
            "deleted_secrets": len(await strongroom.store.list_deleted()),
            "audit_events": await audit.count_events(),
            "token_warnings": await _token_warnings(strongroom),
            "master_key_replacement": await replacement_status(config),
        }
        if verify:
            report["audit_chain"] = await audit.verify_integrity()
        return report

    report = run(ctx, work)
    problems = _health(report, config)
    report["health"] = "ok" if not problems else "degraded"
    report["problems"] = problems
    # Advice, not a fault: the exit code stays as the health says.
    report["custody_warnings"] = custody_warnings(config)
    next_step = report["master_key_replacement"]["next_step"]
    if next_step is not None:
        report["custody_warnings"].append(next_step)
    if out.json:
        out.data(report)
    else:
        _show_status(out, report)
        for warning in [*report["custody_warnings"], *report["token_warnings"]]:
            out.warn(warning)
    if problems:
        raise typer.Exit(1)


async def _token_warnings(strongroom: Strongroom) -> list[str]:
    """Live tokens that never expire: fine for bootstrap, a standing risk anywhere else."""
    return [
        f"token {t.id} of {t.identity} never expires; prefer --ttl-days, a JWT or certificate "
        "login, and revoke it once it is not needed"
        for t in await strongroom.access.list_tokens()
        if t.revoked_at is None and t.expires_at is None
    ]


def _health(report: dict[str, Any], config: Settings) -> list[str]:
    """What needs an operator's attention (the stores answered, or we would not be here)."""
    problems: list[str] = []
    chain = report.get("audit_chain")
    if chain is not None and not chain["valid"]:
        problems.append(f"audit chain broken at event {chain['broken_at']}: {chain['reason']}")
    if config.audit_fail_open:
        problems.append("STRONGROOM_AUDIT_FAIL_OPEN is on: calls are served when audit is down")
    if config.backend is Backend.SQLITE:
        mode = stat.S_IMODE(config.home.stat().st_mode)
        if mode & 0o077:
            problems.append(f"data directory {config.home} is open to others (mode {mode:04o})")
    return problems


def _replaced(replacement: dict[str, Any]) -> str:
    epoch = replacement["epoch"]
    return f" (replaced {epoch} time{'s' if epoch != 1 else ''})" if epoch else ""


def _show_status(out: Output, report: dict[str, Any]) -> None:
    health = report["health"]
    rows: dict[str, Any] = {
        "profile": report["profile"],
        "secrets store": report["store"],
        "audit store": report["audit_store"],
        "master key": report["master_key"] + _replaced(report["master_key_replacement"]),
        "key version": str(report["key_version"]),
        "secrets": f"{report['secrets']} live, {report['deleted_secrets']} deleted",
        "audit events": str(report["audit_events"]),
    }
    chain = report.get("audit_chain")
    if chain is not None:
        rows["audit chain"] = (
            (f"intact ({chain['checked']} verified)", "green")
            if chain["valid"]
            else (f"BROKEN at event {chain['broken_at']}", "bold red")
        )
    rows["health"] = (health, "green" if health == "ok" else "bold red")
    if report["problems"]:
        rows["problems"] = ("; ".join(report["problems"]), "red")
    out.fields(rows, title="strongroom status")
