"""The audit log's hash chain catches every change made behind strongroom's back.

Events are written through the public API, then the database is opened directly (sqlite3 for
the SQLite file, asyncpg for the PostgreSQL schema) to change, remove or forge rows;
``SecretsAudit.verify_integrity`` must name the first broken event and count every good one
before it. Retention pruning keeps the rest of the chain verifiable. The memory profile keeps
nothing at rest, so these tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import sqlite3
import sys
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpers_settings import PG_URL, make_settings, new_master_key
from strongroom import SecretsAudit, SecretsManager, Settings, Strongroom
from strongroom.core.anchors import CHAIN_SPAN
from strongroom.core.clock import ManualClock

pytestmark = pytest.mark.stores("sqlite", "postgres")

READS = 5
EVENTS = 1 + READS  # one CREATE, then the READs
TIMEOUT = 60.0


# -- raw access to the stored audit rows -----------------------------------------------------


def _pg_sql(sql: str) -> str:
    """``?`` placeholders to asyncpg's ``$1, $2, ...``; ``{json}`` marks a jsonb parameter."""
    counter = itertools.count(1)
    parts = sql.replace("{json}", "::jsonb").split("?")
    return parts[0] + "".join(f"${next(counter)}{part}" for part in parts[1:])


async def raw(settings: Settings, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the stored audit tables, bypassing strongroom entirely."""
    if settings.backend.value == "sqlite":
        with closing(sqlite3.connect(settings.sqlite_path, isolation_level=None)) as conn:
            return [tuple(row) for row in conn.execute(sql.replace("{json}", ""), params)]
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": settings.pg_schema})
    try:
        return [tuple(row) for row in await conn.fetch(_pg_sql(sql), *params)]
    finally:
        await conn.close()


async def stored_ids(settings: Settings) -> list[int]:
    return [row[0] for row in await raw(settings, "SELECT id FROM secrets_audit_log ORDER BY id")]


async def write_events(manager: SecretsManager, reads: int = READS) -> str:
    """One CREATE and ``reads`` READs: ``1 + reads`` events with ids 1, 2, ..."""
    name = f"audited-{secrets.token_hex(4)}"
    await manager.create_secret(name, "the-value", metadata={"owner": "dispatch"})
    for _ in range(reads):
        assert await manager.get_secret(name) == "the-value"
    return name


_VERDICT = ("valid", "checked", "broken_at", "reason")


async def verify(app: Strongroom) -> dict[str, Any]:
    """The report, its verdict checked to be the same whatever the scan's batch size."""
    audit = SecretsAudit(app)
    report = await audit.verify_integrity()
    small = await audit.verify_integrity(batch=2)
    assert {k: small[k] for k in _VERDICT} == {k: report[k] for k in _VERDICT}
    return report


def assert_broken(report: dict[str, Any], at: int, reason: str) -> None:
    assert report["valid"] is False, report
    assert report["broken_at"] == at, report
    assert report["checked"] == at - 1, report  # every event before it still counts
    assert reason in report["reason"], report


# -- an untouched log ------------------------------------------------------------------------


async def test_an_untouched_log_verifies(manager: SecretsManager, app: Strongroom) -> None:
    await write_events(manager)
    report = await verify(app)
    assert report.pop("checkpoints")["sink"].startswith("directory ")
    assert report == {
        "valid": True,
        "checked": EVENTS,
        "first_id": 1,
        "last_id": EVENTS,
        "broken_at": None,
        "reason": None,
        "processes": 1,
    }
    assert await SecretsAudit(app).count_events() == EVENTS


async def test_an_empty_log_verifies(app: Strongroom) -> None:
    report = await verify(app)
    assert report["valid"] is True
    assert report["checked"] == 0


# -- modified rows ---------------------------------------------------------------------------

_MODIFICATIONS = {
    "actor_id": ("UPDATE secrets_audit_log SET actor_id = ? WHERE id = ?", "mallory"),
    "result": ("UPDATE secrets_audit_log SET result = ? WHERE id = ?", "FAILURE"),
    "details": (
        "UPDATE secrets_audit_log SET details = ?{json} WHERE id = ?",
        '{"version": "forged"}',
    ),
    "resource_name": ("UPDATE secrets_audit_log SET resource_name = ? WHERE id = ?", "other"),
    "action": ("UPDATE secrets_audit_log SET action = ? WHERE id = ?", "LIST"),
    "actor_ip": ("UPDATE secrets_audit_log SET actor_ip = ? WHERE id = ?", "10.66.0.9"),
    "actor_user_agent": (
        "UPDATE secrets_audit_log SET actor_user_agent = ? WHERE id = ?",
        "forged-agent/1.0",
    ),
    "error_message": ("UPDATE secrets_audit_log SET error_message = ? WHERE id = ?", "forged"),
    "error_code": ("UPDATE secrets_audit_log SET error_code = ? WHERE id = ?", "FORGED"),
    "duration_ms": ("UPDATE secrets_audit_log SET duration_ms = ? WHERE id = ?", 987654),
}

#: The timestamp column's type differs (SQLite: microseconds, PostgreSQL: timestamptz).
_MOVE_TIMESTAMP = {
    "sqlite": "UPDATE secrets_audit_log SET timestamp = timestamp + 1000000 WHERE id = ?",
    "postgres": "UPDATE secrets_audit_log SET timestamp = timestamp + interval '1 second' "
    "WHERE id = ?",
}


@pytest.mark.parametrize("column", sorted(_MODIFICATIONS))
async def test_a_modified_row_breaks_the_chain_at_that_row(
    manager: SecretsManager, app: Strongroom, store_settings: Settings, column: str
) -> None:
    await write_events(manager)
    assert (await verify(app))["valid"] is True
    sql, value = _MODIFICATIONS[column]
    await raw(store_settings, sql, value, 3)

    assert_broken(await verify(app), 3, "does not match its hash")


async def test_every_stored_column_is_covered_by_the_hash(
    app: Strongroom, store_settings: Settings
) -> None:
    """The modifications above plus the timestamp touch every column the chain hashes."""
    columns = {row[1] for row in await raw(store_settings, _COLUMNS[store_settings.backend.value])}
    unhashed = {"id", "prev_hash", "chain_hash"}
    assert columns - unhashed == {*_MODIFICATIONS, "timestamp"}


_COLUMNS = {
    "sqlite": "SELECT cid, name FROM pragma_table_info('secrets_audit_log')",
    "postgres": "SELECT ordinal_position, column_name::text FROM information_schema.columns "
    "WHERE table_name = 'secrets_audit_log' AND table_schema = current_schema()",
}


async def test_a_moved_timestamp_breaks_the_chain_at_that_row(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    await write_events(manager)
    assert (await verify(app))["valid"] is True
    await raw(store_settings, _MOVE_TIMESTAMP[store_settings.backend.value], 3)

    assert_broken(await verify(app), 3, "does not match its hash")


async def test_a_detail_added_to_a_row_breaks_the_chain_at_that_row(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    """A key the writer would never store (not on the details allowlist) is still part of the
    row: the check hashes the row as stored, not a cleaned copy that matches the original."""
    await write_events(manager)
    if store_settings.backend.value == "sqlite":
        added = "json_set(details, '$.smuggled', 'x')"
    else:
        added = """details || '{"smuggled": "x"}'"""
    sql = f"UPDATE secrets_audit_log SET details = {added} WHERE id = ?"
    await raw(store_settings, sql, 3)
    [(details,)] = await raw(store_settings, "SELECT details FROM secrets_audit_log WHERE id = 3")
    assert "smuggled" in str(details)
    assert_broken(await verify(app), 3, "does not match its hash")


async def test_a_modified_first_row_is_reported(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    await write_events(manager)
    await raw(store_settings, "UPDATE secrets_audit_log SET actor_id = ? WHERE id = 1", "mallory")
    assert_broken(await verify(app), 1, "does not match its hash")


async def test_a_modified_last_row_is_reported(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    await write_events(manager)
    await raw(
        store_settings, "UPDATE secrets_audit_log SET result = ? WHERE id = ?", "FAILURE", EVENTS
    )
    assert_broken(await verify(app), EVENTS, "does not match its hash")


async def test_rehashing_a_modified_row_without_the_key_is_reported(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    """Changing a row and giving it a made-up hash (the attacker has no master key) still
    breaks the chain: at the row itself, not only at the next one."""
    await write_events(manager)
    await raw(
        store_settings,
        "UPDATE secrets_audit_log SET actor_id = ?, chain_hash = ? WHERE id = ?",
        "mallory",
        secrets.token_bytes(32),
        3,
    )
    assert_broken(await verify(app), 3, "does not match its hash")


async def test_a_broken_report_names_the_range_it_checked(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    """first_id/last_id describe the events that verified before the break, whatever the
    batch size: here events 1 and 2, as ``checked == 2`` says."""
    await write_events(manager)
    await raw(store_settings, "UPDATE secrets_audit_log SET actor_id = 'x' WHERE id = 3")
    audit = SecretsAudit(app)
    for batch in (5000, 2, 1):
        report = await audit.verify_integrity(batch=batch)
        assert report["checked"] == 2
        assert (report["first_id"], report["last_id"]) == (1, 2), (batch, report)


# -- removed rows ----------------------------------------------------------------------------


async def test_a_deleted_middle_row_is_reported_as_missing(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    await write_events(manager)
    await raw(store_settings, "DELETE FROM secrets_audit_log WHERE id = ?", 3)
    assert await stored_ids(store_settings) == [1, 2, 4, 5, 6]

    assert_broken(await verify(app), 3, "missing")


async def test_deleted_rows_at_the_tail_are_reported_as_missing(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    await write_events(manager)
    await raw(store_settings, "DELETE FROM secrets_audit_log WHERE id > ?", EVENTS - 2)
    assert await stored_ids(store_settings) == list(range(1, EVENTS - 1))

    report = await verify(app)
    assert_broken(report, EVENTS - 1, "missing")
    assert f"{EVENTS - 1}..{EVENTS}" in report["reason"]


async def test_deleting_the_whole_log_is_reported(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    await write_events(manager)
    await raw(store_settings, "DELETE FROM secrets_audit_log")
    assert_broken(await verify(app), 1, "missing")


async def test_a_deleted_row_renumbered_to_close_the_gap_is_reported(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    """Removing row 3 and moving the later rows down one id leaves no gap in the ids; the
    chain still breaks at 3 (the row now there was chained at another position)."""
    await write_events(manager)
    await raw(store_settings, "DELETE FROM secrets_audit_log WHERE id = 3")
    for old in range(4, EVENTS + 1):
        await raw(store_settings, "UPDATE secrets_audit_log SET id = ? WHERE id = ?", old - 1, old)
    assert await stored_ids(store_settings) == list(range(1, EVENTS))

    report = await verify(app)
    assert report["valid"] is False
    assert report["broken_at"] == 3
    assert report["checked"] == 2


# -- forged rows -----------------------------------------------------------------------------

_FORGE = (
    "INSERT INTO secrets_audit_log (id, action, resource_name, timestamp, result, actor_id, "
    "actor_ip, actor_user_agent, details, error_message, error_code, duration_ms, prev_hash, "
    "chain_hash) SELECT id + 1, action, resource_name, timestamp, result, ?, actor_ip, "
    "actor_user_agent, details, error_message, error_code, duration_ms, {prev}, ? "
    "FROM secrets_audit_log WHERE id = ?"
)


async def test_a_forged_row_with_made_up_hashes_is_reported(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    await write_events(manager)
    sql = _FORGE.replace("{prev}", "?")
    await raw(
        store_settings,
        sql,
        "mallory",
        secrets.token_bytes(32),
        secrets.token_bytes(32),
        EVENTS,
    )
    assert await stored_ids(store_settings) == list(range(1, EVENTS + 2))

    report = await verify(app)
    assert report["valid"] is False
    assert report["broken_at"] == EVENTS + 1
    assert report["checked"] == EVENTS


async def test_a_forged_row_linked_to_the_real_last_hash_is_reported(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    """A forger who copies the real previous hash still cannot compute the HMAC."""
    await write_events(manager)
    await raw(
        store_settings,
        _FORGE.replace("{prev}", "chain_hash"),
        "mallory",
        secrets.token_bytes(32),
        EVENTS,
    )
    report = await verify(app)
    assert report["valid"] is False
    assert report["broken_at"] == EVENTS + 1
    assert report["checked"] == EVENTS


async def test_a_forged_row_with_the_chain_head_moved_is_reported(
    manager: SecretsManager, app: Strongroom, store_settings: Settings
) -> None:
    """Moving the chain head to cover the forged row does not make it verify either."""
    await write_events(manager)
    forged_hash = secrets.token_bytes(32)
    await raw(
        store_settings,
        _FORGE.replace("{prev}", "chain_hash"),
        "mallory",
        forged_hash,
        EVENTS,
    )
    await raw(
        store_settings,
        "UPDATE secrets_audit_chain SET last_seq = ?, last_hash = ? WHERE id = 1",
        EVENTS + 1,
        forged_hash,
    )
    assert_broken(await verify(app), EVENTS + 1, "does not match its hash")


# -- retention -------------------------------------------------------------------------------


async def test_prune_removes_old_events_and_the_rest_still_verifies(
    manager: SecretsManager, app: Strongroom, clock: ManualClock, store_settings: Settings
) -> None:
    audit = SecretsAudit(app)
    name = f"pruned-{secrets.token_hex(4)}"
    times = [clock()]
    await manager.create_secret(name, "the-value")
    for _day in range(5):  # two reads a day, days 0-4
        for _ in range(2):
            clock.advance(hours=1)
            times.append(clock())
            assert await manager.get_secret(name) == "the-value"
        clock.advance(hours=22)
    assert await audit.count_events() == len(times) == 11

    older_than = timedelta(days=2)
    cutoff = clock() - older_than
    expected_pruned = sum(1 for t in times if t < cutoff)
    assert 0 < expected_pruned < len(times)

    result = await audit.prune(older_than=older_than)

    assert result["pruned"] == expected_pruned
    assert result["anchor_id"] == expected_pruned  # ids are chain positions: a prefix went
    assert result["cutoff"] == cutoff
    remaining = len(times) - expected_pruned + 1  # ... plus the AUDIT_PRUNE event
    assert await stored_ids(store_settings) == list(range(expected_pruned + 1, len(times) + 2))

    prunes = await audit.get_audit_trail(action="AUDIT_PRUNE")
    assert len(prunes) == 1
    assert prunes[0]["result"] == "SUCCESS"
    assert prunes[0]["details"]["pruned"] == expected_pruned
    assert prunes[0]["details"]["anchor_seq"] == expected_pruned
    assert prunes[0]["id"] == len(times) + 1

    report = await verify(app)
    report.pop("checkpoints")
    assert report == {
        "valid": True,
        "checked": remaining,
        "first_id": expected_pruned + 1,
        "last_id": len(times) + 1,
        "broken_at": None,
        "reason": None,
        "processes": 1,
    }

    # Nothing older is left: a second prune removes nothing and the chain still verifies.
    again = await audit.prune(older_than=older_than)
    assert again["pruned"] == 0
    assert again["anchor_id"] == expected_pruned
    assert (await verify(app))["valid"] is True

    # New events chain on after the pruned log.
    assert await manager.get_secret(name) == "the-value"
    report = await verify(app)
    assert report["valid"] is True
    assert report["checked"] == remaining + 2


async def test_tampering_after_a_prune_is_detected(
    manager: SecretsManager, app: Strongroom, clock: ManualClock, store_settings: Settings
) -> None:
    audit = SecretsAudit(app)
    name = f"pruned-{secrets.token_hex(4)}"
    await manager.create_secret(name, "the-value")
    for _ in range(5):
        clock.advance(days=1)
        assert await manager.get_secret(name) == "the-value"
    result = await audit.prune(older_than=timedelta(days=2, hours=12))
    anchor = result["anchor_id"]
    assert result["pruned"] == anchor == 3  # the CREATE and the reads of days 1 and 2
    assert (await verify(app))["valid"] is True
    first = anchor + 1

    # A modified row after the anchor.
    await raw(store_settings, "UPDATE secrets_audit_log SET actor_id = 'x' WHERE id = ?", first + 1)
    report = await verify(app)
    assert report["valid"] is False
    assert report["broken_at"] == first + 1
    assert report["checked"] == 1

    # The first row after the anchor removed: the chain no longer starts at the anchor.
    await raw(store_settings, "DELETE FROM secrets_audit_log WHERE id = ?", first)
    report = await verify(app)
    assert report["valid"] is False
    assert report["broken_at"] == first
    assert report["checked"] == 0


async def test_hiding_events_by_moving_the_prune_anchor_is_detected(
    manager: SecretsManager, app: Strongroom, clock: ManualClock, store_settings: Settings
) -> None:
    """Moving the anchor forward (hiding more events than retention removed) breaks the
    chain: the anchor hash no longer matches the first remaining event's link."""
    audit = SecretsAudit(app)
    name = f"pruned-{secrets.token_hex(4)}"
    await manager.create_secret(name, "the-value")
    for _ in range(4):
        clock.advance(days=1)
        await manager.get_secret(name)
    result = await audit.prune(older_than=timedelta(days=2, hours=12))
    anchor = result["anchor_id"]
    assert (await verify(app))["valid"] is True

    await raw(store_settings, "DELETE FROM secrets_audit_log WHERE id = ?", anchor + 1)
    await raw(
        store_settings, "UPDATE secrets_audit_chain SET anchor_seq = ? WHERE id = 1", anchor + 1
    )
    report = await verify(app)
    assert report["valid"] is False
    assert report["broken_at"] == anchor + 2
    assert report["checked"] == 0


# -- several processes writing one PostgreSQL log ----------------------------------------------

_READER = """
import asyncio, sys
from strongroom import SecretsManager, Settings, Strongroom, acting_as

async def main(name, reads, workers, actor):
    with acting_as(actor):
        await run(name, reads, workers)

async def run(name, reads, workers):
    async with await Strongroom.open(Settings()) as app:
        manager = SecretsManager(app)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        todo = iter(range(reads))
        done = 0

        async def worker():
            nonlocal done
            for _ in todo:
                if await manager.get_secret(name) != "shared-value":
                    raise SystemExit("wrong value")
                done += 1

        await asyncio.gather(*(worker() for _ in range(workers)))
        print("done", done, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
"""


async def _read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    raw_line = await asyncio.wait_for(proc.stdout.readline(), timeout=TIMEOUT)
    return raw_line.decode().rstrip("\n")


@pytest.mark.slow
async def test_two_processes_auditing_concurrently_keep_valid_writer_chains(
    pg_schema: str, tmp_path: Path
) -> None:
    reads, workers = 200, 16
    key = new_master_key()  # keys the chain HMAC: every process must share it
    settings = make_settings("postgres", tmp_path, schema=pg_schema, master_key=key)
    async with await Strongroom.open(settings) as app:
        await SecretsManager(app).create_secret("shared", "shared-value")

    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    env.update(
        STRONGROOM_BACKEND="postgres",
        DATABASE_URL=PG_URL,
        STRONGROOM_PG_SCHEMA=pg_schema,
        STRONGROOM_MASTER_KEY=key,
        STRONGROOM_HOME=str(tmp_path),
        STRONGROOM_PG_POOL_MAX="8",
        LOG_LEVEL="ERROR",
    )
    procs: list[asyncio.subprocess.Process] = []
    try:
        for index in range(2):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _READER, "shared", str(reads), str(workers),
                f"process-{index}",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env,
            )  # fmt: skip
            procs.append(proc)
        for proc in procs:  # both connected before either starts reading
            assert await _read_line(proc) == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        for proc in procs:
            assert proc.stdout is not None
            output = await asyncio.wait_for(proc.stdout.read(), timeout=TIMEOUT)
            code = await asyncio.wait_for(proc.wait(), timeout=TIMEOUT)
            assert code == 0, output.decode()
            assert output.decode().split() == ["done", str(reads)]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async with await Strongroom.open(settings) as app:
        audit = SecretsAudit(app)
        assert await audit.count_events(action="READ") == 2 * reads
        for index in range(2):
            assert await audit.count_events(actor_id=f"process-{index}") == reads
        assert await audit.count_events() == 2 * reads + 1
        report = await audit.verify_integrity(batch=97)
        report.pop("checkpoints")
        # Each process wrote a chain of its own: one took over chain 1 (after the CREATE of
        # the process that made the secret), the other made chain 2; both were anchored as
        # they stopped.
        assert report == {
            "valid": True,
            "checked": 2 * reads + 1,
            "first_id": 1,
            "last_id": CHAIN_SPAN + reads,
            "broken_at": None,
            "reason": None,
            "processes": 1,
        }
        assert app.audit.store is not None
        heads = {h.chain: h.last_seq for h in await app.audit.store.chains()}
        assert heads[1] == reads + 1
        assert heads[2] == reads
        anchored = {
            a.chain: a.last
            async for page in app.audit.store.anchors(0, heads[0], 100)
            for a in page
        }
        assert anchored == {1: reads + 1, 2: reads}
