"""``strongroom edge`` against a real central ``strongroom serve`` over HTTPS: the replica, the
change feed, writes refused, the offline bound, reconnection, and refusals at start.

The cut is made by stopping the central HTTP server (its stores stay open, so changes can be
made while the edge cannot see them); the offline bound runs on a clock the test moves.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from helpers_edge import (
    MAX_OFFLINE,
    VALUE,
    Central,
    FakeMonotonic,
    edge_read,
    open_edge,
    put,
    site_token,
    until,
)
from helpers_remote import remote_settings
from helpers_serve import Served, serve, server_settings
from strongroom import (
    RevocationRequest,
    SecretRevokedError,
    SecretsAudit,
    SecretsManager,
)
from strongroom.backends.recent_rows import DEFAULT_WINDOW_SECONDS
from strongroom.core.errors import (
    AuthenticationError,
    ConfigurationError,
    EdgeReadOnlyError,
    StoreUnavailableError,
)
from strongroom.edge import EdgeNode
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke


async def edge_status(edge: Served) -> tuple[int, dict[str, Any]]:
    """``strongroom edge status --json`` run as a process against the edge."""
    assert edge.ca_path is not None
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "strongroom.cli", "edge", "status", "--addr", edge.base_url,
        "--cacert", str(edge.ca_path), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, json.loads(out)


async def test_the_edge_serves_what_the_site_may_read_within_its_scope(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dn-radio", VALUE, create=True)
    await put(central, "dn-console", "console-key", create=True)
    await put(central, "dx-other-site", "not-for-north", create=True)  # in scope, not readable
    await put(central, "zz-outside", "outside", create=True)  # readable, outside the scope
    assert central.served is not None
    token = await central.served.token_for("site-dn", "read,list:dn-*", "read,list:zz-*")
    node = await open_edge(central, tmp_path / "edge", token, ["d*"])
    try:
        async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge:
            consumer = await edge.token_for("console-1", "read,list:d*", "read,list:zz-*")
            answer = await edge_read(edge, consumer, "dn-radio")
            assert answer.status_code == 200, answer.text
            assert answer.json()["value"] == VALUE
            for absent in ("dx-other-site", "zz-outside"):
                assert (await edge_read(edge, consumer, absent)).status_code == 404
            # The central's own tokens mean nothing at the edge: it has its own.
            foreign = await edge_read(edge, central.served.admin_token, "dn-radio")
            assert foreign.status_code == 401
            # The remote profile works against the edge unchanged.
            client_home = tmp_path / "client"
            client_home.mkdir()
            settings = remote_settings(edge, consumer, client_home)
            async with SecretsManager(settings=settings) as remote:
                assert await remote.get_secret("dn-console") == "console-key"
        # Encrypted at rest under the site key, which is the edge's own key file.
        replica = (tmp_path / "edge" / "strongroom.db").read_bytes()
        assert VALUE.encode() not in replica
        assert (tmp_path / "edge" / "master.key").exists()
        # Every read at the edge is in the edge's own audit trail.
        trail = await SecretsAudit(node.wiring).get_audit_trail("dn-radio")
        assert any(e["actor_id"] == "console-1" and e["action"] == "READ" for e in trail)
        assert (await SecretsAudit(node.wiring).verify_integrity())["valid"] is True
    finally:
        await node.close()


async def test_writes_at_the_edge_are_refused_and_change_nothing(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dw-key", VALUE, create=True)
    node = await open_edge(central, tmp_path / "edge", await site_token(central, "dw"), ["dw-*"])
    try:
        async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge, edge.admin() as a:
            refused = [
                await a.put("/v1/secrets/dw-key", json={"value": "changed-at-edge"}),
                await a.post("/v1/secrets", json={"name": "dw-new", "value": "x"}),
                await a.delete("/v1/secrets/dw-key"),
                await a.put("/secrets/dw-key", params={"api-version": "7.4"}, json={"value": "x"}),
            ]
            for answer in refused:
                assert answer.status_code == 405, answer.text
            assert refused[0].json()["error"]["code"] == "edge_read_only"
            assert "changed-at-edge" not in refused[0].text
            assert (await a.get("/v1/secrets/dw-key")).json()["value"] == VALUE
            assert (await a.get("/v1/secrets/dw-new")).status_code == 404
        # The store refuses too, below every route.
        with pytest.raises(EdgeReadOnlyError):
            await SecretsManager(node.wiring).update_secret("dw-key", "changed")
        assert await SecretsManager(node.wiring).get_secret("dw-key") == VALUE
    finally:
        await node.close()


async def test_changes_revocations_and_deletions_reach_the_edge_over_the_feed(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "df-key", "first", create=True)
    await put(central, "df-revoked", VALUE, create=True)
    await put(central, "df-deleted", "soon-gone", create=True)
    node = await open_edge(central, tmp_path / "edge", await site_token(central, "df"), ["df-*"])
    manager = SecretsManager(node.wiring)
    try:
        node.start()
        await asyncio.wait_for(node.sync.online.wait(), 30)
        await put(central, "df-key", "second")
        await until(lambda: _reads(manager, "df-key", "second"), "the update to arrive")
        assert central.served is not None
        async with central.served.admin() as admin:
            answer = await admin.post(
                "/v1/revocations",
                json={"secret_name": "df-revoked", "reason": "key_compromise", "immediate": True},
            )
            assert answer.status_code == 201, answer.text
            assert (await admin.delete("/v1/secrets/df-deleted")).status_code == 200
        await until(lambda: _refused(manager, "df-revoked", "revoked"), "the revocation")
        await until(lambda: _refused(manager, "df-deleted", "not_found"), "the deletion")
        # The previous version stays readable by its id, as at the centre.
        versions = await manager.get_secret_versions("df-key")
        assert len(versions) == 2
        assert node.status()["online"] is True
        assert node.status()["events_applied"] >= 3
    finally:
        await node.close()


async def _reads(manager: SecretsManager, name: str, value: str) -> bool:
    try:
        return bool(await manager.get_secret(name) == value)
    except Exception:
        return False


async def _refused(manager: SecretsManager, name: str, code: str) -> bool:
    try:
        await manager.get_secret(name)
    except Exception as exc:
        return getattr(exc, "code", None) == code
    return False


async def says_why_it_refuses(edge: Served) -> None:
    """Readiness, metrics and ``strongroom edge status`` report the bound as passed."""
    async with edge.client() as probe:
        ready = await probe.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["edge"] == "edge_offline_too_long"
        assert ready.json()["edge"]["seconds_left"] == 0
        assert "dc-" not in ready.text  # no names, scopes or upstream address
    async with edge.admin() as admin:
        metrics = (await admin.get("/metrics")).text
        assert "strongroom_edge_online 0.0" in metrics
        assert "strongroom_edge_seconds_left 0.0" in metrics
    code, report = await edge_status(edge)
    assert code == 1
    assert report["edge"]["online"] is False


async def test_cut_off_the_edge_serves_within_its_bound_then_fails_closed_and_heals(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dc-radio", VALUE, create=True)
    await put(central, "dc-revoke-me", "soon-revoked", create=True)
    await put(central, "dc-delete-me", "soon-deleted", create=True)
    clock = FakeMonotonic()
    token = await site_token(central, "dc")
    node = await open_edge(central, tmp_path / "edge", token, ["dc-*"], monotonic=clock)
    try:
        node.start()
        await asyncio.wait_for(node.sync.online.wait(), 30)
        async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge:
            consumer = await edge.token_for("gateway-1", "read:dc-*")
            code, report = await edge_status(edge)
            assert (code, report["status"], report["edge"]["online"]) == (0, "ready", True)
            await central.stop()  # the uplink is cut
            await until(lambda: not node.sync.online.is_set(), "the edge to notice the cut")
            clock.now += MAX_OFFLINE - 1
            served = await edge_read(edge, consumer, "dc-radio")
            assert served.status_code == 200
            assert served.json()["value"] == VALUE
            assert 0 < node.status()["seconds_left"] <= 1
            clock.now += 2  # past the bound
            refused = await edge_read(edge, consumer, "dc-radio")
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "edge_offline_too_long"
            assert VALUE not in refused.text
            await says_why_it_refuses(edge)
            async with edge.client(consumer) as client:  # the Key Vault path too
                kv = await client.get("/secrets/dc-radio/", params={"api-version": "7.4"})
                assert kv.status_code == 503
            # Meanwhile, at the centre: a revocation, a deletion and an update.
            await EmergencyRevoke(central.app).request_revocation(
                RevocationRequest(
                    "dc-revoke-me", "key_compromise", requested_by="secops", immediate=True
                )
            )
            await SecretsManager(central.app).delete_secret("dc-delete-me")
            await SecretsManager(central.app).update_secret("dc-radio", "after-heal")
            await central.start()  # healed
            await asyncio.wait_for(node.sync.online.wait(), 30)
            healed = await edge_read(edge, consumer, "dc-radio")
            assert healed.status_code == 200
            assert healed.json()["value"] == "after-heal"
            revoked = await edge_read(edge, consumer, "dc-revoke-me")
            assert revoked.status_code == 403
            assert revoked.json()["error"]["code"] == "revoked"
            assert (await edge_read(edge, consumer, "dc-delete-me")).status_code == 404
    finally:
        await node.close()
        if central.served is None or central._stack is None:
            await central.start()


async def test_refusals_at_start_change_nothing(central: Central, tmp_path: Path) -> None:
    await put(central, "dr-key", VALUE, create=True)
    good = await site_token(central, "dr")
    home = tmp_path / "edge"
    with pytest.raises(AuthenticationError):
        await open_edge(central, home, "not-a-token", ["dr-*"])
    with pytest.raises(ConfigurationError, match="matches no secret"):
        await open_edge(central, home, good, ["nothing-here-*"])
    assert central.served is not None
    wrong_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(wrong_ca)
    with pytest.raises(ConfigurationError, match="TLS"):
        await EdgeNode.open(
            server_settings("sqlite", home),
            upstream=central.served.base_url,
            scopes=["dr-*"],
            token=good,
            cacert=wrong_ca,
        )
    assert not home.exists()  # no replica, no key, nothing written


async def test_a_damaged_replica_row_is_never_served_and_is_rebuilt_from_upstream(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dd-key", VALUE, create=True)
    node = await open_edge(central, tmp_path / "edge", await site_token(central, "dd"), ["dd-*"])
    manager = SecretsManager(node.wiring)
    try:
        node.start()
        await asyncio.wait_for(node.sync.online.wait(), 30)
        with sqlite3.connect(tmp_path / "edge" / "strongroom.db") as db:
            (sealed,) = db.execute(
                "SELECT ciphertext FROM secret_versions WHERE name_key = 'dd-key'"
            ).fetchone()
            damaged = bytes([sealed[0] ^ 1]) + sealed[1:]
            db.execute(
                "UPDATE secret_versions SET ciphertext = ? WHERE name_key = 'dd-key'", (damaged,)
            )
        await asyncio.sleep(
            DEFAULT_WINDOW_SECONDS * 1.5
        )  # a change around the edge: the next fetch
        with pytest.raises(StoreUnavailableError, match="integrity check") as caught:
            await manager.get_secret("dd-key")
        assert VALUE not in str(caught.value)
        await until(lambda: _reads(manager, "dd-key", VALUE), "the rebuilt copy")
    finally:
        await node.close()


async def test_a_reconnecting_edge_applies_revocations_before_it_answers_reads(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dg-key", VALUE, create=True)
    await put(central, "dg-gone", "soon-deleted", create=True)
    node = await open_edge(central, tmp_path / "edge", await site_token(central, "dg"), ["dg-*"])
    manager = SecretsManager(node.wiring)
    try:
        node.start()
        await asyncio.wait_for(node.sync.online.wait(), 30)
        await central.stop()
        await until(lambda: not node.sync.online.is_set(), "the edge to notice the cut")
        assert await manager.get_secret("dg-key") == VALUE  # offline, within the bound
        await EmergencyRevoke(central.app).request_revocation(
            RevocationRequest("dg-key", "key_compromise", requested_by="secops", immediate=True)
        )
        await SecretsManager(central.app).delete_secret("dg-gone")
        async with node.sync._lock:  # the reconnection's first change waits for this
            await central.start()
            await until(lambda: not node.replica.reads_open.is_set(), "the gate to close")
            read = asyncio.create_task(manager.get_secret("dg-key"))
            await until(lambda: node.replica.held == 1, "the read to wait at the gate")
            assert not read.done()
        with pytest.raises(SecretRevokedError):
            await read
        await asyncio.wait_for(node.sync.online.wait(), 30)
    finally:
        await node.close()
        if central._stack is None:
            await central.start()
