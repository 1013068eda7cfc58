"""The change feed (``GET /v1/events/feed``, Server-Sent Events) and the remote cache it keeps
fresh, against a real server over HTTPS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers_remote import remote_server, remote_settings
from helpers_serve import Served
from strongroom import SecretRevokedError, SecretsManager
from strongroom.services.remote.cache import parse_sse

SECRET = "feed-canary-value-42"


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    async with remote_server(tmp_path_factory.mktemp("feed")) as running:
        yield running


async def read_events(
    served: Served, token: str, count: int, headers: dict[str, str] | None = None
) -> list[tuple[str | None, str, dict[str, Any]]]:
    """The first ``count`` events of a fresh feed connection."""
    found: list[tuple[str | None, str, dict[str, Any]]] = []
    async with (
        served.client(token, headers=headers or {}) as client,
        client.stream("GET", "/v1/events/feed") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event_id, kind, data in parse_sse(response.aiter_lines()):
            found.append((event_id, kind, json.loads(data)))
            if len(found) == count:
                break
    return found


async def until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_the_feed_resumes_from_the_last_event_id_without_losing_events(
    server: Served,
) -> None:
    token = await server.token_for("feed-reader", "read,write,list,delete:fd-*")
    writer = server.admin()
    first = await writer.post("/v1/secrets", json={"name": "fd-one", "value": SECRET})
    assert first.status_code == 201
    after = await read_events(server, token, 1, {"Last-Event-ID": "0"})
    start_id = after[0][0]
    assert after[0][1] == "secret.created"
    assert after[0][2]["name"] == "fd-one"
    await writer.put("/v1/secrets/fd-one", json={"value": "v2"})
    await writer.delete("/v1/secrets/fd-one")
    await writer.post("/v1/secrets", json={"name": "other-secret", "value": "x"})  # not visible
    await writer.post("/v1/deleted-secrets/fd-one/recover")
    assert start_id is not None
    resumed = await read_events(server, token, 3, {"Last-Event-ID": start_id})
    assert [(kind, data["name"]) for _, kind, data in resumed] == [
        ("secret.updated", "fd-one"), ("secret.deleted", "fd-one"), ("secret.recovered", "fd-one"),
    ]  # fmt: skip
    ids = [int(i or 0) for i, _, _ in resumed]
    assert ids == sorted(ids)
    assert ids[0] > int(start_id)
    for _, _, data in resumed:
        assert SECRET not in json.dumps(data)
        assert "value" not in data
    await writer.aclose()


async def test_near_expiry_is_on_the_feed_once_and_schedule_bookkeeping_is_not(
    server: Served,
) -> None:
    token = await server.token_for("feed-expiry", "read,list:fx-*")
    async with server.admin() as admin:
        body = {"name": "fx-soon", "value": SECRET, "expires_in_days": 1}
        created = (await admin.post("/v1/secrets", json=body)).json()
        ((start_id, kind, _),) = await read_events(server, token, 1, {"Last-Event-ID": "0"})
        assert kind == "secret.created"
        # A schedule left to workers, forced: audited as UPDATE, yet the secret is unchanged.
        schedule = {"generator": "password", "worker": True}
        assert (await admin.put("/v1/rotation/fx-soon", json=schedule)).status_code == 200
        assert (await admin.post("/v1/rotation/fx-soon/force")).status_code == 200
        for _ in range(2):  # the notice goes out once per version
            await admin.post("/v1/events/check-expiry", json={"warning_days": 7})
        await admin.put("/v1/secrets/fx-soon", json={"value": "v2"})
    assert start_id is not None
    events = await read_events(server, token, 2, {"Last-Event-ID": start_id})
    assert [(kind, data["name"]) for _, kind, data in events] == [
        ("secret.near_expiry", "fx-soon"), ("secret.updated", "fx-soon"),
    ]  # fmt: skip
    assert events[0][2]["version"] == created["version"]
    assert SECRET not in json.dumps([data for _, _, data in events])


async def test_a_revocation_is_on_the_feed_when_carried_out_not_when_asked_for(
    server: Served,
) -> None:
    token = await server.token_for("feed-pending", "read,list:fp-*")
    async with server.admin() as admin:
        await admin.post("/v1/secrets", json={"name": "fp-key", "value": SECRET})
        ((start_id, kind, _),) = await read_events(server, token, 1, {"Last-Event-ID": "0"})
        assert kind == "secret.created"
        asked = {"secret_name": "fp-key", "reason": "key_compromise"}
        pending = await admin.post("/v1/revocations", json=asked)  # waits for approvals
        assert pending.status_code == 201, pending.text
        assert pending.json()["status"] == "PENDING"
        await admin.put("/v1/secrets/fp-key", json={"value": "v2"})  # still served: updated
        revoked = await admin.post("/v1/revocations", json={**asked, "immediate": True})
        assert revoked.status_code == 201, revoked.text
        await admin.post("/v1/secrets", json={"name": "fp-after", "value": SECRET})
    assert start_id is not None
    events = await read_events(server, token, 3, {"Last-Event-ID": start_id})
    assert [(kind, data["name"]) for _, kind, data in events] == [
        ("secret.updated", "fp-key"), ("secret.revoked", "fp-key"), ("secret.created", "fp-after"),
    ]  # fmt: skip


async def test_the_feed_needs_a_token_and_a_grant(server: Served) -> None:
    async with server.client() as anonymous:
        assert (await anonymous.get("/v1/events/feed")).status_code == 401
    nothing = await server.token_for("feed-nobody")
    async with server.client(nothing) as client:
        assert (await client.get("/v1/events/feed")).status_code == 403
    reader = await server.token_for("feed-bad-id", "read:fd-*")
    async with server.client(reader, headers={"Last-Event-ID": "x1"}) as client:
        assert (await client.get("/v1/events/feed")).status_code == 400


async def test_cached_reads_are_dropped_by_the_feed(server: Served, tmp_path: Path) -> None:
    token = await server.token_for("feed-cache", "read,write,list:fc-*")
    settings = remote_settings(server, token, tmp_path, STRONGROOM_CACHE_TTL_SECONDS=300)
    other_token = await server.token_for("feed-other", "read,write,list:fc-*")
    other_settings = remote_settings(server, other_token, tmp_path / "other")
    async with (
        SecretsManager(settings=settings) as cached,
        SecretsManager(settings=other_settings) as writer,
    ):
        await writer.create_secret("fc-key", "one")
        assert await cached.get_secret("fc-key") == "one"  # starts the feed
        follower = cached._follower()  # type: ignore[attr-defined]
        assert follower is not None
        await asyncio.wait_for(follower.connected.wait(), 10)
        assert await cached.get_secret("fc-key") == "one"
        assert await cached.get_secret("fc-key") == "one"
        assert follower.cache.hits >= 1
        await writer.update_secret("fc-key", "two")
        await until(lambda: len(follower.cache) == 0, "the feed to drop the cached value")
        assert await cached.get_secret("fc-key") == "two"
        await writer.update_secret_properties("fc-key", enabled=False)
        await until(lambda: len(follower.cache) == 0, "the feed to drop the disabled value")
        with pytest.raises(Exception, match="disabled"):
            await cached.get_secret("fc-key")


async def test_an_expiry_notice_leaves_the_cached_value(server: Served, tmp_path: Path) -> None:
    token = await server.token_for("feed-notice", "read,write,list:fn-*")
    settings = remote_settings(server, token, tmp_path, STRONGROOM_CACHE_TTL_SECONDS=300)
    async with SecretsManager(settings=settings) as cached:
        await cached.create_secret("fn-key", "soon", expires_in_days=1)
        assert await cached.get_secret("fn-key") == "soon"
        follower = cached._follower()  # type: ignore[attr-defined]
        await asyncio.wait_for(follower.connected.wait(), 10)
        # The creation may still be on its way down the feed (and would drop the value): a
        # later change seen on the feed shows everything before it has passed.
        changed: list[str] = []
        follower.on_change = changed.append
        await cached.create_secret("fn-marker", "m")
        await until(lambda: "fn-marker" in changed, "the feed to catch up")
        assert await cached.get_secret("fn-key") == "soon"
        assert len(follower.cache) == 1
        seen = follower.events_seen
        async with server.admin() as admin:
            await admin.post("/v1/events/check-expiry", json={"warning_days": 7})
        await until(lambda: follower.events_seen > seen, "the notice on the feed")
        assert len(follower.cache) == 1  # a notice is no change: the value stays cached


async def test_a_revocation_reaches_a_cached_reader(server: Served, tmp_path: Path) -> None:
    token = await server.token_for(
        "feed-rev", "read,write,list,revoke-request,revoke-break-glass:fr-*"
    )
    settings = remote_settings(server, token, tmp_path, STRONGROOM_CACHE_TTL_SECONDS=300)
    async with SecretsManager(settings=settings) as cached:
        await cached.create_secret("fr-key", "leaked")
        assert await cached.get_secret("fr-key") == "leaked"
        follower = cached._follower()  # type: ignore[attr-defined]
        await asyncio.wait_for(follower.connected.wait(), 10)
        assert await cached.get_secret("fr-key") == "leaked"
        async with server.admin() as admin:
            answer = await admin.post(
                "/v1/revocations",
                json={"secret_name": "fr-key", "reason": "key_compromise", "immediate": True},
            )
            assert answer.status_code == 201, answer.text
        await until(lambda: len(follower.cache) == 0, "the revocation to reach the cache")
        with pytest.raises(SecretRevokedError):
            await cached.get_secret("fr-key")


def test_sse_parser_reads_ids_kinds_and_multiline_data() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in ["retry: 1000", ": comment", "id: 7", "event: secret.updated",
                     'data: {"a":', "data: 1}", "", ": keep-alive", ""]:  # fmt: skip
            yield line

    async def collect() -> list[tuple[str | None, str, str]]:
        return [event async for event in parse_sse(lines())]

    assert asyncio.run(collect()) == [("7", "secret.updated", '{"a":\n1}')]


async def test_a_server_stops_while_a_feed_is_open(tmp_path: Path) -> None:
    """Graceful shutdown does not wait for a stream that never ends by itself."""
    async with remote_server(tmp_path) as served:
        token = await served.token_for("feed-stop", "read:fs-*")
        client = served.client(token)
        response = await client.send(client.build_request("GET", "/v1/events/feed"), stream=True)
        assert response.status_code == 200
    # Leaving the block stopped the server (serve() fails if that takes 30 s): the open
    # stream was cut, and the client sees its end.
    with pytest.raises(httpx.HTTPError):
        await response.aread()
    await response.aclose()
    await client.aclose()


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"Last-Event-ID": "not-a-number"}, ""),
        ({"Last-Event-ID": "-5"}, ""),
        ({"Last-Event-ID": "9" * 20}, ""),
        ({}, "?after=-1"),
        ({}, "?after=abc"),
        ({}, f"?after={2**63}"),
    ],
)
async def test_a_bad_resume_point_is_refused_before_the_stream_opens(
    server: Served, headers: dict[str, str], query: str
) -> None:
    token = await server.token_for("feed-bad-input", "read:fb-*")
    async with server.client(token, headers=headers) as client:
        answer = await client.get(f"/v1/events/feed{query}")
    assert answer.status_code in (400, 422), answer.text
    assert not answer.headers["content-type"].startswith("text/event-stream")
    assert answer.json()["error"]["code"] == "bad_parameter"
