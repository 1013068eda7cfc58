"""Master key replacement (``python -m bench --only custody``): what the wrapped root key costs
each process that opens a store (reading the record and unwrapping it), against opening a store
never replaced in the same run, and how long ``replace-master`` takes on a key file, on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from bench.harness import Measurement, ResultRow, run_async
from strongroom import SecretsManager, Settings, Strongroom
from strongroom.core.config import Backend
from strongroom.core.keyfile import create_key_file
from strongroom.services.building import load_master_key
from strongroom.services.custody.replace import replace_master
from strongroom.services.custody.root import resolve_root

__all__ = ["run_custody"]

SECTION = "custody"


async def run_custody(
    *, seconds: float, warmup_seconds: float, rounds: int, pg_url: str
) -> list[ResultRow]:
    rows: list[ResultRow] = []
    for backend in ("sqlite", "postgres"):
        schema = f"bench_custody_{secrets.token_hex(4)}"
        with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as home:
            try:
                rows += await _measure(backend, Path(home), schema, pg_url,
                                       seconds, warmup_seconds, rounds)  # fmt: skip
            finally:
                if backend == "postgres":
                    await _drop(pg_url, schema)
                    await _drop(pg_url, schema + "_p")
    return rows


def _settings(backend: str, home: Path, schema: str, pg_url: str) -> Settings:
    path = home / "keys" / "master.key"
    if not path.exists():
        create_key_file(path)
    return Settings(
        STRONGROOM_BACKEND=Backend(backend),
        STRONGROOM_HOME=home,
        DATABASE_URL=SecretStr(pg_url),
        STRONGROOM_PG_SCHEMA=schema,
        STRONGROOM_MASTER_KEY_FILE=path,
    )


async def _measure(
    backend: str, home: Path, schema: str, pg_url: str,
    seconds: float, warmup_seconds: float, rounds: int,
) -> list[ResultRow]:  # fmt: skip
    plain = _settings(backend, home / "plain", schema + "_p", pg_url)
    replaced = _settings(backend, home / "replaced", schema, pg_url)
    for settings in (plain, replaced):
        async with await Strongroom.open(settings) as app:
            await SecretsManager(app).create_secret("bench-secret", "v" * 64)
    async with await Strongroom.open(replaced) as app:
        await replace_master(app)

    async def open_close(settings: Settings) -> None:
        app = await Strongroom.open(settings, audit=False)
        await app.close()

    async def open_plain(_i: int) -> None:
        await open_close(plain)

    async def open_replaced(_i: int) -> None:
        await open_close(replaced)

    async def resolve(_i: int) -> object:
        return await resolve_root(replaced, load_master_key(replaced))

    async def replace(_i: int) -> object:
        async with await Strongroom.open(replaced) as app:
            return await replace_master(app)

    async def measure(label: str, op: object) -> Measurement:
        return await run_async(
            op,  # type: ignore[arg-type]
            label=f"{label} ({backend})", seconds=seconds, warmup_seconds=warmup_seconds,
            rounds=rounds,
        )  # fmt: skip

    reference = await measure("open+close, never replaced", open_plain)
    rows = [ResultRow(SECTION, reference.label, reference)]
    for label, op in (("open+close, replaced", open_replaced),
                      ("root key read+unwrap", resolve),
                      ("replace-master, key file", replace)):  # fmt: skip
        m = await measure(label, op)
        ratio = m.ops_per_s / reference.ops_per_s if reference.ops_per_s else None
        rows.append(ResultRow(SECTION, m.label, m, reference=reference.label, ratio=ratio))
    return rows


async def _drop(pg_url: str, schema: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
