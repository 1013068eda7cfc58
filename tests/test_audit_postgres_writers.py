"""Several writers on one PostgreSQL audit log: a chain each, anchored in one global chain.

Two store instances with connections of their own stand in for two processes. Each claims a
chain of its own (no lock shared on the hot path); the log verifies end to end, and every way
of tampering with the new structure is caught: an event dropped from a writer chain, events
swapped between writers, an anchor forged, changed or removed, a whole writer chain removed, an
anchored tail cut off. A writer that crashed leaves a tail no anchor covers, still checked by
its own links. The change feed follows the anchors: every writer's changes in commit order.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from helpers_settings import PG_URL
from strongroom.core.anchors import CHAIN_SPAN
from strongroom.core.audit import AuditAction, AuditEvent, AuditResult, ChainKey
from strongroom.core.edge_journal import JournalHead
from strongroom.db.audit_postgres import PostgresAuditStore
from strongroom.services.audit.verify import verify_log
from strongroom.services.events.feed import ChangeFeed

KEY = ChainKey(b"k" * 32)
BATCHES, BATCH = 20, 8


def _event(writer: str, action: AuditAction = AuditAction.READ) -> AuditEvent:
    return AuditEvent(
        action=action,
        resource_name="fleet-db",
        timestamp=datetime.now(UTC),
        result=AuditResult.SUCCESS,
        actor_id=writer,
    )


async def _verify(store: PostgresAuditStore) -> dict[str, Any]:
    """The verdict, the same whatever the page size."""
    report = await verify_log(store, KEY, None, 1000)
    small = await verify_log(store, KEY, None, 3)
    assert {k: small[k] for k in ("valid", "broken_at", "reason")} == {
        k: report[k] for k in ("valid", "broken_at", "reason")
    }
    return report


async def _raw(schema: str, sql: str, *params: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        return list(await conn.fetch(sql, *params))
    finally:
        await conn.close()


@pytest.fixture
async def two(pg_schema: str) -> AsyncIterator[tuple[PostgresAuditStore, PostgresAuditStore]]:
    """Two writers that have written 10 events each (chain 1 then chain 2), anchored as they
    were written (each batch holds a change) and again when stopped."""
    stores = [PostgresAuditStore(PG_URL, schema=pg_schema, anchor_interval=3600) for _ in range(2)]
    for store in stores:
        await store.open()
    for index, store in enumerate(stores):
        for _ in range(2):
            await store.append(
                [_event(f"w{index}", AuditAction.UPDATE), *[_event(f"w{index}")] * 4], KEY
            )
    try:
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.close()


async def test_interleaved_writers_each_append_to_a_gapless_chain_of_their_own(
    pg_schema: str,
) -> None:
    stores = [PostgresAuditStore(PG_URL, schema=pg_schema) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        ids: list[int] = []

        async def writer(store: PostgresAuditStore, name: str) -> None:
            for _ in range(BATCHES):
                ids.extend(await store.append([_event(name)] * BATCH, KEY))

        await asyncio.gather(*(writer(store, f"w{i}") for i, store in enumerate(stores)))
        assert {store.chain for store in stores} == {1, 2}
        per_writer = BATCHES * BATCH
        expected = [*range(1, per_writer + 1), *range(CHAIN_SPAN + 1, CHAIN_SPAN + per_writer + 1)]
        assert sorted(ids) == expected  # no gap, no id twice, each chain its own range
        report = await _verify(stores[0])
        assert report["valid"] is True, report
        assert report["checked"] == 2 * per_writer
    finally:
        for store in stores:
            await store.close()
    # Stopped cleanly: both chains anchored up to their heads.
    anchors = await _raw(pg_schema, "SELECT chain_id, max(last_seq) FROM secrets_audit_anchors "
                         "GROUP BY chain_id ORDER BY chain_id")  # fmt: skip
    assert [tuple(r) for r in anchors] == [(1, per_writer), (2, per_writer)]


async def test_a_stopped_writers_chain_is_taken_over_by_the_next(pg_schema: str) -> None:
    first = PostgresAuditStore(PG_URL, schema=pg_schema)
    await first.open()
    assert await first.append([_event("a")] * 3, KEY) == [1, 2, 3]
    await first.close()
    second = PostgresAuditStore(PG_URL, schema=pg_schema)
    await second.open()
    try:
        assert await second.append([_event("b")] * 2, KEY) == [4, 5]
        assert second.chain == 1
        assert (await _verify(second))["valid"] is True
    finally:
        await second.close()


async def test_a_crashed_writers_unanchored_tail_is_checked_by_its_own_links(
    pg_schema: str,
) -> None:
    crashed = PostgresAuditStore(PG_URL, schema=pg_schema, anchor_interval=3600)
    await crashed.open()
    await crashed.append([_event("a", AuditAction.CREATE)], KEY)  # anchored with the batch
    await crashed.append([_event("a")] * 5, KEY)  # 2..6: never anchored
    assert crashed._writer is not None
    crashed._writer.abort()  # the process dies: no last anchor
    crashed._writer = None
    await crashed.close()
    survivor = PostgresAuditStore(PG_URL, schema=pg_schema)
    await survivor.open()
    try:
        rows = await _raw(pg_schema, "SELECT max(last_seq) FROM secrets_audit_anchors")
        assert rows[0][0] == 1  # only the first event is anchored
        report = await _verify(survivor)
        assert report["valid"] is True
        assert report["checked"] == 6

        await _raw(pg_schema, "UPDATE secrets_audit_log SET actor_id = 'x' WHERE id = 4")
        report = await _verify(survivor)
        assert (report["valid"], report["broken_at"]) == (False, 4)
        assert "does not match its hash" in report["reason"]
    finally:
        await survivor.close()


async def test_an_event_dropped_from_a_writer_chain_is_reported(two: Any, pg_schema: str) -> None:
    store, _ = two
    assert (await _verify(store))["valid"] is True
    dropped = CHAIN_SPAN + 4
    await _raw(pg_schema, "DELETE FROM secrets_audit_log WHERE id = $1", dropped)
    report = await _verify(store)
    assert (report["valid"], report["broken_at"]) == (False, dropped), report
    assert "missing" in report["reason"]
    assert report["checked"] == 10 + 3  # chain 1 whole, chain 2 up to the gap


async def test_events_swapped_between_writers_are_reported(two: Any, pg_schema: str) -> None:
    """Two writers' events exchange places: each still carries the link and hash of its own
    chain and position, so neither verifies where it now stands."""
    store, _ = two
    a, b = 3, CHAIN_SPAN + 3
    for old, new in ((a, -1), (b, a), (-1, b)):
        await _raw(pg_schema, "UPDATE secrets_audit_log SET id = $1 WHERE id = $2", new, old)
    report = await _verify(store)
    assert (report["valid"], report["broken_at"]) == (False, a), report
    assert "does not match its hash" in report["reason"] or "link" in report["reason"]


async def test_a_changed_anchor_is_reported(two: Any, pg_schema: str) -> None:
    store, _ = two
    await _raw(
        pg_schema,
        "UPDATE secrets_audit_anchors SET chain_hash = $1 WHERE seq = 3",
        secrets.token_bytes(32),
    )
    report = await _verify(store)
    assert report["valid"] is False, report
    assert "anchor 3" in report["reason"]


async def test_a_forged_anchor_with_the_head_moved_is_reported(two: Any, pg_schema: str) -> None:
    """An anchor made up to cover a cut (the forger has no key): its HMAC fails."""
    store, _ = two
    [head] = await _raw(
        pg_schema, "SELECT last_seq, last_hash FROM secrets_audit_chain WHERE id = 0"
    )
    forged = secrets.token_bytes(32)
    await _raw(
        pg_schema,
        "INSERT INTO secrets_audit_anchors (seq, chain_id, first_seq, last_seq, chain_hash, "
        "changes, anchored_at, prev_hash, anchor_hash) VALUES ($1, 1, 11, 11, $2, false, now(), "
        "$3, $4)",
        head["last_seq"] + 1, secrets.token_bytes(32), head["last_hash"], forged,
    )  # fmt: skip
    await _raw(
        pg_schema,
        "UPDATE secrets_audit_chain SET last_seq = $1, last_hash = $2 WHERE id = 0",
        head["last_seq"] + 1,
        forged,
    )
    report = await _verify(store)
    assert report["valid"] is False, report
    assert f"anchor {head['last_seq'] + 1}" in report["reason"]


async def test_a_removed_anchor_is_reported(two: Any, pg_schema: str) -> None:
    store, _ = two
    await _raw(pg_schema, "DELETE FROM secrets_audit_anchors WHERE seq = 2")
    report = await _verify(store)
    assert report["valid"] is False, report
    assert "anchors 2..2 are missing" in report["reason"]


async def test_a_whole_writer_chain_removed_is_reported(two: Any, pg_schema: str) -> None:
    """Events and head row of chain 2 gone: the anchors that registered and covered it say so."""
    store, _ = two
    await _raw(pg_schema, "DELETE FROM secrets_audit_log WHERE id > $1", CHAIN_SPAN)
    await _raw(pg_schema, "DELETE FROM secrets_audit_chain WHERE id = 2")
    report = await _verify(store)
    assert report["valid"] is False, report
    assert "writer chain 2, which is gone" in report["reason"]
    assert report["checked"] == 10


async def test_an_anchored_tail_cut_off_with_its_head_is_reported(two: Any, pg_schema: str) -> None:
    store, _ = two
    [kept] = await _raw(
        pg_schema, "SELECT chain_hash FROM secrets_audit_log WHERE id = $1", CHAIN_SPAN + 6
    )
    await _raw(pg_schema, "DELETE FROM secrets_audit_log WHERE id > $1", CHAIN_SPAN + 6)
    await _raw(
        pg_schema,
        "UPDATE secrets_audit_chain SET last_seq = 6, last_hash = $1 WHERE id = 2",
        kept["chain_hash"],
    )
    report = await _verify(store)
    assert (report["valid"], report["broken_at"]) == (False, CHAIN_SPAN + 7), report
    assert "cut off" in report["reason"]


def _shipped(seq: int) -> AuditEvent:
    """An event an edge shipped: its place in the site's own chain is in its details."""
    return AuditEvent(
        action=AuditAction.READ,
        resource_name="fleet-db",
        timestamp=datetime.now(UTC),
        result=AuditResult.SUCCESS,
        actor_id="edge:north",
        details={
            "site": "north",
            "edge_seq": seq,
            "edge_prev": bytes([seq - 1]).hex() * 32,
            "edge_hash": bytes([seq]).hex() * 32,
        },
    )


