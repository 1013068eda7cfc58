"""The chain check in worker processes finds what a single pass finds, wherever it is.

One short chain per store (SQLite file, PostgreSQL) is written once; each test puts it back as
written, tampers with it behind strongroom's back (a row changed, removed, inserted or relinked,
at the first, a middle, the last event and on both sides of the boundary between two workers'
ranges), then checks it twice: in this process alone and in worker processes (the threshold
forced down to one event). Both must give the same report, naming the same first break.
"""

from __future__ import annotations

import itertools
import math
import secrets
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers_raw import raw_execute, raw_fetch
from helpers_settings import PG_URL, drop_schema, make_settings
from strongroom import SecretsAudit, Settings, Strongroom
from strongroom.core.anchors import CHAIN_SPAN
from strongroom.core.audit import GENESIS_HASH, AuditEvent, ChainKey
from strongroom.core.keyfile import create_key_file, read_key_file
from strongroom.core.keys import Purpose
from strongroom.db.audit_postgres import PostgresAuditStore
from strongroom.db.audit_store import ChainState, StoreLocation
from strongroom.services.audit.chain_workers import plan_ranges, worker_environment
from strongroom.services.custody.replace import replace_master

EVENTS = 40
BATCH = 5  # two workers: ranges 1..20 and 21..; a single pass reads the same pages
WORKERS = 2
_COLUMNS = (
    "id, action, resource_name, timestamp, result, actor_id, actor_ip, actor_user_agent, "
    "details, error_message, error_code, duration_ms, prev_hash, chain_hash"
)


@dataclass
class Chain:
    app: Strongroom
    settings: Settings
    rows: list[tuple[Any, ...]]
    head: tuple[Any, ...]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
async def chain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Chain]:
    """The store with EVENTS events in writer chain 1 and a checkpoint of its head."""
    schema = f"t_{secrets.token_hex(6)}" if request.param == "postgres" else None
    settings = make_settings(request.param, tmp_path_factory.mktemp("chain"), schema=schema)
    app = await Strongroom.open(settings)
    try:
        events = [
            AuditEvent.build(action="READ", resource_name=f"secret-{i % 7}", timestamp=app.clock(),
                             result="FAILURE" if i % 9 == 0 else "SUCCESS",
                             actor_id=f"actor-{i % 3}", details={"version": f"{i:x}"})
            for i in range(EVENTS)
        ]  # fmt: skip
        assert app.audit.store is not None
        await app.audit.store.append(events, app.audit.key)
        assert await SecretsAudit(app).write_checkpoint() is not None
        rows = await raw_fetch(settings, f"SELECT {_COLUMNS} FROM secrets_audit_log ORDER BY id")
        [head] = await raw_fetch(
            settings, "SELECT last_seq, last_hash FROM secrets_audit_chain WHERE id = 1"
        )
        assert [r[0] for r in rows] == list(range(1, EVENTS + 1))
        yield Chain(app, settings, rows, head)
    finally:
        await app.close()
        if schema is not None:
            await drop_schema(schema)


def _insert(settings: Settings) -> str:
    """An INSERT of one whole row (details, the 9th column, is jsonb on PostgreSQL)."""
    marks = ["?"] * 14
    if settings.backend.value == "postgres":
        marks[8] = "?::jsonb"
    return f"INSERT INTO secrets_audit_log ({_COLUMNS}) VALUES ({', '.join(marks)})"


async def _restore(chain: Chain) -> None:
    """The chain as written (every row and the head), before each test tampers with it."""
    await raw_execute(
        chain.settings,
        "DELETE FROM secrets_audit_log",
        *[(_insert(chain.settings), row) for row in chain.rows],
        ("UPDATE secrets_audit_chain SET last_seq = ?, last_hash = ? WHERE id = 1", chain.head),
    )


