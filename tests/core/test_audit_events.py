"""Audit events before they are chained (pure): what is cleaned, cut and kept, and the bytes
the chain's MAC covers."""

from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from strongroom.core.audit import (
    AuditAction,
    AuditEvent,
    AuditResult,
    ChainKey,
    canonical,
    clean_details,
    clean_text,
    details_json,
)

WHEN = datetime(2030, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)


def event(**changes: object) -> AuditEvent:
    fields: dict[str, object] = {
        "action": "READ",
        "resource_name": "fleet-db",
        "timestamp": WHEN,
        "result": "SUCCESS",
        "actor_id": "alice",
    }
    return AuditEvent.build(**{**fields, **changes})


def test_build_cleans_and_cuts_every_text_field_to_its_column() -> None:
    built = event(
        resource_name="r" * 300,
        actor_id="a\x00b" + "c" * 300,
        actor_ip="1" * 100,
        actor_user_agent="u" * 600,
        details={"version": "v1", "unlisted": "dropped"},
        error_message="e" * 2000,
        error_code="C" * 100,
        duration_ms=7,
    )
    assert built.to_dict() == {
        "action": "READ",
        "resource_name": "r" * 256,
        "timestamp": WHEN,
        "result": "SUCCESS",
        "actor_id": ("a\ufffdb" + "c" * 300)[:256],
        "actor_ip": "1" * 64,
        "actor_user_agent": "u" * 512,
        "details": {"version": "v1"},
        "error_message": "e" * 1024,
        "error_code": "C" * 64,
        "duration_ms": 7,
    }


def test_build_defaults_what_was_not_given() -> None:
    built = event(actor_id="", timestamp=WHEN.astimezone(timezone(timedelta(hours=-5))))
    assert built.actor_id == "unknown"
    assert built.timestamp.tzinfo is UTC
    assert built.timestamp == WHEN
    assert (built.actor_ip, built.actor_user_agent, built.error_message) == (None, None, None)
    assert (built.error_code, built.duration_ms, built.details) == (None, None, {})
    assert (built.action, built.result) == (AuditAction.READ, AuditResult.SUCCESS)


def test_clean_text_replaces_what_no_store_can_keep() -> None:
    assert clean_text(None) is None
    assert clean_text("plain ascii") == "plain ascii"
    assert clean_text("nul\x00here") == "nul\ufffdhere"
    assert clean_text("lone \ud800 surrogate") == "lone \ufffd surrogate"
    assert clean_text("café ☕") == "café ☕"
    assert clean_text(42) == "42"
    assert clean_text("x" * 2000) == "x" * 1024


class Colour(enum.Enum):
    RED = "red"


def test_details_become_plain_json_values() -> None:
    details = clean_details(
        {
            "version": None,
            "count": 3,
            "enabled": True,
            "expires_at": WHEN.astimezone(timezone(timedelta(hours=2))),
            "severity": Colour.RED,
            "tags": {"k" * 300: "v\x00", "n": [1.5, "a\x00"]},
            "reason": object(),
        }
    )
    assert details == {
        "version": None,
        "count": 3,
        "enabled": True,
        "expires_at": "2030-05-17T12:30:45.123456+00:00",
        "severity": "red",
        "tags": {"k" * 256: "v\ufffd", "n": [1.5, "a\ufffd"]},
        "reason": "<class 'object'>",
    }
    assert clean_details(None) == {}


def test_the_chain_covers_times_to_the_microsecond_and_the_sequence_number() -> None:
    key = ChainKey(b"k" * 32)
    base = key.link(b"\x00" * 32, event(), 5)
    assert key.link(b"\x00" * 32, event(), 6) != base
    later = event(timestamp=WHEN + timedelta(microseconds=1))
    assert key.link(b"\x00" * 32, later, 5) != base
    assert b"[5," in canonical(event(), 5)
    assert str((int(WHEN.timestamp()) * 1_000_000) + 123456).encode() in canonical(event(), 5)


def test_the_chain_key_never_shows() -> None:
    assert repr(ChainKey(b"k" * 32)) == "ChainKey(epoch=0, <hidden>)"
    ring = repr(ChainKey(b"k" * 32, b"j" * 32))
    assert "kkkk" not in ring
    assert "jjjj" not in ring
    assert "epoch=1" in ring


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone set to one far from UTC (restored afterwards)."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_times_are_kept_in_utc_whatever_the_local_time_zone() -> None:
    assert time.localtime(WHEN.timestamp()).tm_gmtoff == 14 * 3600  # the zone is in effect
    east = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert clean_details({"expires_at": east}) == {"expires_at": "2030-05-17T12:30:45.123456+00:00"}
    row = {
        "action": "READ",
        "resource_name": "fleet-db",
        "result": "SUCCESS",
        "actor_id": "alice",
        "actor_ip": None,
        "actor_user_agent": None,
        "error_message": None,
        "error_code": None,
        "duration_ms": None,
    }
    stored = AuditEvent.stored(row, {}, east)
    assert stored.timestamp.tzinfo is UTC
    assert stored.timestamp == WHEN


DETAILS = [
    {},
    {"version": "0" * 32, "auth": {"method": "token", "token_id": "abc"}},
    {"zeta": 1, "alpha": [1, 2.5, None, True], "mid": {"b": "x", "a": "y"}},
    {"note": "Zürich \u2603 dispatch", "key": 'quote " and \\ and \n'},
    {"ratio": math.nan, "big": math.inf},
    {7: "int keys", 3: "become text"},
]


@pytest.mark.parametrize("details", DETAILS)
@pytest.mark.parametrize("ascii_only", [False, True])
def test_details_text_is_json_dumps_with_sorted_keys_and_no_spaces(
    details: dict[str, object], ascii_only: bool
) -> None:
    expected = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only)
    assert details_json(details, ascii_only=ascii_only) == expected
    assert details_json(details, ascii_only=ascii_only).isascii() or not ascii_only


def test_details_text_keeps_non_ascii_only_when_asked_to() -> None:
    assert details_json({"site": "Zürich"}) == '{"site":"Zürich"}'
    assert details_json({"site": "Zürich"}, ascii_only=True) == '{"site":"Z\\u00fcrich"}'


def test_details_text_refuses_what_json_cannot_hold() -> None:
    for bad in ({"when": object()}, {(1, 2): "a tuple key"}):
        with pytest.raises(TypeError):
            details_json(bad)  # type: ignore[arg-type]
