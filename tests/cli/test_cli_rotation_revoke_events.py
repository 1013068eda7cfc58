"""Rotation, emergency revocation and event subscriptions with the real ``strongroom`` command,
on the embedded default and PostgreSQL.

One session per store (subprocess start-up is the cost): policies, rotating now and at the next
check, compliance with --fail-on-overdue, break-glass and approved revocations with separation
of duties, refused webhook targets, and at the end a search of every output for values.
"""

from __future__ import annotations

import getpass
import secrets
import socket
from pathlib import Path

import pytest
from clirun import Cli, make_cli

from strongroom.cli.rotation import Generator, parse_options
from strongroom.cli.runtime import UsageError
from strongroom.services.rotation.generators import GENERATORS

ME = f"{getpass.getuser()}@{socket.gethostname()}"


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return make_cli(request.param, tmp_path / "home", schema)


def _value(label: str) -> str:
    return f"{label}-{secrets.token_hex(8)}"


def test_rotation_revocation_and_events_session(  # noqa: PLR0915 (one session on purpose)
    cli: Cli,
) -> None:
    first, plain, leaked, kept, broken = (
        _value(x) for x in ("first", "plain", "leaked", "kept", "broken")
    )
    # Tables are drawn the same whatever the store: draw them on one store only (time).
    tables = cli.store == "sqlite"
    cli("init", "-q")
    cli.parallel(
        *(
            lambda name=name, value=value, kind=kind: cli(
                "secret", "create", name, "-", "--type", kind, "-q", stdin=value
            )
            for name, value, kind in (
                ("app-db", first, "database_credential"),
                ("no-policy", plain, "generic"),
                ("leaked", leaked, "api_key"),
                ("kept", kept, "generic"),
                ("broken", broken, "generic"),
            )
        )
    )

    # -- rotation: a policy with a generator, checked before it is stored -------------------
    registered = cli(
        "rotation", "register", "app-db", "--days", "30", "--hours-before-expiry", "12",
        "--generator", "password", "--option", "length=40", "--option",
        "alphabet=abcdefghijklmnopqrstuvwxyz0123456789", "--grace-hours", "2",
        "--description", "fleet database", "--json",
    ).json()  # fmt: skip
    assert registered["rotation_days"] == 30
    assert registered["generator"] == "password"
    assert registered["overdue"] is False
    status_run, list_run, check_run, *drawn = cli.parallel(
        lambda: cli("rotation", "status", "app-db", "--json"),
        lambda: cli("rotation", "list", "--json"),
        lambda: cli("rotation", "check", "--json"),
        lambda: cli("rotation", "register", "x", "-g", "password", "--option", "length=5", code=2),
        lambda: cli("rotation", "register", "x", "-g", "callback", code=2),
        lambda: cli("rotation", "status", "no-policy", code=3),
        *(
            [
                lambda: cli("rotation", "status", "app-db"),
                lambda: cli("rotation", "list"),
                lambda: cli("rotation", "check"),
            ]
            if tables
            else []
        ),
    )
    status = status_run.json()
    assert status["rotation_hours_before_expiry"] == 12
    assert status["grace_period_hours"] == 2
    assert status["description"] == "fleet database"
    assert status["force_on_next"] is False
    assert [s["name"] for s in list_run.json()] == ["app-db"]
    report = check_run.json()
    assert "no-policy" in report["without_policy"]
    assert "app-db" not in report["without_policy"]
    assert report["overdue"] == []
    if tables:
        assert "fleet database" in drawn[3].stdout
        assert "30 days" in drawn[4].stdout
        assert "without a policy" in drawn[5].stdout

    # rotate now: a new current version with a generated value.
    fresh_policy = ("rotation", "register", "fresh-key", "-g", "api_key", "--option", "prefix=live",
                    "--type", "api_key", "-q")  # fmt: skip
    rotated = cli("rotation", "rotate", "app-db", "--json").json()
    assert rotated["rotated"] is True
    got, versions_run, history_run, *drawn = cli.parallel(
        lambda: cli("secret", "get", "app-db"),
        lambda: cli("secret", "versions", "app-db", "--json"),
        lambda: cli("rotation", "history", "app-db", "--json"),
        # force: due at the next check whatever the schedule says.
        lambda: cli("rotation", "force", "app-db", "-q"),
        # a policy for a secret that does not exist yet: the first rotation creates it.
        lambda: cli(*fresh_policy),
        *([lambda: cli("rotation", "history", "app-db")] if tables else []),
    )
    second = got.stdout
    assert second != first
    assert len(second) == 40
    versions = versions_run.json()
    assert [v["version"] for v in versions if v["current"]] == [rotated["version"]]
    assert len(versions) == 2
    history = history_run.json()
    assert history[0]["action"] == "ROTATE"
    assert history[0]["result"] == "SUCCESS"
    assert history[0]["details"]["version"] == rotated["version"]
    assert history[0]["actor_id"] == ME
    if tables:
        assert rotated["version"][:8] in drawn[2].stdout

    # forced is overdue now; --fail-on-overdue says so with exit 1 (for cron and CI).
    forced, overdue, failing, quiet = cli.parallel(
        lambda: cli("rotation", "status", "app-db", "--json"),
        lambda: cli("rotation", "check", "--json"),
        lambda: cli("rotation", "check", "--fail-on-overdue", code=1),
        lambda: cli("-q", "rotation", "check", "--fail-on-overdue", code=1),
    )
    assert forced.json()["overdue"] is True
    assert forced.json()["force_on_next"] is True
    assert overdue.json()["overdue"] == ["app-db"]  # fresh-key has no secret yet: not listed
    assert "app-db" in failing.stdout
    assert quiet.stdout == ""
    assert "app-db" in quiet.stderr

    # run: one scheduler cycle rotates what is due, and creates fresh-key.
    cycle = cli("rotation", "run", "--json").json()
    assert sorted(cycle["rotated"]) == ["app-db", "fresh-key"]
    assert cycle["failed"] == []
    fresh, after, got, *_ = cli.parallel(
        lambda: cli("secret", "show", "fresh-key", "--json"),
        lambda: cli("rotation", "check", "--fail-on-overdue", "--json"),
        lambda: cli("secret", "get", "app-db"),
        lambda: cli("rotation", "unregister", "fresh-key"),
    )
    assert fresh.json()["secret_type"] == "api_key"
    assert after.json()["overdue"] == []
    third = got.stdout
    assert third not in (first, second)

    # -- revocation --------------------------------------------------------------------------
    break_glass = ("revoke", "request", "broken", "--reason", "key_compromise", "--severity",
                   "critical", "--immediate", "--json")  # fmt: skip
    renew = ("revoke", "request", "app-db", "-r", "key_compromise", "-s", "high", "--immediate",
             "--rotate-after", "--json")  # fmt: skip
    ask = ("revoke", "request", "leaked", "--reason", "security_incident", "--severity", "high",
           "--description", "pasted in chat", "--notify", "sec@example.com", "--json")  # fmt: skip
    broke, renewed_run, asked_run, one_run, two_run = cli.parallel(
        lambda: cli(*break_glass),  # break-glass: revoked within the call
        # --rotate-after: the compromised versions stay revoked, a fresh value is current.
        lambda: cli(*renew),
        lambda: cli(*ask),  # waits for approval
        lambda: cli("revoke", "request", "kept", "-r", "other", "-s", "low", "--json"),
        lambda: cli("revoke", "request", "kept", "-r", "other", "-s", "low", "--json"),
    )
    now = broke.json()
    assert now["status"] == "COMPLETED"
    assert now["break_glass"] is True
    assert now["requested_by"] == ME
    assert renewed_run.json()["versions_revoked"] == 3
    asked = asked_run.json()
    rid = str(asked["revocation_id"])
    assert asked["status"] == "PENDING"
    assert "mail server" in asked_run.stderr
    one, two = str(one_run.json()["revocation_id"]), str(two_run.json()["revocation_id"])
    denied, got, _, own, still, pending, *drawn = cli.parallel(
        lambda: cli("secret", "get", "broken", code=4),
        lambda: cli("secret", "get", "app-db"),
        lambda: cli("secret", "get", "app-db", "--version", rotated["version"], code=4),
        # The requester cannot approve (separation of duties: 4).
        lambda: cli("revoke", "approve", rid, code=4),
        lambda: cli("secret", "get", "leaked"),
        lambda: cli("revoke", "pending", "--json"),
        lambda: cli("revoke", "status", "9999", code=3),
        lambda: cli("revoke", "request", "no-such", "-r", "other", "-s", "low", code=3),
        lambda: cli("rotation", "unregister", "fresh-key", code=3),
        *(
            [lambda: cli("revoke", "pending"), lambda: cli("revoke", "status", rid)]
            if tables
            else []
        ),
    )
    assert denied.stdout == ""
    assert "revoked" in denied.stderr
    fourth = got.stdout
    assert fourth not in (first, second, third)
    assert "own" in own.stderr
    assert still.stdout == leaked
    assert {p["revocation_id"] for p in pending.json()} == {int(x) for x in (rid, one, two)}
    if tables:
        assert "leaked" in drawn[3].stdout
        assert "pasted in chat" in drawn[4].stdout

    # Someone else approves; reject and cancel leave the secret readable.
    approved, rejected, cancelled = cli.parallel(
        lambda: cli("--as", "ciso", "revoke", "approve", rid, "--json"),
        lambda: cli("--as", "ciso", "revoke", "reject", one, "--reason", "false alarm", "--json"),
        lambda: cli("revoke", "cancel", two, "--json"),
    )
    assert approved.json()["status"] == "COMPLETED"
    assert approved.json()["approved_by"] == "ciso"
    assert rejected.json()["status"] == "REJECTED"
    assert rejected.json()["closed_by"] == "ciso"
    assert cancelled.json()["status"] == "CANCELLED"
    gone, _, _, history_run, of_kept, limited, none_pending, kept_now, *drawn = cli.parallel(
        lambda: cli("secret", "get", "leaked", code=4),
        lambda: cli("--as", "ciso", "revoke", "approve", rid, code=1),  # closed
        lambda: cli("revoke", "cancel", two, code=1),
        lambda: cli("revoke", "history", "--json"),
        lambda: cli("revoke", "history", "kept", "--json"),
        lambda: cli("revoke", "history", "--limit", "2", "--json"),
        lambda: cli("revoke", "pending", "--json"),
        lambda: cli("secret", "get", "kept"),
        *([lambda: cli("revoke", "history")] if tables else []),
    )
    assert gone.stdout == ""
    statuses = sorted(r["status"] for r in history_run.json())
    assert statuses == ["CANCELLED", "COMPLETED", "COMPLETED", "COMPLETED", "REJECTED"]
    assert sorted(r["status"] for r in of_kept.json()) == ["CANCELLED", "REJECTED"]
    assert len(limited.json()) == 2
    assert none_pending.json() == []
    assert kept_now.stdout == kept
    if tables:
        assert "break-glass" in drawn[0].stdout

    # -- events ------------------------------------------------------------------------------
    loopback = "http://127.0.0.1:9/hooks/strongroom"
    allow = {"STRONGROOM_WEBHOOK_ALLOW_LOOPBACK": "true"}
    subscribe = ("events", "subscribe", loopback, "-p", "app-*", "-e", "secret.rotated", "-e",
                 "secret.revoked")  # fmt: skip
    metadata, ftp, refused, sub_run, *quiet_sub = cli.parallel(
        lambda: cli("events", "subscribe", "http://169.254.169.254/latest/meta-data", code=2),
        lambda: cli("events", "subscribe", "ftp://x", code=2),
        lambda: cli("events", "subscribe", loopback, code=2),
        lambda: cli(*subscribe, env=allow),
        *([lambda: cli("-q", "events", "subscribe", loopback, env=allow)] if tables else []),
    )
    assert "metadata" in metadata.stderr
    assert "http" in ftp.stderr
    assert "loopback" in refused.stderr
    assert "secret.revoked, secret.rotated" in sub_run.stdout
    assert "shown only this once" in sub_run.stderr
    key = sub_run.stdout.split("signing key: ")[1].split()[0]
    assert len(key) == 44  # base64 of 32 bytes
    listed = {s["pattern"]: s for s in cli("events", "list", "--json").json()}
    assert listed["app-*"]["events"] == ["secret.revoked", "secret.rotated"]
    assert listed["app-*"]["created_by"] == ME
    assert "signing_key" not in listed["app-*"]
    if tables:
        quiet_key = quiet_sub[0].stdout
        assert quiet_key.strip() != key
        assert quiet_key.count("\n") == 1
        assert "127.0.0.1" in cli("events", "list").stdout
    ids = sorted(str(s["id"]) for s in listed.values())
    cli.parallel(
        *(lambda i=i: cli("events", "unsubscribe", i) for i in ids),
        lambda: cli("secret", "create", "expiring", "-", "--expires-in-days", "2", stdin=plain),
    )
    _, none_left, expiry = cli.parallel(
        lambda: cli("events", "unsubscribe", ids[0], code=3),
        lambda: cli("events", "list", "--json"),
        lambda: cli("events", "check-expiry", "--json"),
    )
    assert none_left.json() == []
    assert expiry.json() == {"sent": 1}

    # Nothing but `secret get` ever printed a value; the signing key only where it was made.
    assert cli.leaks(first, second, third, fourth, plain, leaked, kept, broken) == []
    assert [r.args for r in cli.runs if key in r.stdout + r.stderr] == [sub_run.args]


def test_generator_choices_and_options() -> None:
    assert {g.value for g in Generator} == set(GENERATORS)
    assert parse_options("password", ["length=20", "alphabet=abcdefghijk"]) == {
        "length": 20,
        "alphabet": "abcdefghijk",
    }
    assert parse_options("raw_key", ["bytes=48", "encoding=hex"]) == {
        "bytes": 48,
        "encoding": "hex",
    }
    assert parse_options("api_key", ["prefix=123"]) == {"prefix": "123"}  # text stays text
    for bad in (["length"], ["=1"], ["size=3"], ["length=x"]):
        with pytest.raises(UsageError):
            parse_options("password", bad)
