"""A whole session with the real ``strongroom`` command, on the embedded default and PostgreSQL.

One test per store runs many commands in a row: subprocess start-up is the cost, so the
lifecycle, every read command's ``--json``, the exit codes and the search for leaked values
share one store.
"""

from __future__ import annotations

import getpass
import secrets
import socket
from pathlib import Path

import pytest
from clirun import Cli, make_cli


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return make_cli(request.param, tmp_path / "home", schema)


def _value(label: str) -> str:
    return f"{label}-{secrets.token_hex(8)}"


def test_full_lifecycle_json_exit_codes_and_no_leaks(  # noqa: PLR0915 (one session on purpose)
    cli: Cli, tmp_path: Path
) -> None:
    first, second, from_file, argv_value = (_value(x) for x in ("first", "second", "file", "argv"))
    # Tables are drawn the same whatever the store: draw them on one store only (time).
    tables = cli.store == "sqlite"

    # init: data directory, key file 0600 (the cluster profile makes it there too), schema.
    report = cli("init", "--json").json()
    assert report["profile"] == cli.store
    assert report["key_file_created"] is True
    key_file = cli.home / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert cli("init", "--json").json()["key_file_created"] is False  # idempotent

    # create: stdin, file, --value (warned); bare arguments: test_cli_help_and_errors.py.
    cli("secret", "create", "api-key", "-", "--type", "api_key", "--tag", "env=prod",
        "--tag", "team=dispatch", "--expires-in-days", "30", stdin=first + "\n")  # fmt: skip
    secret_file = tmp_path / "value.txt"
    secret_file.write_text(from_file)
    cli("secret", "create", "db-pass", "--from-file", str(secret_file),
        "--content-type", "text/plain")  # fmt: skip
    warned = cli("secret", "create", "throwaway", "--value", argv_value)
    assert "warning" in warned.stderr
    assert "--value" in warned.stderr

    # get: the bare value and nothing else (the trailing newline from stdin was dropped).
    got, got_file, as_json = cli.parallel(
        lambda: cli("secret", "get", "api-key"),
        lambda: cli("secret", "get", "db-pass"),
        lambda: cli("secret", "get", "api-key", "--json"),
    )
    assert got.stdout == first
    assert got.stderr == ""
    assert got_file.stdout == from_file
    assert as_json.json()["value"] == first
    assert as_json.json()["name"] == "api-key"

    # update makes a version; versions, show and list describe them without values.
    cli("secret", "update", "api-key", "-", stdin=second)
    got, versions_run, shown_run, listed_run, tagged_run, *drawn = cli.parallel(
        lambda: cli("secret", "get", "api-key"),
        lambda: cli("secret", "versions", "api-key", "--json"),
        lambda: cli("secret", "show", "api-key", "--json"),
        lambda: cli("secret", "list", "--json"),
        lambda: cli("secret", "list", "--tag", "env=prod", "--json"),
        *(
            [
                lambda: cli("secret", "list"),
                lambda: cli("secret", "show", "api-key"),
                lambda: cli("secret", "versions", "api-key"),
            ]
            if tables
            else []
        ),
    )
    assert got.stdout == second
    versions = versions_run.json()
    assert len(versions) == 2
    assert versions[0]["current"]
    assert not versions[1]["current"]
    assert versions[1]["expires_at"] is not None
    shown = shown_run.json()
    assert shown["secret_type"] == "api_key"
    assert shown["metadata"] == {"env": "prod", "team": "dispatch"}
    assert shown["expires_at"] is None  # a new version has only the expiry it is given
    assert [s["name"] for s in listed_run.json()] == ["api-key", "db-pass", "throwaway"]
    assert [s["name"] for s in tagged_run.json()] == ["api-key"]
    if tables:
        assert "api-key" in drawn[0].stdout
        assert "db-pass" in drawn[0].stdout
        assert "dispatch" in drawn[1].stdout
        assert versions[1]["version"] in drawn[2].stdout
    old = versions[1]["version"]
    assert cli("secret", "get", "api-key", "--version", old).stdout == first

    # disable / enable: a disabled secret exists but cannot be read (exit 1).
    cli("secret", "disable", "api-key", "-q")
    disabled = cli("secret", "get", "api-key", code=1)
    assert "disabled" in disabled.stderr
    assert disabled.stdout == ""
    cli("secret", "enable", "api-key")
    assert cli("secret", "get", "api-key").stdout == second

    # delete / deleted / recover / purge.
    cli("secret", "delete", "db-pass")
    assert cli("secret", "get", "db-pass", code=3).stdout == ""
    deleted = cli("secret", "deleted", "--json").json()
    assert [d["name"] for d in deleted] == ["db-pass"]
    if tables:
        assert "db-pass" in cli("secret", "deleted").stdout
    cli("secret", "recover", "db-pass")
    assert cli("secret", "get", "db-pass").stdout == from_file
    cli("secret", "delete", "throwaway")
    cli("secret", "purge", "throwaway", code=2)  # destroys data: asks, and nobody can answer
    cli("secret", "purge", "throwaway", "--yes")
    cli("secret", "purge", "throwaway", "--yes", code=3)
    cli("secret", "delete", "db-pass", "--purge", "--yes", "--json")

    # Exit codes for not found and bad input.
    missing, *_ = cli.parallel(
        lambda: cli("secret", "get", "no-such-secret", code=3),
        lambda: cli("secret", "show", "no-such-secret", code=3),
        lambda: cli("secret", "versions", "no-such-secret", code=3),
        lambda: cli("secret", "get", "bad_name", code=2),
        lambda: cli("secret", "get", "api-key", "--version", "not-hex", code=2),
        lambda: cli("secret", "create", "api-key", "-", stdin="dup", code=1),  # name in use
    )
    assert missing.stderr.count("\n") == 1
    assert "Traceback" not in missing.stderr

    # Key rotation re-wraps every data key; values still read.
    rotated = cli("key", "rotate", "--json").json()
    assert rotated["key_version"] == 2
    assert rotated["rewrapped"] == 2
    assert cli("secret", "get", "api-key").stdout == second

    # The actor: the OS user at this host, or --as NAME, with the CLI's user agent.
    cli("--as", "alice", "secret", "get", "api-key")
    trail = cli("audit", "trail", "--secret", "api-key", "--action", "read", "--json").json()
    assert trail[0]["actor_id"] == "alice"
    assert trail[0]["actor_user_agent"].startswith("strongroom-cli/")
    assert trail[1]["actor_id"] == f"{getpass.getuser()}@{socket.gethostname()}"
    exported = tmp_path / "audit.jsonl"
    failures_run, everything_run, summary_run, threats_run, verified_run, status_run, *drawn = (
        cli.parallel(
            lambda: cli("audit", "trail", "--result", "failure", "--since", "1h", "--json"),
            lambda: cli("audit", "trail", "-n", "10000", "--json"),
            lambda: cli("audit", "summary", "--json"),
            lambda: cli("audit", "threats", "--json"),
            lambda: cli("audit", "verify", "--json"),
            lambda: cli("status", "--json", "--verify"),
            lambda: cli("audit", "export", "-o", str(exported)),
            *(
                [
                    lambda: cli("audit", "threats"),
                    lambda: cli("audit", "verify"),
                    lambda: cli("status"),
                    lambda: cli("audit", "trail", "-n", "5"),
                    lambda: cli("audit", "summary", "--secret", "api-key"),
                ]
                if tables
                else []
            ),
        )
    )
    failures, everything, summary = failures_run.json(), everything_run.json(), summary_run.json()
    threats, verified, status = threats_run.json(), verified_run.json(), status_run.json()
    assert {"not_found", "disabled", "deleted"} <= {e["error_code"] for e in failures}
    assert summary["total_events"] == len(everything) == verified["checked"]
    assert summary["by_action"]["READ"] >= 8
    assert threats["threats_detected"] == len(threats["threats"]) >= 1
    assert any(t["type"] == "unavailable_secret_access" for t in threats["threats"])
    assert verified["valid"] is True
    assert exported.stat().st_mode & 0o777 == 0o600
    assert len(exported.read_text().splitlines()) == verified["checked"]
    cli("audit", "export", "-o", str(exported), code=2)  # exists: needs --force
    assert status["profile"] == cli.store
    assert status["health"] == "ok"
    assert status["secrets"] == 1
    assert status["key_version"] == 2
    assert status["audit_chain"]["valid"] is True
    if tables:
        assert "unavailable_secret_access" in drawn[1].stdout
        assert "intact" in drawn[2].stdout
        assert "key version" in drawn[3].stdout
        assert "KEY_ROTATE" in drawn[4].stdout
        assert "api-key" in drawn[5].stdout

    if cli.store == "postgres":
        # Another host's init with a new key against this schema: denied, and no stray key left.
        stranger = make_cli("postgres", tmp_path / "stranger", cli.env["STRONGROOM_PG_SCHEMA"])
        stranger("init", code=4)
        assert not (tmp_path / "stranger" / "master.key").exists()

    # Nothing but `secret get` ever printed a value.
    assert cli.leaks(first, second, from_file) == []
    key_text = key_file.read_text().strip()
    assert cli.leaks(key_text) == []


def test_wrong_master_key_is_denied(tmp_path: Path) -> None:
    cli = make_cli("sqlite", tmp_path / "home")
    cli("init", "-q")
    cli("secret", "create", "a", "-", stdin="x")
    other = make_cli("sqlite", tmp_path / "home")
    other.env["STRONGROOM_MASTER_KEY"] = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    denied = other("secret", "get", "a", code=4)
    assert "master key" in denied.stderr
    (tmp_path / "home" / "master.key").chmod(0o644)
    insecure = cli("secret", "get", "a", code=4)
    assert "chmod 600" in insecure.stderr
