"""The audit chain key changes with the master key (services.custody.replace): every chain moves
to the new key at a switch linked under the old one, a process holding only the old key
writes nothing more, and whoever kept the old master key can no longer forge the log."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from helpers_raw import past_read_window
from helpers_settings import PG_URL, custody_settings, new_master_key
from strongroom import SecretsAudit, SecretsManager, Settings, acting_as
from strongroom.core.anchors import ANCHOR_CHAIN, chain_of
from strongroom.core.audit import EPOCH_FIELD, ChainKey
from strongroom.core.errors import AuditUnavailableError
from strongroom.core.keyfile import create_key_file, read_key_file
from strongroom.core.keys import Purpose
from strongroom.services.custody.replace import replace_master
from strongroom.services.wiring import Strongroom


@pytest.fixture(params=["sqlite", "postgres"])
def configure(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Settings]:
    backend = request.param
    schema = request.getfixturevalue("pg_schema") if backend == "postgres" else "strongroom"
    return custody_settings(backend, tmp_path, schema)


async def _epochs(app: Strongroom) -> dict[int, int]:
    assert app.audit.store is not None
    return {head.chain: head.key_epoch for head in await app.audit.store.chains()}


def _key_file_settings(configure: Callable[..., Settings], home: Path) -> tuple[Path, Settings]:
    """A new master key file in ``home`` and the settings of a store that reads it."""
    path = home / "master.key"
    create_key_file(path)
    return path, configure(STRONGROOM_MASTER_KEY_FILE=path)


async def test_a_replacement_moves_the_chains_to_a_new_key_that_verify_follows(
    configure: Callable[..., Settings], tmp_path: Path
) -> None:
    _, settings = _key_file_settings(configure, tmp_path)
    async with await Strongroom.open(settings) as early, await Strongroom.open(settings) as app:
        await SecretsManager(app).create_secret("app-db", "v1")
        with acting_as("early"):
            await SecretsManager(early).get_secret("app-db")
        assert app.audit.key.epoch == 0
        for epoch in (1, 2):
            await replace_master(app)
            assert app.audit.key.epoch == epoch
            assert (await _epochs(app))[ANCHOR_CHAIN] == epoch
            await SecretsManager(app).update_secret("app-db", f"v{epoch + 1}")
            await past_read_window(settings)  # another process's change: seen once it is past
            # A process opened before: its key file now holds the new key, read again, and
            # its read is written with it (not lost in the retry).
            with acting_as("early"):
                assert await SecretsManager(early).get_secret("app-db") == f"v{epoch + 1}"
            assert early.audit.key.epoch == epoch
            assert await SecretsAudit(app).count_events(actor_id="early") == epoch + 1
        switches = await SecretsAudit(app).get_audit_trail(action="CHAIN_KEY", limit=50)
        moved = sorted(e["details"][EPOCH_FIELD] for e in switches if EPOCH_FIELD in e["details"])
        assert moved[0] == 1
        assert moved[-1] == 2
        assert set(moved) == {1, 2}
        report = await SecretsAudit(app).verify_integrity()
        assert report["valid"], report
        assert set((await _epochs(app)).values()) <= {2}
        assert app.audit.store is not None
        key_anchors = [
            anchor
            async for batch in app.audit.store.anchors(0, 2**63 - 1, 100)
            for anchor in batch
            if anchor.chain == ANCHOR_CHAIN
        ]
        assert [a.first for a in key_anchors] == [1, 2]


async def test_an_old_key_from_the_environment_writes_nothing_once_the_log_moved(
    configure: Callable[..., Settings],
) -> None:
    old = configure(STRONGROOM_MASTER_KEY=new_master_key())
    async with await Strongroom.open(old) as app:
        await SecretsManager(app).create_secret("app-db", "value")
        result = await replace_master(app)
    assert result.new_key is not None
    async with await Strongroom.open(old) as stale:
        await SecretsManager(stale).get_secret("app-db")  # the log has not moved yet
        new = configure(STRONGROOM_MASTER_KEY=result.new_key)
        async with await Strongroom.open(new) as fresh:  # finishes, and moves the log
            assert (await _epochs(fresh))[ANCHOR_CHAIN] == 1
            before = (await SecretsAudit(fresh).verify_integrity())["checked"]
            with (
                capture_logs() as logs,
                pytest.raises(AuditUnavailableError, match="key epoch 1") as refused,
            ):
                await SecretsManager(stale).get_secret("app-db")
            assert "value" not in str(refused.value)
            assert {
                "event": "audit chain key is stale", "stored": 1, "held": 0,
                "log_level": "critical",
            } in logs  # fmt: skip
            assert stale.audit.last_error == "write_failed"
            await SecretsManager(fresh).get_secret("app-db")
            report = await SecretsAudit(fresh).verify_integrity()
            assert report["valid"], report
            assert report["checked"] == before + 2  # the chain's switch, then the fresh read


async def _raw(settings: Settings, statement: str, *params: object) -> list[tuple[object, ...]]:
    """One statement on the stored audit tables, behind strongroom's back (``?`` placeholders)."""
    if settings.backend.value == "sqlite":
        with closing(sqlite3.connect(settings.sqlite_path, isolation_level=None)) as conn:
            return [tuple(row) for row in conn.execute(statement, params)]
    parts = statement.split("?")
    numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.pg_schema})
    try:
        return [tuple(row) for row in await conn.fetch(numbered, *params)]
    finally:
        await conn.close()


