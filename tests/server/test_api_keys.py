"""``POST /v1/keys/rotate``: re-wraps every data key over HTTP, for admins only."""

from __future__ import annotations

from served import Served


async def test_key_rotation_over_http_keeps_values_readable(served: Served) -> None:
    operator = await served.token_for("operator", "read,write,list:*")
    async with served.admin() as admin:
        await admin.post("/v1/secrets", json={"name": "fleet-db", "value": "pw-1"})
        before = await served.app.store.key_version()
        rotated = await admin.post("/v1/keys/rotate")
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["key_version"] == before + 1
        assert rotated.json()["rewrapped"] == 1
        assert (await admin.get("/v1/secrets/fleet-db")).json()["value"] == "pw-1"
    async with served.client(operator) as c:
        refused = await c.post("/v1/keys/rotate")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    assert await served.app.store.key_version() == before + 1
