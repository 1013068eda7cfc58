"""Log lines carry names and versions, never values: an allowlist of fields, checked end to end."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from helpers_settings import make_settings
from strongroom import (
    SecretAlreadyExistsError,
    SecretsManager,
    Strongroom,
    ValidationError,
)
from strongroom.core.logging import LOGGED_FIELDS, allowlist_fields, configure_logging, get_logger


@pytest.fixture
def debug_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    """capsys, with structlog put back to its defaults afterwards."""
    yield capsys
    structlog.reset_defaults()


def log_to_captured_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """strongroom's own configuration at DEBUG. It binds ``sys.stderr`` when called, so call it
    in the test body: an async test may not see the stream capsys set up during fixtures."""
    capsys.readouterr()
    configure_logging("DEBUG")


def _canary(label: str) -> str:
    return f"PLAINTEXT-CANARY-{label}-{secrets.token_hex(8)}"


async def test_a_full_lifecycle_logs_names_but_no_value(
    debug_logging: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = {k: _canary(k) for k in ("created", "updated", "json", "refused", "too-long")}
    name = f"logged-{secrets.token_hex(4)}"
    log_to_captured_stderr(debug_logging)
    async with await Strongroom.open(make_settings("sqlite", tmp_path)) as app:
        manager = SecretsManager(app)
        await manager.create_secret(name, values["created"], metadata={"owner": "team-a"})
        await manager.update_secret(name, values["updated"])
        assert await manager.get_secret(name) == values["updated"]
        await manager.create_secret(f"{name}-json", {"password": values["json"]})
        assert await manager.get_secret(f"{name}-json") == {"password": values["json"]}
        with pytest.raises(SecretAlreadyExistsError) as exists:
            await manager.create_secret(name, values["refused"])
        with pytest.raises(ValidationError) as too_long:
            await manager.update_secret(name, values["too-long"] * 2000)
        await manager.update_secret_properties(name, metadata={"owner": "team-b"})
        await manager.list_secrets()
        await manager.get_secret_versions(name)
        await manager.delete_secret(name)
        await manager.list_deleted_secrets()
        await manager.recover_deleted_secret(name)
        await manager.rotate_master_key()
        await manager.delete_secret(f"{name}-json", immediate=True)

    captured = debug_logging.readouterr()
    output = captured.out + captured.err
    assert name in output  # logging happened, and names are logged
    lines = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    events = {line["event"] for line in lines}
    assert {"secret created", "secret updated", "secret deleted", "secret recovered"} <= events
    assert "master key rotated" in events
    for line in lines:
        assert set(line) <= LOGGED_FIELDS | {"dropped_fields"}
    for value in values.values():
        assert value not in output
        for error in (exists.value, too_long.value):
            assert value not in str(error)
            assert value not in repr(error)


async def test_a_value_passed_to_a_logger_by_mistake_is_dropped(
    debug_logging: pytest.CaptureFixture[str],
) -> None:
    canary = _canary("mistake")
    log_to_captured_stderr(debug_logging)
    get_logger("strongroom.test").info(
        "careless call", name="db-password", value=canary, password=canary, secret=canary
    )
    err = debug_logging.readouterr().err
    assert "careless call" in err
    assert "db-password" in err
    assert canary not in err
    (line,) = [json.loads(text) for text in err.splitlines() if "careless call" in text]
    assert line["dropped_fields"] == ["password", "secret", "value"]


def test_allowlist_keeps_allowed_keys_and_drops_the_rest() -> None:
    event = {
        "event": "secret read",
        "name": "db-password",
        "version": "0" * 32,
        "actor": "alice",
        "count": 3,
        "value": "hunter2",
        "password": "hunter2",
        "secret": "hunter2",
        "Value": "hunter2",
        "data": b"hunter2",
    }
    out = allowlist_fields(None, "info", dict(event))
    assert out == {
        "event": "secret read",
        "name": "db-password",
        "version": "0" * 32,
        "actor": "alice",
        "count": 3,
        "dropped_fields": ["Value", "data", "password", "secret", "value"],
    }
    assert "hunter2" not in repr(out)


def test_allowlist_leaves_a_clean_event_untouched() -> None:
    event = {"event": "opened", "backend": "sqlite", "level": "debug"}
    assert allowlist_fields(None, "debug", dict(event)) == event


def test_allowlist_has_no_field_for_values() -> None:
    for forbidden in ("value", "password", "secret", "plaintext", "data", "ciphertext", "key"):
        assert forbidden not in LOGGED_FIELDS


def _fresh_process(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter, where nothing has imported structlog yet."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )


def test_lines_below_the_level_are_dropped_without_importing_structlog() -> None:
    run = _fresh_process(
        "import sys\n"
        "from strongroom.core.logging import configure_logging, get_logger\n"
        "configure_logging('ERROR')\n"
        "get_logger('t').info('opened', backend='sqlite')\n"
        "print('structlog' in sys.modules)\n"
        "get_logger('t').error('refused', backend='sqlite')\n"
    )
    assert run.stdout.strip() == "False"  # nothing logged yet: structlog not even imported
    [line] = run.stderr.splitlines()  # the error, as strongroom's JSON line; not the info
    assert json.loads(line)["event"] == "refused"
    assert json.loads(line)["level"] == "error"


def test_a_host_that_configures_structlog_later_keeps_its_configuration() -> None:
    # strongroom configured first (as Strongroom.open does), the host application after it:
    # the host's configuration wins, as it did when strongroom configured structlog at once.
    run = _fresh_process(
        "import logging\n"
        "from strongroom.core.logging import configure_logging, get_logger\n"
        "configure_logging('ERROR')\n"
        "import structlog\n"
        "structlog.configure(\n"
        "    processors=[structlog.processors.KeyValueRenderer()],\n"
        "    wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),\n"
        "    logger_factory=structlog.PrintLoggerFactory())\n"
        "get_logger('t').info('opened', backend='sqlite')\n"
    )
    assert run.stdout.strip() == "backend='sqlite' event='opened'"