async def test_the_old_key_cannot_forge_what_was_written_after_the_switch(
    configure: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "master.key"
    create_key_file(path)
    retired = tmp_path / "retired.key"
    shutil.copy(path, retired)
    settings = configure(STRONGROOM_MASTER_KEY_FILE=path)
    async with await Strongroom.open(settings) as app:
        await SecretsManager(app).create_secret("app-db", "v1")
        await replace_master(app)
        await SecretsManager(app).update_secret("app-db", "v2")
        assert (await SecretsAudit(app).verify_integrity())["valid"]
    old = ChainKey(read_key_file(retired).derive(Purpose.AUDIT_CHAIN))

    async def sql(statement: str, *params: object) -> list[tuple[object, ...]]:
        return await _raw(settings, statement, *params)

    # 1. The last event (an UPDATE, after the switch) relinked under the old key.
    (last_id, prev), *_ = await sql(
        "SELECT id, prev_hash FROM secrets_audit_log ORDER BY id DESC LIMIT 1"
    )
    assert isinstance(last_id, int)
    async with await Strongroom.open(settings) as app:
        assert app.audit.store is not None
        scan = app.audit.store.scan_links(last_id - 1, last_id, 10)
        (link,) = [lk async for batch in scan for lk in batch]
    forged = old.mac(bytes(prev), link.body)  # type: ignore[arg-type]
    await sql("UPDATE secrets_audit_log SET chain_hash = ? WHERE id = ?", forged, last_id)
    await sql(
        "UPDATE secrets_audit_chain SET last_hash = ? WHERE id = ?", forged, chain_of(last_id)
    )
    async with await Strongroom.open(settings) as app:
        report = await SecretsAudit(app).verify_integrity()
    assert not report["valid"]
    assert report["broken_at"] == last_id
    assert "does not match its hash" in report["reason"]

    # 2. The anchor chain rolled back to before its key anchor, its head at the old epoch:
    # found by verify, and never moved again by a writer (which would hide the rollback).
    (key_seq,), *_ = await sql("SELECT seq FROM secrets_audit_anchors WHERE chain_id = 0")
    assert isinstance(key_seq, int)
    (before_seq, before_hash), *_ = await sql(
        "SELECT seq, anchor_hash FROM secrets_audit_anchors WHERE seq = ?", key_seq - 1
    )
    await sql("DELETE FROM secrets_audit_anchors WHERE seq >= ?", key_seq)
    await sql(
        "UPDATE secrets_audit_chain SET last_seq = ?, last_hash = ?, key_epoch = 0 WHERE id = 0",
        before_seq,
        before_hash,
    )
    for _ in range(2):
        async with await Strongroom.open(settings) as app:
            report = await SecretsAudit(app).verify_integrity()
            assert not report["valid"]
            assert report["reason"] is not None
            await SecretsManager(app).update_secret("app-db", "v3")  # writes go on
    assert await sql("SELECT count(*) FROM secrets_audit_anchors WHERE chain_id = 0") == [(0,)]


async def test_a_process_whose_custody_cannot_give_the_new_key_writes_nothing(
    configure: Callable[..., Settings], tmp_path: Path
) -> None:
    path, settings = _key_file_settings(configure, tmp_path)
    async with await Strongroom.open(settings) as early, await Strongroom.open(settings) as app:
        await SecretsManager(app).create_secret("app-db", "value")
        await SecretsManager(early).get_secret("app-db")
        await replace_master(app)
        path.unlink()  # the key file the early process would read the new key from is gone
        with (
            capture_logs() as logs,
            pytest.raises(AuditUnavailableError, match="key epoch 1") as refused,
        ):
            await SecretsManager(early).get_secret("app-db")
        assert "value" not in str(refused.value)
        warned = [e for e in logs if e["event"] == "custody did not give the new key"]
        assert len(warned) == 1
        assert warned[0]["log_level"] == "warning"
        assert warned[0]["error"].endswith("Error")  # the error's type, never its text
        assert {
            "event": "audit chain key is stale", "stored": 1, "held": 0, "log_level": "critical",
        } in logs  # fmt: skip
        assert early.audit.key.epoch == 0
        assert (await SecretsAudit(app).verify_integrity())["valid"]
