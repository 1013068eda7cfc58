"""Slow and greedy connections against the real ``strongroom serve``: trickled headers, a
stalled body, a silent and an idle connection are closed within the configured timeouts, and
one address gets no more connections than the cap. How long each took is a figure (the
tests under tests/server check the behaviour; this measures it)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from conftest import Figures, size
from harness import CAP, Service, admin_token, service_env

TIMEOUT = 2.0  # header, body and keep-alive timeouts of this service
PER_ADDRESS = 20


async def closed_after(
    port: int, opening: bytes, trickle: bytes | None = None
) -> tuple[float, bytes]:
    """Seconds from connecting until the server closed the connection, and what it sent."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(opening)

    async def drip() -> None:
        with contextlib.suppress(ConnectionError):
            while trickle:
                writer.write(trickle)
                await writer.drain()
                await asyncio.sleep(0.2)

    dripping = asyncio.create_task(drip())
    try:
        answer = await asyncio.wait_for(reader.read(), CAP)
    finally:
        dripping.cancel()
        writer.close()
    return time.monotonic() - started, answer


async def test_slow_connections_are_closed_within_the_configured_timeouts(
    tmp_path: Path, figures: Figures
) -> None:
    env = service_env(
        "sqlite", tmp_path / "home",
        STRONGROOM_HTTP_HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        STRONGROOM_HTTP_BODY_TIMEOUT_SECONDS=str(TIMEOUT),
        STRONGROOM_HTTP_KEEP_ALIVE_SECONDS=str(TIMEOUT),
        STRONGROOM_HTTP_MAX_CONNECTIONS_PER_ADDRESS=str(PER_ADDRESS),
    )  # fmt: skip
    token = await admin_token(env)
    service = Service(env, log_dir=tmp_path)
    rounds = size(1, 3)
    results: dict[str, list[tuple[float, bytes]]] = {}
    try:
        await service.start()
        body = b'{"name": "slow", "value": "never-complete"}'
        cases = {
            "trickled headers": (b"GET /healthz HTTP/1.1\r\n", b"X-Slow: a\r\n"),
            "stalled body": (
                b"POST /v1/secrets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body[:10], None),
            "silent connection": (b"", None),
            "idle after an answer": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", None),
        }  # fmt: skip
        for _ in range(rounds):
            for what, (opening, trickle) in cases.items():
                results.setdefault(what, []).append(
                    await closed_after(service.port, opening, trickle)
                )
        held = [await asyncio.open_connection("127.0.0.1", service.port)
                for _ in range(PER_ADDRESS + 5)]  # fmt: skip
        refused = 0
        for reader, writer in held:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            line = await asyncio.wait_for(reader.readline(), CAP)
            refused += line.startswith(b"HTTP/1.1 429")
            writer.close()
    finally:
        service.stop()
    scenario = "slow and greedy connections"
    expected = {"trickled headers": b"408", "stalled body": b"408",
                "silent connection": b"408", "idle after an answer": b"200"}  # fmt: skip
    for what, runs in results.items():
        slowest = max(seconds for seconds, _ in runs)
        answered = all(answer.startswith(b"HTTP/1.1 " + expected[what]) for _, answer in runs)
        within = slowest <= TIMEOUT + 1.0
        figures.add(scenario, "sqlite", f"{what}: closed after (s)", slowest,
                    f"<= {TIMEOUT:g} s configured + 1", within and answered)  # fmt: skip
        assert answered, runs
    figures.add(scenario, "sqlite", f"connections beyond {PER_ADDRESS} per address refused",
                f"{refused} of 5", "5 (429)", refused == 5)  # fmt: skip
    assert refused == 5
    assert "Traceback" not in service.log()
