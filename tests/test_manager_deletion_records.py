"""What deleting, recovering and purging a secret leave behind, on every store: the answer
each call gives, its audit event (action, secret, details) and its log line, which names the
secret and the actor and never the value."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from strongroom import SecretsAudit, SecretsManager, Strongroom
from strongroom.core.actor import acting_as

pytestmark = pytest.mark.stores("memory", "sqlite", "postgres")

VALUE = "deletion-canary-5b1e"


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every line logged in the test, INFO included (the library's default level is WARNING)."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


async def newest(app: Strongroom, action: str) -> dict[str, Any]:
    event = (await SecretsAudit(app).get_audit_trail(action=action, limit=1))[0]
    assert event["result"] == "SUCCESS"
    assert VALUE not in str(event)
    return event


def logged(logs: list[dict[str, Any]], event: str) -> dict[str, Any]:
    assert all(VALUE not in str(line) for line in logs)
    return next(line for line in logs if line["event"] == event)


async def test_a_soft_delete_answers_records_and_logs_the_window(
    app: Strongroom, logs: list[dict[str, Any]]
) -> None:
    manager = SecretsManager(app)
    await manager.create_secret("db-password", VALUE)
    with acting_as("alice"):
        answer = await manager.delete_secret("db-password")
    assert (answer["name"], answer["deleted"], answer["purged"]) == ("db-password", True, False)
    event = await newest(app, "DELETE")
    assert event["resource_name"] == "db-password"
    assert event["details"]["immediate"] is False
    assert event["details"]["recoverable_days"] == app.settings.recovery_days == 90
    line = logged(logs, "secret deleted")
    assert (line["name"], line["actor"], line["count"]) == ("db-password", "alice", 0)


async def test_an_immediate_delete_answers_records_and_logs_the_purge(
    app: Strongroom, logs: list[dict[str, Any]]
) -> None:
    manager = SecretsManager(app)
    await manager.create_secret("db-password", VALUE)
    with acting_as("alice"):
        answer = await manager.delete_secret("db-password", immediate=True)
    assert answer == {"name": "db-password", "deleted": True, "purged": True}
    event = await newest(app, "DELETE")
    assert event["resource_name"] == "db-password"
    assert event["details"]["immediate"] is True
    assert "recoverable_days" not in event["details"]
    line = logged(logs, "secret deleted")
    assert (line["name"], line["actor"], line["count"]) == ("db-password", "alice", 1)


async def test_recover_records_the_version_it_brought_back(
    app: Strongroom, logs: list[dict[str, Any]]
) -> None:
    manager = SecretsManager(app)
    created = await manager.create_secret("db-password", VALUE)
    await manager.delete_secret("db-password")
    with acting_as("bob"):
        recovered = await manager.recover_deleted_secret("db-password")
    assert recovered["version"] == created["version"]
    event = await newest(app, "RECOVER")
    assert event["resource_name"] == "db-password"
    assert event["details"]["version"] == created["version"]
    line = logged(logs, "secret recovered")
    assert (line["name"], line["actor"]) == ("db-password", "bob")


async def test_purge_answers_records_and_logs(app: Strongroom, logs: list[dict[str, Any]]) -> None:
    manager = SecretsManager(app)
    await manager.create_secret("db-password", VALUE)
    await manager.delete_secret("db-password")
    with acting_as("carol"):
        answer = await manager.purge_deleted_secret("db-password")
    assert answer == {"name": "db-password", "purged": True}
    event = await newest(app, "PURGE")
    assert event["resource_name"] == "db-password"
    line = logged(logs, "secret purged")
    assert (line["name"], line["actor"]) == ("db-password", "carol")


async def test_reading_the_deleted_is_audited_as_such(app: Strongroom) -> None:
    manager = SecretsManager(app)
    for name in ("db-password", "api-key"):
        await manager.create_secret(name, VALUE)
        await manager.delete_secret(name)
    assert len(await manager.list_deleted_secrets()) == 2
    listed = await newest(app, "LIST")
    assert (listed["details"]["operation"], listed["details"]["count"]) == ("deleted", 2)
    assert (await manager.get_deleted_secret("api-key"))["name"] == "api-key"
    described = await newest(app, "DESCRIBE")
    assert described["resource_name"] == "api-key"
    assert described["details"]["operation"] == "deleted"