async def test_a_sites_shipments_taken_by_two_writers_verify_in_the_sites_order(
    pg_schema: str,
) -> None:
    """Each shipment lands on the chain of the process that took it; verify follows the site's
    chain in its own order, and still sees events of it removed."""
    stores = [PostgresAuditStore(PG_URL, schema=pg_schema) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        head = JournalHead()
        for seq in range(1, 7):  # shipments of two events, alternating between the writers
            if seq % 2:
                new = JournalHead(seq + 1, bytes([seq + 1]) * 32)
                await stores[(seq // 2) % 2].append_shipped(
                    "north", head, new, [_shipped(seq), _shipped(seq + 1)], KEY
                )
                head = new
        assert {store.chain for store in stores} == {1, 2}
        report = await _verify(stores[0])
        assert report["valid"] is True, report
        assert report["edge_chains"]["north"]["events"] == 6

        # Writer chain 2's unanchored events removed and its head set back: the writer chains
        # still verify, the site's own chain does not.
        await _raw(pg_schema, "DELETE FROM secrets_audit_log WHERE id > $1", CHAIN_SPAN)
        await _raw(pg_schema, "UPDATE secrets_audit_chain SET last_seq = 0, last_hash = $1 "
                   "WHERE id = 2", b"\x00" * 32)  # fmt: skip
        report = await verify_log(stores[0], KEY, None, 1000)
        assert report["valid"] is False
        assert report["checked"] == 4
        assert "edge journal of site north" in report["reason"], report
    finally:
        for store in stores:
            await store.close()


async def _take(
    feed: ChangeFeed, after: int | None, count: int, following: asyncio.Event | None = None
) -> list[int]:
    """The ids of the next ``count`` changes the feed gives after ``after``; ``following`` is
    set at the first keep-alive (the listener is then following the feed)."""
    follow = feed.follow(after, heartbeat=0.05)
    ids: list[int] = []
    try:
        async with asyncio.timeout(20):
            async for item in follow:
                if item is None and following is not None:
                    following.set()
                if item is not None:
                    ids.append(item.id)
                if len(ids) == count:
                    break
    finally:
        await follow.aclose()
    return ids


async def test_the_change_feed_follows_every_writers_changes_in_commit_order(
    pg_schema: str,
) -> None:
    """Changes are anchored as they are committed: the feed gives them in that order whichever
    writer chain holds them, resumes after any of them, and skips the reads in between."""
    first, second = (
        PostgresAuditStore(PG_URL, schema=pg_schema, anchor_interval=3600) for _ in range(2)
    )
    for store in (first, second):
        await store.open()
    try:
        await first.append([_event("a", AuditAction.UPDATE)], KEY)  # id 1
        await second.append([_event("b", AuditAction.UPDATE)], KEY)  # chain 2: id SPAN + 1
        await first.append([_event("a")] * 3, KEY)  # reads, 2..4: no change, not anchored
        await first.append([_event("a", AuditAction.DELETE)], KEY)  # id 5
        feed = ChangeFeed(second, poll_seconds=0.01)
        assert await _take(feed, 0, 3) == [1, CHAIN_SPAN + 1, 5]
        assert await _take(feed, CHAIN_SPAN + 1, 1) == [5]

        following = asyncio.Event()

        async def later() -> None:
            await following.wait()  # the changes come once the listener follows
            await second.append([_event("b", AuditAction.ROTATE)], KEY)
            await first.append([_event("a", AuditAction.UPDATE)], KEY)

        writing = asyncio.create_task(later())
        assert await _take(feed, None, 2, following) == [CHAIN_SPAN + 2, 6]  # live, in order
        await writing
    finally:
        for store in (first, second):
            await store.close()