async def _both(chain: Chain) -> dict[str, Any]:
    """The single pass's report, checked to equal the workers' (but for ``processes``)."""
    audit = SecretsAudit(chain.app)
    single = await audit.verify_integrity(batch=BATCH, parallel_from=2**62)
    parallel = await audit.verify_integrity(batch=BATCH, parallel_from=1, workers=WORKERS)
    assert (single.pop("processes"), parallel.pop("processes")) == (1, WORKERS)
    assert parallel == single
    return single


def _row(chain: Chain, event_id: int) -> tuple[Any, ...]:
    return chain.rows[event_id - 1]


@pytest.fixture
async def restored(chain: Chain) -> Chain:
    await _restore(chain)
    return chain


async def test_an_untouched_chain_verifies_in_workers(restored: Chain) -> None:
    report = await _both(restored)
    assert report["valid"] is True
    assert (report["checked"], report["first_id"], report["last_id"]) == (EVENTS, 1, EVENTS)


@pytest.mark.parametrize("event_id", [1, 11, 20, 21, EVENTS], ids=lambda i: f"event{i}")
async def test_a_modified_row_is_found_in_any_range(restored: Chain, event_id: int) -> None:
    """First, middle and last event; the last of the first range and the first of the next."""
    await raw_execute(
        restored.settings,
        ("UPDATE secrets_audit_log SET actor_id = ? WHERE id = ?", ("mallory", event_id)),
    )
    report = await _both(restored)
    assert (report["valid"], report["broken_at"]) == (False, event_id)
    assert "does not match its hash" in report["reason"]
    assert report["checked"] == event_id - 1


@pytest.mark.parametrize("event_id", [11, 20, 21], ids=lambda i: f"event{i}")
async def test_a_deleted_row_is_found_in_any_range(restored: Chain, event_id: int) -> None:
    await raw_execute(
        restored.settings, ("DELETE FROM secrets_audit_log WHERE id = ?", (event_id,))
    )
    report = await _both(restored)
    assert (report["valid"], report["broken_at"]) == (False, event_id)
    assert f"events {event_id}..{event_id} are missing" in report["reason"]


async def test_a_deleted_tail_is_found(restored: Chain) -> None:
    await raw_execute(restored.settings, ("DELETE FROM secrets_audit_log WHERE id > ?", (37,)))
    report = await _both(restored)
    assert (report["valid"], report["broken_at"]) == (False, 38)


async def test_a_relinked_first_row_of_a_range_is_found(restored: Chain) -> None:
    """The boundary link itself: event 21's stored link to event 20 replaced by event 19's
    hash (its HMAC, over that link, would then fail too: the link is reported first)."""
    await raw_execute(
        restored.settings,
        ("UPDATE secrets_audit_log SET prev_hash = ? WHERE id = 21", (_row(restored, 19)[13],)),
    )
    report = await _both(restored)
    assert (report["valid"], report["broken_at"]) == (False, 21)
    assert "link to the previous event is broken" in report["reason"]


async def test_a_row_inserted_at_a_range_boundary_is_found(restored: Chain) -> None:
    """Events after 20 moved up by one, a forged event 21 linked to event 20, the head moved
    past it: the forged event's HMAC fails (nobody without the key can make it)."""
    forged = (21, *_row(restored, 20)[1:5], "mallory", *_row(restored, 20)[6:12],
              _row(restored, 20)[13], secrets.token_bytes(32))  # fmt: skip
    await raw_execute(
        restored.settings,
        "UPDATE secrets_audit_log SET id = -id WHERE id > 20",
        "UPDATE secrets_audit_log SET id = 1 - id WHERE id < 0",
        (_insert(restored.settings), forged),
        ("UPDATE secrets_audit_chain SET last_seq = ? WHERE id = 1", (EVENTS + 1,)),
    )
    report = await _both(restored)
    assert (report["valid"], report["broken_at"]) == (False, 21)
    assert "does not match its hash" in report["reason"]


