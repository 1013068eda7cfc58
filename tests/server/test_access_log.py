"""The access log: one line per request at INFO (method, path, status, identity, address, time),
never a token or a value; below INFO, none, and the guard builds nothing for it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
import structlog
from served import Served

from strongroom.core.logging import configure_logging, get_logger


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """capsys, with structlog put back to its defaults afterwards."""
    yield capsys
    structlog.reset_defaults()


def _access_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


async def test_each_request_leaves_one_line_with_who_and_what(
    served: Served, captured: pytest.CaptureFixture[str]
) -> None:
    value = f"PLAINTEXT-CANARY-{secrets.token_hex(8)}"
    captured.readouterr()
    configure_logging("INFO")  # binds the stream capsys set up, so in the test body
    async with served.admin() as c:
        assert (await c.post("/v1/secrets", json={"name": "app-db", "value": value})).is_success
        assert (await c.get("/v1/secrets/app-db")).json()["value"] == value  # the fast path
        assert (await c.get("/v1/secrets/app-none")).status_code == 404
    async with served.client("srt_0000000000000000_" + "A" * 43) as c:
        assert (await c.get("/v1/secrets/app-db")).status_code == 401
    err = captured.readouterr().err
    lines = _access_lines(err)
    seen = [(line["method"], line["path"], line["status"], line["identity"]) for line in lines]
    assert seen == [
        ("POST", "/v1/secrets", 201, "test-admin"),
        ("GET", "/v1/secrets/app-db", 200, "test-admin"),
        ("GET", "/v1/secrets/app-none", 404, "test-admin"),
        ("GET", "/v1/secrets/app-db", 401, "anonymous"),
    ]
    assert all(line["ip"] == "127.0.0.1" and line["level"] == "info" for line in lines)
    assert all(isinstance(line["duration_ms"], float | int) for line in lines)
    assert value not in err
    assert served.admin_token not in err
    assert "A" * 43 not in err


async def test_below_info_nothing_is_logged_per_request(
    served: Served, captured: pytest.CaptureFixture[str]
) -> None:
    captured.readouterr()
    configure_logging("WARNING")
    assert not get_logger("strongroom.http").enabled("info")
    assert get_logger("strongroom.http").enabled("warning")
    async with served.admin() as c:
        assert (await c.get("/v1/secrets/app-none")).status_code == 404
    assert _access_lines(captured.readouterr().err) == []
