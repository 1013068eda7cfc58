"""The site's credential and the upstream's certificate, while the edge runs: a credential the
centre revokes stops every read at once (not at the bound); a certificate that no longer
verifies is refused and named in the status, and the edge serves within its bound."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import trustme

from helpers_edge import MAX_OFFLINE, VALUE, Central, edge_read, open_edge, put, site_token, until
from helpers_serve import serve, server_settings
from strongroom.edge import EdgeNode


async def test_a_site_credential_revoked_at_the_centre_stops_the_edge_at_once(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dv-radio", VALUE, create=True)
    token = await site_token(central, "dv")
    node = await open_edge(central, tmp_path / "edge", token, ["dv-*"], credential_check=0.2)
    try:
        node.start()
        await asyncio.wait_for(node.sync.online.wait(), 30)
        async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge:
            consumer = await edge.token_for("console-dv", "read:dv-*")
            assert (await edge_read(edge, consumer, "dv-radio")).status_code == 200
            await central.app.access.revoke_identity("site-dv")
            await until(lambda: node.bound.refused is not None, "the edge to learn of it")
            refused = await edge_read(edge, consumer, "dv-radio")
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "edge_credential_refused"
            assert VALUE not in refused.text
            assert node.status()["seconds_left"] == 0  # not the bound: at once
            async with edge.client() as probe:
                ready = await probe.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["edge"] == "edge_credential_refused"
            assert ready.json()["edge"]["upstream_error"] == "site_credential_refused"
            assert token not in ready.text
    finally:
        await node.close()


async def test_an_upstream_certificate_that_no_longer_verifies_is_refused_and_reported(
    central: Central, tmp_path: Path
) -> None:
    await put(central, "dw2-radio", VALUE, create=True)
    assert central.served is not None
    assert central.served.ca_path is not None
    pinned = tmp_path / "central-ca.pem"  # the CA the edge trusts, apart from the server's files
    shutil.copy(central.served.ca_path, pinned)
    node = await EdgeNode.open(
        server_settings("sqlite", tmp_path / "edge", edge_max_offline_seconds=MAX_OFFLINE),
        upstream=central.served.base_url, scopes=["dw2-*"],
        token=await site_token(central, "dw2"), cacert=pinned,
    )  # fmt: skip
    trusted = central.ca
    try:
        node.start()
        await asyncio.wait_for(node.sync.online.wait(), 30)
        await central.stop()
        central.ca = trustme.CA()  # the same address now shows a certificate of another CA
        await central.start()
        await until(
            lambda: node.status()["upstream_error"] == "upstream_certificate_refused",
            "the edge to refuse the certificate",
        )
        assert node.status()["online"] is False
        async with serve(node.wiring, tls_dir=tmp_path, api=node.app()) as edge:
            consumer = await edge.token_for("console-dw2", "read:dw2-*")
            served = await edge_read(edge, consumer, "dw2-radio")  # within the bound
            assert served.status_code == 200
    finally:
        await node.close()
        await central.stop()
        central.ca = trusted
        await central.start()
