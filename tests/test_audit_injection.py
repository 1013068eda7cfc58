"""Text an attacker controls cannot forge or hide audit lines.

Actor ids, IPs and user agents come from tokens and HTTP headers; metadata come from callers.
Each is written with line breaks, the Unicode line separator, terminal escapes and NUL in it.
The audit log stores the text exactly (NUL, which PostgreSQL refuses, becomes U+FFFD: see
``strongroom.core.audit.clean_text``), and ``export_lines`` yields one JSON line per event with
every such character escaped, so a reader splitting on lines sees exactly the recorded events.
Runs on every store.
"""

from __future__ import annotations

import io
import json
import secrets
from typing import Any

import pytest

from strongroom import SecretsAudit, SecretsManager, Strongroom, ValidationError, acting_as

# A forged event on a line of its own, as an attacker would try to smuggle one into a log.
_FORGED_LINE = '\n{"action": "DELETE", "actor_id": "root", "result": "SUCCESS"}\n'

PAYLOADS = {
    "newline": "\n",
    "carriage-return": "\r",
    "crlf": "\r\n",
    "line-separator": "\u2028",
    "escape": "\x1b[31m",
    "nul": "\x00",
    "forged-line": _FORGED_LINE,
    "everything-but-nul": "\n\r\u2028\u2029\x85\x1b[2J\x1b]0;title\x07" + _FORGED_LINE,
}

#: Characters that end a line for some reader (str.splitlines, terminals, JS) or hide text.
FORBIDDEN = ("\n", "\r", "\u2028", "\u2029", "\x85", "\x1b", "\x00")


def as_stored(text: str, limit: int = 256) -> str:
    """What the audit log keeps: the text exactly, except NUL as U+FFFD, cut at the column's
    documented length (actor ids 256, IPs 64, user agents 512 characters)."""
    return text.replace("\x00", "\ufffd")[:limit]


async def exported(audit: SecretsAudit, trail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Export the log, check every line is one clean JSON event, and return the events."""
    lines = [line async for line in audit.export_lines()]
    assert len(lines) == len(trail) == await audit.count_events()
    for line in lines:
        for char in FORBIDDEN:
            assert char not in line, (char, line)
        assert line.isascii()
        assert line.isprintable()  # no control character of any kind

    stream = io.StringIO()
    assert await audit.export(stream) == len(lines)
    assert stream.getvalue().splitlines() == lines  # any line splitter sees the same lines

    records = [json.loads(line) for line in lines]
    oldest_first = list(reversed(trail))
    assert [r["id"] for r in records] == [e["id"] for e in oldest_first]
    for record, event in zip(records, oldest_first, strict=True):
        for key in ("action", "result", "actor_id", "actor_ip", "actor_user_agent", "details"):
            assert record[key] == event[key], key  # the export round-trips the stored text
    return records


@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
async def test_actor_text_is_stored_exactly_and_exported_one_line_per_event(
    manager: SecretsManager, app: Strongroom, payload: str
) -> None:
    actor_id, ip, agent = f"alice{payload}x", f"10.0.0.1{payload}", f"curl/8{payload}(evil)"
    name = f"inject-{secrets.token_hex(4)}"
    with acting_as(actor_id, ip=ip, user_agent=agent):
        await manager.create_secret(name, "the-value")
        assert await manager.get_secret(name) == "the-value"

    audit = SecretsAudit(app)
    trail = await audit.get_audit_trail()
    assert [e["action"] for e in trail] == ["READ", "CREATE"]
    for event in trail:
        assert event["result"] == "SUCCESS"
        assert event["actor_id"] == as_stored(actor_id)
        assert event["actor_ip"] == as_stored(ip, 64)
        assert event["actor_user_agent"] == as_stored(agent)
    assert await audit.count_events(actor_id=as_stored(actor_id)) == 2

    records = await exported(audit, trail)
    assert {r["actor_id"] for r in records} == {as_stored(actor_id)}
    assert {r["actor_user_agent"] for r in records} == {as_stored(agent)}


TAG_PAYLOADS = {k: v for k, v in PAYLOADS.items() if "\x00" not in v}


async def test_metadata_with_nul_is_refused_and_the_refusal_audited(
    manager: SecretsManager, app: Strongroom
) -> None:
    """NUL is refused in tags on every store (PostgreSQL cannot hold it); the refused CREATE is
    one FAILURE event whose text holds U+FFFD where the NUL was."""
    name = f"inject-{secrets.token_hex(4)}"
    with acting_as("bob"), pytest.raises(ValidationError, match="NUL"):
        await manager.create_secret(name, "the-value", metadata={"note": "a\x00b"})
    trail = await SecretsAudit(app).get_audit_trail(name)
    assert [(e["action"], e["result"], e["error_code"]) for e in trail] == [
        ("CREATE", "FAILURE", "bad_parameter")
    ]
    assert "\x00" not in json.dumps(trail, default=str)


@pytest.mark.parametrize("payload", TAG_PAYLOADS.values(), ids=TAG_PAYLOADS.keys())
async def test_metadata_text_is_stored_exactly_and_exported_one_line_per_event(
    manager: SecretsManager, app: Strongroom, payload: str
) -> None:
    name = f"inject-{secrets.token_hex(4)}"
    metadata = {"note": f"rotated by{payload}ops", f"key{payload}": "plain"}
    with acting_as("bob"):
        await manager.create_secret(name, "the-value", metadata=metadata)
        assert await manager.get_secret(name) == "the-value"

    audit = SecretsAudit(app)
    trail = await audit.get_audit_trail(name)
    assert [(e["action"], e["result"]) for e in trail] == [
        ("READ", "SUCCESS"),
        ("CREATE", "SUCCESS"),
    ]
    expected_tags = {as_stored(k): as_stored(v) for k, v in metadata.items()}
    assert trail[1]["details"]["tags"] == expected_tags

    records = await exported(audit, trail)
    assert records[0]["details"]["tags"] == expected_tags


async def test_each_event_of_a_mixed_log_is_one_exported_line(
    manager: SecretsManager, app: Strongroom
) -> None:
    """Many events, every payload in turn: the export has exactly one line per event."""
    names = []
    for index, payload in enumerate(PAYLOADS.values()):
        with acting_as(f"user{payload}{index}", user_agent=payload):
            name = f"mixed-{index}"
            await manager.create_secret(name, f"value-{index}")
            assert await manager.get_secret(name) == f"value-{index}"
            names.append(name)
    audit = SecretsAudit(app)
    trail = await audit.get_audit_trail(limit=1000)
    assert len(trail) == 2 * len(PAYLOADS)
    records = await exported(audit, trail)
    assert [r["resource_name"] for r in records] == [n for n in names for _ in range(2)]
