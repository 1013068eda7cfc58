"""A failing store is an outage (503 with Retry-After), never a 500 with a traceback.

The secret store under a real server is wrapped so that its reads raise the exception a test
chooses: strongroom's own StoreUnavailableError, or a driver's error that no store translated
(asyncpg's connection-state errors after a terminated backend, sqlite3's, the OS's). The answer
is 503 ``store_unavailable`` with ``Retry-After`` and no detail; an error that is no store's is
a bare 500. Either way the server log holds the error's type, never a traceback or a message.
Also: PostgreSQL's own pool translates the driver's connection-state errors.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from served import Served, serve, server_settings

from helpers_settings import PG_URL
from strongroom import Strongroom
from strongroom.core.errors import StoreUnavailableError
from strongroom.core.logging import configure_logging
from strongroom.db.pg import pooled

API = "api-version=7.4"
LEAK = "LEAKED-DETAIL-7f3a"


class FailingReads:
    """Delegates to the real store; reads of a value raise ``fault`` while it is set."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.fault: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def get_version(self, *args: Any, **kwargs: Any) -> Any:
        if self.fault is not None:
            raise self.fault
        return await self._store.get_version(*args, **kwargs)


@pytest.fixture
def logs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture]]:
    caplog.set_level(logging.DEBUG)
    yield capsys, caplog
    structlog.reset_defaults()


@pytest.fixture
async def faulty(tmp_path: Path) -> AsyncIterator[tuple[Served, FailingReads]]:
    app = await Strongroom.open(server_settings("sqlite", tmp_path))
    wrapper = FailingReads(app.store)
    app.store = wrapper  # type: ignore[assignment]
    try:
        async with serve(app) as running:
            yield running, wrapper
    finally:
        app.store = wrapper._store
        await app.close()


STORE_FAULTS = [
    pytest.param(StoreUnavailableError("the store failed"), id="StoreUnavailableError"),
    pytest.param(asyncpg.InternalClientError(f"cannot switch to state 12 {LEAK}"), id="asyncpg"),
    pytest.param(asyncpg.exceptions.ConnectionDoesNotExistError(LEAK), id="ConnectionDoesNotExist"),
    pytest.param(sqlite3.OperationalError(f"disk I/O error {LEAK}"), id="sqlite3"),
    pytest.param(ConnectionResetError(LEAK), id="OSError"),
]


@pytest.mark.parametrize("fault", STORE_FAULTS)
async def test_a_store_fault_is_503_with_retry_after_on_every_path(
    faulty: tuple[Served, FailingReads],
    fault: BaseException,
    logs: tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture],
) -> None:
    served, store = faulty
    capsys, caplog = logs
    capsys.readouterr()
    configure_logging("DEBUG")  # binds the stream capsys captures now
    async with served.admin() as c:
        assert (await c.post("/v1/secrets", json={"name": "s1", "value": "v"})).status_code == 201
        store.fault = fault
        answers = [
            await c.get("/v1/secrets/s1"),  # the fast path
            await c.get("/v1/secrets/s1/versions/" + "a" * 32),  # a framework route
            await c.get(f"/secrets/s1/?{API}"),  # Key Vault's fast path
            await c.post(f"/secrets/s1/backup?{API}"),  # a Key Vault framework route
        ]
        store.fault = None
        assert (await c.get("/v1/secrets/s1")).status_code == 200  # no restart needed
    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.text)
        assert int(answer.headers["retry-after"]) >= 1
        assert LEAK not in answer.text
    assert answers[0].json()["error"]["code"] == "store_unavailable"
    assert answers[2].json()["error"]["code"] == "ServiceUnavailable"
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert "Traceback" not in text
    assert LEAK not in text


async def test_an_error_that_is_no_stores_is_a_bare_500_without_a_traceback(
    faulty: tuple[Served, FailingReads],
    logs: tuple[pytest.CaptureFixture[str], pytest.LogCaptureFixture],
) -> None:
    served, store = faulty
    capsys, caplog = logs
    capsys.readouterr()
    configure_logging("DEBUG")  # binds the stream capsys captures now
    async with served.admin() as c:
        assert (await c.post("/v1/secrets", json={"name": "s1", "value": "v"})).status_code == 201
        store.fault = ZeroDivisionError(LEAK)
        answers = [await c.get("/v1/secrets/s1"), await c.post(f"/secrets/s1/backup?{API}")]
    for answer in answers:
        assert answer.status_code == 500, answer.text
        assert LEAK not in answer.text
        assert "retry-after" not in answer.headers
    assert answers[0].json() == {"error": {"code": "internal", "message": "internal error"}}
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert "Traceback" not in text
    assert LEAK not in text
    assert "ZeroDivisionError" in text  # the type is logged, so the fault can be found


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InternalClientError("cannot switch to state 12"),
        asyncpg.exceptions.ProtocolError("protocol"),
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
    ],
    ids=["InternalClientError", "ProtocolError", "ConnectionDoesNotExistError"],
)
async def test_the_postgres_pool_translates_connection_state_errors(
    postgres_available: None, error: BaseException
) -> None:
    pool = await asyncpg.create_pool(PG_URL, min_size=1, max_size=1)
    try:
        with pytest.raises(StoreUnavailableError, match=type(error).__name__):
            async with pooled(pool, "the PostgreSQL store"):
                raise error
    finally:
        await pool.close()


class FailingAppends:
    """Delegates to the real audit store; appends raise ``fault`` while it is set."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.fault: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        if self.fault is not None:
            raise self.fault
        return await self._store.append(*args, **kwargs)

    async def append_taking(self, *args: Any, **kwargs: Any) -> Any:
        if self.fault is not None:
            raise self.fault
        return await self._store.append_taking(*args, **kwargs)


async def test_readyz_reports_a_failing_audit_writer_until_it_writes_again(
    tmp_path: Path,
) -> None:
    app = await Strongroom.open(server_settings("sqlite", tmp_path))
    audit = FailingAppends(app.audit.store)
    app.audit.store = audit  # type: ignore[assignment]
    try:
        async with serve(app) as served, served.admin() as c:
            assert (await c.post("/v1/secrets", json={"name": "s1", "value": "v"})).is_success
            audit.fault = UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
            refused = await c.get("/v1/secrets/s1")
            assert (refused.status_code, refused.json()["error"]["code"]) == (
                503, "audit_unavailable",
            )  # fmt: skip
            assert refused.headers["retry-after"] == "1"
            ready = await c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["audit"] == "write_failed"
            audit.fault = None
            assert (await c.get("/v1/secrets/s1")).json()["value"] == "v"
            ready = await c.get("/readyz")
            assert (ready.status_code, ready.json()["checks"]["audit"]) == (200, "ok")
    finally:
        app.audit.store = audit._store
        await app.close()