async def test_a_row_added_beyond_the_head_is_found(restored: Chain) -> None:
    last = _row(restored, EVENTS)
    forged = (EVENTS + 1, *last[1:12], last[13], secrets.token_bytes(32))
    await raw_execute(
        restored.settings,
        (_insert(restored.settings), forged),
    )
    report = await _both(restored)
    assert (report["valid"], report["broken_at"]) == (False, EVENTS + 1)
    assert "beyond the chain head" in report["reason"]


async def test_without_a_worker_the_same_check_runs_in_one_process(
    restored: Chain, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A worker that cannot start (no interpreter there) leaves the check to this process."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    audit = SecretsAudit(restored.app)
    report = await audit.verify_integrity(batch=BATCH, parallel_from=1, workers=WORKERS)
    assert (report["valid"], report["checked"], report["processes"]) == (True, EVENTS, 1)


async def test_a_memory_log_is_checked_in_one_process(tmp_path: Path) -> None:
    """No other process can read a memory database: the threshold does not apply."""
    app = await Strongroom.open(make_settings("memory", tmp_path))
    try:
        assert app.audit.store is not None
        event = AuditEvent.build(action="LIST", timestamp=app.clock(), result="SUCCESS",
                                 actor_id="ops")  # fmt: skip
        await app.audit.store.append([event, event], app.audit.key)
        report = await SecretsAudit(app).verify_integrity(parallel_from=1, workers=WORKERS)
        assert (report["valid"], report["checked"], report["processes"]) == (True, 2, 1)
    finally:
        await app.close()


async def test_a_range_after_a_key_switch_is_held_to_the_new_key(tmp_path: Path) -> None:
    """The master key replaced mid-chain: the chain moves to a new key epoch. A range starting
    after the switch finds which key its first event was linked under; the join refuses the
    old epoch's key there (whoever kept the old master key cannot rewrite it), as a single
    pass does."""
    path, retired = tmp_path / "master.key", tmp_path / "retired.key"
    create_key_file(path)
    shutil.copy(path, retired)
    settings = Settings(
        STRONGROOM_BACKEND="sqlite", STRONGROOM_HOME=tmp_path, STRONGROOM_MASTER_KEY_FILE=path
    )  # type: ignore[call-arg]
    async with await Strongroom.open(settings) as app:
        assert app.audit.store is not None
        for _ in range(2):  # 20 events, the switch, 20 more
            event = AuditEvent.build(
                action="READ", timestamp=app.clock(), result="SUCCESS", actor_id="ops"
            )
            await app.audit.store.append([event] * 20, app.audit.key)
            if app.audit.key.epoch == 0:
                await replace_master(app)
        [(switch,)] = await raw_fetch(
            settings, "SELECT id FROM secrets_audit_log WHERE action = 'CHAIN_KEY'"
        )
        [(last,)] = await raw_fetch(settings, "SELECT max(id) FROM secrets_audit_log")
        first_of_second = math.ceil(last / WORKERS / BATCH) * BATCH + 1  # see plan_ranges
        assert switch < first_of_second < last
        chain = Chain(app, settings, [], ())
        report = await _both(chain)
        assert (report["valid"], report["checked"]) == (True, last)

        scan = app.audit.store.scan_links(first_of_second - 1, first_of_second, 10)
        (link,) = [found async for batch in scan for found in batch]
        old = ChainKey(read_key_file(retired).derive(Purpose.AUDIT_CHAIN))
        forged = old.mac(link.prev_hash, link.body)
        await raw_execute(
            settings,
            ("UPDATE secrets_audit_log SET chain_hash = ? WHERE id = ?", (forged, link.id)),
        )
        report = await _both(chain)
        assert (report["valid"], report["broken_at"]) == (False, first_of_second)
        assert "does not match its hash" in report["reason"]


async def test_several_writer_chains_are_shared_out_and_joined(
    pg_schema: str, tmp_path: Path
) -> None:
    """PostgreSQL, three writer chains of different lengths over three workers: ranges of one
    chain go to several workers and one worker gets ranges of several chains; a change in the
    middle of the second chain is found there, as a single pass finds it."""
    settings = make_settings("postgres", tmp_path, schema=pg_schema)
    app = await Strongroom.open(settings)
    others = [PostgresAuditStore(PG_URL, schema=pg_schema) for _ in range(2)]
    try:
        assert app.audit.store is not None
        writers = [app.audit.store, *others]
        for store in others:
            await store.open()
        for count, store in zip((23, 17, 9), writers, strict=True):
            event = AuditEvent.build(
                action="READ", timestamp=app.clock(), result="SUCCESS", actor_id="ops"
            )
            await store.append([event] * count, app.audit.key)
        assert sorted(h.chain for h in await app.audit.store.chains()) == [0, 1, 2, 3]
        audit = SecretsAudit(app)
        single = await audit.verify_integrity(batch=BATCH, parallel_from=2**62)
        parallel = await audit.verify_integrity(batch=BATCH, parallel_from=1, workers=3)
        assert (single.pop("processes"), parallel.pop("processes")) == (1, 3)
        assert parallel == single
        assert (single["valid"], single["checked"]) == (True, 23 + 17 + 9)

        middle = CHAIN_SPAN + 9
        await raw_execute(
            settings, ("UPDATE secrets_audit_log SET actor_id = 'x' WHERE id = ?", (middle,))
        )
        single = await audit.verify_integrity(batch=BATCH, parallel_from=2**62)
        parallel = await audit.verify_integrity(batch=BATCH, parallel_from=1, workers=3)
        assert parallel.pop("processes") == 3
        single.pop("processes")
        assert parallel == single
        assert (single["valid"], single["broken_at"]) == (False, middle)
    finally:
        for store in others:
            await store.close()
        await app.close()


def test_ranges_cover_every_chain_once_in_whole_batches() -> None:
    """Workers get about as many events each (137 over three: 50, 56, 31), in whole batches
    of a chain from its start, every chain covered without a gap or an overlap."""
    location = StoreLocation("postgres", "postgresql://nowhere", "s")
    heads = [
        ChainState(last_seq=103, last_hash=b"h" * 32, anchor_seq=7, anchor_hash=b"a" * 32),
        ChainState(last_seq=0, last_hash=GENESIS_HASH, anchor_seq=0, anchor_hash=GENESIS_HASH,
                   chain=2),
        ChainState(last_seq=41, last_hash=b"h" * 32, anchor_seq=0, anchor_hash=GENESIS_HASH,
                   chain=3),
    ]  # fmt: skip
    shares = plan_ranges(location, ChainKey(b"k" * 32), heads, {}, 10, 3)
    loads = [sum(min(j.upper, j.head.last_seq + (j.head.chain - 1) * CHAIN_SPAN) - j.after
                 for j in share) for share in shares]  # fmt: skip
    assert loads == [50, 56, 31]
    for head in heads:
        base = (head.chain - 1) * CHAIN_SPAN
        ranges = [(j.after, j.upper) for share in shares for j in share if j.head == head]
        assert ranges[0][0] == base + head.anchor_seq
        assert ranges[-1][1] == base + CHAIN_SPAN  # the last reaches past the head
        for (_, upper), (after, _) in itertools.pairwise(ranges):
            assert upper == after  # no gap, no overlap
            assert (after - base - head.anchor_seq) % 10 == 0


def test_a_worker_inherits_none_of_strongroom_s_configuration() -> None:
    """The key and the database address reach a worker over its pipe alone: a master key or
    a database URL in the parent's environment is not passed on; what Python and the
    PostgreSQL driver read is."""
    parent = {
        "STRONGROOM_MASTER_KEY": "a2V5", "DATABASE_URL": "postgresql://u:pw@db/x",
        "AZURE_CLIENT_SECRET": "s", "PATH": "/usr/bin", "PGPASSFILE": "/p", "HOME": "/root",
        "PYTHONPATH": "/src",
    }  # fmt: skip
    assert worker_environment(parent) == {
        "PATH": "/usr/bin", "PGPASSFILE": "/p", "HOME": "/root", "PYTHONPATH": "/src",
    }  # fmt: skip
