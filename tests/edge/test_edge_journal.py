"""An edge's audit journal shipped to the centre: in order, exactly once across cuts and
restarts, its continuity checked at the centre, covered by ``audit verify``, summaries and
threat detection; a tampered journal refused at the centre and at the edge's start."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from helpers_edge import VALUE, Central, edge_read, open_edge, put, until
from helpers_serve import serve
from strongroom import SecretsAudit, SecretsManager
from strongroom.core.errors import TamperedError
from strongroom.edge import EdgeNode

SITE = "site-dj"


async def journal_token(central: Central, prefix: str, site: str = SITE) -> str:
    """A site credential that may read its secrets and ship its journal."""
    assert central.served is not None
    return await central.served.token_for(site, f"read,list:{prefix}-*", "edge-sync:*")


async def central_events(central: Central, site: str) -> list[dict[str, Any]]:
    """The events the centre holds from ``site``, oldest first by their edge position."""
    trail = await SecretsAudit(central.app).get_audit_trail(limit=10_000)
    found = [e for e in trail if e["details"].get("site") == site]
    return sorted(found, key=lambda e: e["details"]["edge_seq"])


async def local_seq(node: EdgeNode) -> int:
    assert node.wiring.audit.store is not None
    return (await node.wiring.audit.store.chain_state()).last_seq


async def shipped_all(central: Central, node: EdgeNode, site: str) -> bool:
    await node.journal.refresh()
    events = await central_events(central, site)
    return node.journal.unshipped == 0 and len(events) == await local_seq(node)


async def test_reads_while_cut_off_are_shipped_once_in_order_and_verified(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dj-radio", VALUE, create=True)
    node = await open_edge(central, tmp_path / "edge", await journal_token(central, "dj"), ["dj-*"])
    try:
        node.start()
        await asyncio.wait_for(node.sync.online.wait(), 30)
        async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge:
            consumer = await edge.token_for("console-7", "read:dj-*")
            assert (await edge_read(edge, consumer, "dj-radio")).status_code == 200
            await until(lambda: shipped_all(central, node, SITE), "the first read shipped")
            await central.stop()  # cut: reads go on, recorded at the edge only
            await until(lambda: not node.sync.online.is_set(), "the edge to notice the cut")
            for _ in range(5):
                assert (await edge_read(edge, consumer, "dj-radio")).status_code == 200
            assert (await edge_read(edge, consumer, "dj-nothing")).status_code == 404
            await node.journal.refresh()
            assert node.journal.unshipped >= 6
            async with edge.client() as probe:
                ready = (await probe.get("/readyz")).json()
            assert ready["edge"]["journal_unshipped"] == node.journal.unshipped
            async with edge.admin() as admin:
                metrics = (await admin.get("/metrics")).text
            assert f"strongroom_edge_journal_unshipped {float(node.journal.unshipped)}" in metrics
            await central.start()  # healed: the journal ships
            await until(lambda: shipped_all(central, node, SITE), "the journal shipped")
        events = await central_events(central, SITE)
        seqs = [e["details"]["edge_seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1))  # in order, none twice, none lost
        reads = [e for e in events if e["action"] == "READ" and e["actor_id"] == "console-7"]
        assert len(reads) == 7
        assert sum(e["result"] == "FAILURE" for e in reads) == 1
        assert all(VALUE not in str(e) for e in events)
        report = await SecretsAudit(central.app).verify_integrity()
        assert report["valid"] is True, report
        assert report["edge_chains"][SITE]["valid"] is True
        assert report["edge_chains"][SITE]["last_seq"] == len(seqs)
        assert node.status()["journal_unshipped"] == 0
        assert node.status()["journal_error"] is None
    finally:
        await node.close()


async def test_a_failure_burst_at_a_site_is_detected_at_the_centre_after_sync(
    central: Central, tmp_path: Path
) -> None:
    site = "site-dk"
    await put(central, "dk-radio", VALUE, create=True)
    token = await journal_token(central, "dk", site)
    node = await open_edge(central, tmp_path / "edge", token, ["dk-*"])
    try:
        async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge:
            intruder = await edge.token_for("intruder-dk", "read:dk-radio")
            for _ in range(8):  # refused: outside its policy, at the edge, while not shipping
                assert (await edge_read(edge, intruder, "dk-other")).status_code == 403
            node.start()
            await until(lambda: shipped_all(central, node, site), "the journal shipped")
        found = await SecretsAudit(central.app).detect_suspicious_activity(
            failure_threshold=5, time_window_minutes=30
        )
        assert any(t.get("actor_id") == "intruder-dk" for t in found["threats"]), found
        summary = await SecretsAudit(central.app).get_audit_summary()
        assert summary["by_actor"].get("intruder-dk", 0) >= 8
    finally:
        await node.close()


async def test_a_killed_edge_restarts_and_ships_the_rest_exactly_once(
    central: Central, tmp_path: Path
) -> None:
    site = "site-dm"
    await put(central, "dm-radio", VALUE, create=True)
    token = await journal_token(central, "dm", site)
    home = tmp_path / "edge"
    node = await open_edge(central, home, token, ["dm-*"])
    node.start()
    await until(lambda: shipped_all(central, node, site), "the first round")
    await node.journal.stop()  # shipping dies mid-life (as a killed process's would) ...
    async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge:
        consumer = await edge.token_for("gateway-dm", "read:dm-*")
        for _ in range(3):
            assert (await edge_read(edge, consumer, "dm-radio")).status_code == 200
    await node.close()
    # ... and a batch whose answer was lost is sent again by the next process: stored once.
    node = await open_edge(central, home, token, ["dm-*"])
    try:
        assert node.journal.unshipped >= 3  # counted from the saved head, before any contact
        node.start()
        await until(lambda: shipped_all(central, node, site), "the rest shipped")
        await node.journal.ship()  # a repeated round stores nothing
        seqs = [e["details"]["edge_seq"] for e in await central_events(central, site)]
        assert seqs == list(range(1, await local_seq(node) + 1))
    finally:
        await node.close()


async def test_a_forged_or_gapped_batch_is_refused_at_the_centre_and_alarmed(
    central: Central, tmp_path: Path
) -> None:
    site = "site-dn"
    await put(central, "dn-radio", VALUE, create=True)
    token = await journal_token(central, "dn", site)
    node = await open_edge(central, tmp_path / "edge", token, ["dn-*"])
    try:
        assert await SecretsManager(node.wiring).get_secret("dn-radio") == VALUE  # one event
        node.start()
        await until(lambda: shipped_all(central, node, site), "the first round")
        assert central.served is not None
        before = await central_events(central, site)
        head = before[-1]["details"]
        event = {
            "seq": head["edge_seq"] + 1, "prev_hash": head["edge_hash"], "chain_hash": "ab" * 32,
            "action": "READ", "resource_name": "dn-radio", "timestamp": "2026-12-04T10:00:00+00:00",
            "result": "SUCCESS", "actor_id": "forger",
        }  # fmt: skip
        async with central.served.client(token) as client:
            forged = await client.post(
                "/v1/edge/journal",
                json={"after_seq": head["edge_seq"], "after_hash": "cd" * 32, "events": [event]},
            )
            gap = await client.post(
                "/v1/edge/journal",
                json={
                    "after_seq": head["edge_seq"] + 5, "after_hash": head["edge_hash"],
                    "events": [{**event, "seq": head["edge_seq"] + 6}],
                },
            )  # fmt: skip
            inside = await client.post(
                "/v1/edge/journal",
                json={
                    "after_seq": head["edge_seq"], "after_hash": head["edge_hash"],
                    "events": [event, {**event, "seq": head["edge_seq"] + 2}],
                },
            )  # fmt: skip
        for answer in (forged, gap, inside):
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["code"] == "edge_journal_broken"
        assert "missing" in gap.json()["error"]["message"]
        assert await central_events(central, site) == before  # nothing stored
        alarms = await SecretsAudit(central.app).get_audit_trail(action="INTEGRITY", limit=100)
        assert any(site in (a["error_message"] or "") for a in alarms)
        # A credential without the grant cannot ship at all.
        plain = await central.served.token_for("site-dn-plain", "read,list:dn-*")
        async with central.served.client(plain) as client:
            assert (await client.get("/v1/edge/journal")).status_code == 403
    finally:
        await node.close()


async def test_an_edge_whose_journal_fails_to_verify_refuses_to_start(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dp-radio", VALUE, create=True)
    token = await journal_token(central, "dp", "site-dp")
    home = tmp_path / "edge"
    node = await open_edge(central, home, token, ["dp-*"])
    async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge:
        consumer = await edge.token_for("console-dp", "read:dp-*")
        assert (await edge_read(edge, consumer, "dp-radio")).status_code == 200
    await node.close()
    with sqlite3.connect(home / "strongroom.db") as db:
        db.execute("UPDATE secrets_audit_log SET actor_id = 'someone-else' WHERE action = 'READ'")
    with pytest.raises(TamperedError, match="journal fails to verify"):
        await open_edge(central, home, token, ["dp-*"])
