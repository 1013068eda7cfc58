"""The end of the audit log cannot be cut off undetected: signed checkpoints outside the
database remember how far the chain had reached.

Each attack is the one a database administrator without the master key can make: delete the
newest events and set the chain head back to the last row kept (SQLite, and PostgreSQL while
the service runs), delete every row and reset the head, let the next append reuse the freed
ids. Each is reported by ``verify_integrity`` once a checkpoint had covered the cut events.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest

from helpers_raw import raw_execute, raw_fetch
from helpers_settings import make_settings
from strongroom import SecretsAudit, SecretsManager, Settings, Strongroom

pytestmark = pytest.mark.stores("sqlite", "postgres")


async def _events(app: Strongroom, reads: int) -> str:
    manager = SecretsManager(app)
    name = f"audited-{secrets.token_hex(4)}"
    await manager.create_secret(name, "the-value")
    for _ in range(reads):
        await manager.get_secret(name)
    return name


async def _cut_tail(settings: Settings, keep: int) -> None:
    """Delete every event after ``keep`` and set the chain head to the last row kept."""
    kept = await raw_fetch(settings, "SELECT chain_hash FROM secrets_audit_log WHERE id = ?", keep)
    last_hash = bytes(kept[0][0]) if kept else b"\x00" * 32
    await raw_execute(
        settings,
        ("DELETE FROM secrets_audit_log WHERE id > ?", (keep,)),
        ("UPDATE secrets_audit_chain SET last_seq = ?, last_hash = ? WHERE id = 1",
         (keep, last_hash)),
    )  # fmt: skip


def _head(checkpoint: dict[str, Any], chain: str) -> dict[str, Any]:
    """The head a checkpoint lists for one chain (``main``: the first writer chain)."""
    return next(h for h in checkpoint["heads"] if h["chain"] == chain)


def _files(settings: Settings) -> list[Path]:
    assert settings.checkpoint_dir is not None
    return sorted(settings.checkpoint_dir.glob("checkpoint-*.json"))


async def test_cutting_off_the_newest_events_is_reported(store_settings: Settings) -> None:
    async with await Strongroom.open(store_settings) as app:
        await _events(app, reads=9)  # events 1..10
        written = await SecretsAudit(app).write_checkpoint()
        assert written is not None
        assert _head(written, "main")["seq"] == 10
    await _cut_tail(store_settings, keep=6)
    async with await Strongroom.open(store_settings) as app:
        report = await SecretsAudit(app).verify_integrity()
    assert report["valid"] is False
    assert report["broken_at"] == 7
    assert "cut off" in report["reason"]
    assert report["checked"] == 6


async def test_emptying_the_log_and_resetting_the_head_is_reported(
    store_settings: Settings,
) -> None:
    async with await Strongroom.open(store_settings) as app:
        await _events(app, reads=4)
        await SecretsAudit(app).write_checkpoint()
    await _cut_tail(store_settings, keep=0)
    async with await Strongroom.open(store_settings) as app:
        report = await SecretsAudit(app).verify_integrity()
    assert report["valid"] is False
    assert report["checked"] == 0
    assert "cut off" in report["reason"]


async def test_events_appended_over_freed_ids_are_reported(store_settings: Settings) -> None:
    """The service keeps running (on PostgreSQL, with its cached view of the chain head) while
    the tail is cut; its next events take the freed ids. The checkpoint still holds the hash of
    the event that was at its position, so the rewritten history does not pass."""
    async with await Strongroom.open(store_settings) as app:
        await _events(app, reads=5)  # events 1..6
        await SecretsAudit(app).write_checkpoint()
        await _cut_tail(store_settings, keep=3)
        await _events(app, reads=5)  # six new events take ids 4..9
        ids = [r[0] for r in await raw_fetch(store_settings, "SELECT id FROM secrets_audit_log")]
        assert sorted(ids) == list(range(1, 10))
        report = await SecretsAudit(app).verify_integrity()
    assert report["valid"] is False
    assert report["broken_at"] == 6
    assert "rewritten" in report["reason"]


async def test_no_checkpoint_is_written_over_a_log_that_went_backwards(
    store_settings: Settings,
) -> None:
    async with await Strongroom.open(store_settings) as app:
        await _events(app, reads=5)
        first = await SecretsAudit(app).write_checkpoint()
        await _cut_tail(store_settings, keep=2)
        assert await SecretsAudit(app).write_checkpoint() is None
        assert app.metrics.value("audit_integrity_alerts_total") >= 1
        assert first is not None
    assert len(_files(store_settings)) == 1  # closing wrote nothing over the cut either


async def test_a_forged_or_missing_checkpoint_is_reported(store_settings: Settings) -> None:
    async with await Strongroom.open(store_settings) as app:
        for _ in range(3):
            await _events(app, reads=1)
            await SecretsAudit(app).write_checkpoint()
        files = _files(store_settings)
        assert len(files) == 3
        assert (await SecretsAudit(app).verify_integrity())["valid"] is True

        # Lower the sequence number in the newest checkpoint: its signature no longer holds.
        newest = files[-1]
        newest.chmod(0o600)
        newest.write_text(newest.read_text().replace('"seq":6', '"seq":4'))
        report = await SecretsAudit(app).verify_integrity()
        assert report["valid"] is False
        assert "tampered" in report["reason"]

        # Remove it and the middle one: the gap in the checkpoints' own chain shows.
        newest.unlink()
        files[1].unlink()
        files[0].chmod(0o600)
        report = await SecretsAudit(app).verify_integrity()
        assert report["valid"] is True  # the first checkpoint alone still agrees with the log
        (store_settings.checkpoint_dir / files[1].name).write_bytes(b"{}")  # type: ignore[operator]
        assert (await SecretsAudit(app).verify_integrity())["valid"] is False


async def test_checkpoints_are_written_on_schedule(tmp_path: Path) -> None:
    """With a short interval, checkpoints follow the log without anyone asking."""
    settings = make_settings("sqlite", tmp_path).model_copy(
        update={"audit_checkpoint_seconds": 0.05}
    )
    async with await Strongroom.open(settings) as app:
        await _events(app, reads=2)
        await _wait_for(lambda: bool(_files(settings)))
        await _events(app, reads=2)
        await _wait_for(lambda: len(_files(settings)) >= 2)
        report = await SecretsAudit(app).verify_integrity()
    assert report["valid"] is True
    assert _head(report["checkpoints"]["latest"], "main")["seq"] == 6


async def _wait_for(condition: Any, limit: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.01)
