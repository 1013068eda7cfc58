"""The command line without rough edges: each test here is a defect a new user hit.

CLI behaviour does not depend on the store, so these run on the embedded default only (the
lifecycle tests cover PostgreSQL); commands that do not depend on each other run side by side.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest
from clirun import Cli, make_cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    cli = make_cli("sqlite", tmp_path / "home")
    cli("init", "-q")
    return cli


def _create(cli: Cli, name: str, value: str | None = None) -> str:
    """Create ``name``; the version id the CLI printed (8 characters)."""
    out = cli("secret", "create", name, "-", stdin=value or secrets.token_hex(8)).stdout
    match = re.search(r"\(version ([0-9a-f]{8})\)", out)
    assert match, out
    return match.group(1)


def test_recover_and_purge_of_a_live_secret_say_it_is_live(cli: Cli) -> None:
    _create(cli, "live-one")
    recover, purge_yes, purge_ask = cli.parallel(
        lambda: cli("secret", "recover", "live-one", code=1),
        lambda: cli("secret", "purge", "live-one", "--yes", code=1),
        # Without --yes (and no terminal to ask on): the state is checked before asking.
        lambda: cli("secret", "purge", "live-one", code=1),
    )
    for run in (recover, purge_yes, purge_ask):
        assert "is live, not deleted" in run.stderr
        assert "not found" not in run.stderr
    assert "terminal" not in purge_ask.stderr
    cli("secret", "get", "live-one")  # still there


def test_purge_of_an_unknown_name_says_not_found_before_asking(cli: Cli) -> None:
    purge, delete_purge = cli.parallel(
        lambda: cli("secret", "purge", "never-was", code=3),
        lambda: cli("secret", "delete", "never-was", "--purge", code=3),
    )
    for run in (purge, delete_purge):
        assert "not found" in run.stderr
        assert "terminal" not in run.stderr


def test_the_printed_short_version_is_accepted_everywhere(cli: Cli) -> None:
    first_value = secrets.token_hex(8)
    short = _create(cli, "short-ids", first_value)
    cli("secret", "update", "short-ids", "-", stdin=secrets.token_hex(8))
    got = cli("secret", "get", "short-ids", "--version", short).stdout
    assert got == first_value
    shown = cli("secret", "show", "short-ids", "--version", short, "--json").json()
    assert shown["version"].startswith(short)
    assert len(shown["version"]) == 32
    disabled = cli("secret", "disable", "short-ids", "--version", short, "--json").json()
    assert disabled["version"] == shown["version"]
    assert disabled["enabled"] is False
    too_short = cli("secret", "get", "short-ids", "--version", short[:7], code=2)
    assert "at least 8" in too_short.stderr


def test_every_command_naming_something_missing_exits_3(cli: Cli) -> None:
    commands = [
        ("secret", "get", "nope"),
        ("secret", "show", "nope"),
        ("secret", "versions", "nope"),
        ("secret", "disable", "nope"),
        ("secret", "delete", "nope"),
        ("secret", "recover", "nope"),
        ("rotation", "status", "nope"),
        ("rotation", "history", "nope"),
        ("rotation", "rotate", "nope"),
        ("revoke", "history", "nope"),
        ("revoke", "status", "999"),
        ("revoke", "cancel", "999"),
        ("events", "unsubscribe", "999"),
        ("token", "revoke", "0000000000000000"),
        ("token", "create", "bob", "--policy", "nosuchpolicy"),
        ("policy", "attach", "nosuchpolicy", "bob"),
        ("policy", "delete", "nosuchpolicy"),
    ]
    runs = cli.parallel(*(lambda args=args: cli(*args, code=None) for args in commands))
    wrong = [(run.args, run.code, run.stderr.strip()) for run in runs if run.code != 3]
    assert wrong == []


def test_a_bad_name_in_a_search_is_bad_input(cli: Cli) -> None:
    run = cli("audit", "trail", "--secret", "bad name", code=2)
    assert "name" in run.stderr
    # A valid name nobody used is an empty search result, not an error.
    assert cli("audit", "trail", "--secret", "unused-name", "--json").json() == []


def test_secret_list_folds_a_127_character_name(cli: Cli) -> None:
    long_name = "a" * 127
    _create(cli, long_name)
    cli("secret", "create", "tagged", "-", "--type", "api_key", "--tag", "env=prod",
        stdin="v")  # fmt: skip
    table = cli("secret", "list", env={"COLUMNS": "100"}).stdout
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "api_key" in table
    assert "env=prod" in table
    assert table.count("generic") == 1  # the long name's row keeps its other columns
    assert "".join(re.findall(r"a{10,}", table)) == long_name  # folded, not cut


def test_library_log_lines_show_only_with_verbose(cli: Cli) -> None:
    _create(cli, "quiet-one")
    _create(cli, "loud-one")
    quiet = cli("revoke", "request", "quiet-one", "--reason", "key_compromise",
                "--severity", "critical", "--immediate")  # fmt: skip
    assert "{" not in quiet.stderr
    assert "Revoked now" in quiet.stdout
    loud = cli("-v", "revoke", "request", "loud-one", "--reason", "key_compromise",
               "--severity", "critical", "--immediate")  # fmt: skip
    events = [json.loads(line)["event"] for line in loud.stderr.splitlines() if line]
    assert "secret revoked" in events


def test_a_token_that_could_do_nothing_is_refused(cli: Cli) -> None:
    refused = cli("token", "create", "nobody", code=2)
    assert "--policy" in refused.stderr
    assert cli("token", "list", "--json").json() == []  # nothing issued
    ttl = cli("token", "create", "ops", "--policy", "admin", "--ttl-days", "0", code=2)
    assert "--ttl-days" in ttl.stderr
    assert "second" not in ttl.stderr
    cli("policy", "attach", "auditor", "reviewer")
    issued = cli("token", "create", "reviewer").stdout  # a bound identity needs no --policy
    assert issued.startswith("srt_")


def test_errors_under_json_are_json_with_the_same_exit_codes(cli: Cli) -> None:
    cases = [
        (("secret", "get", "nope"), 3, "not_found"),
        (("secret", "create", "bad name", "-"), 2, "bad_parameter"),
        (("secret", "nosuchcommand"), 2, "usage"),
        (("rotation", "history", "nope"), 3, "rotation_not_configured"),
    ]
    for args, code, error_code in cases:
        plain = cli(*args, code=code, stdin="v")
        assert plain.stderr.strip()
        for flagged in (("--json", *args), (*args, "--json")):
            if flagged[-1] == "--json" and args[1] == "nosuchcommand":
                continue  # the option would belong to a command that does not exist
            run = cli(*flagged, code=code, stdin="v")
            error = json.loads(run.stderr)["error"]
            assert error["code"] == error_code
            assert error["message"]


def test_shell_completion_for_bash_zsh_and_fish(cli: Cli) -> None:
    bash = cli(env={"_STRONGROOM_COMPLETE": "complete_bash", "COMP_WORDS": "strongroom sec",
                    "COMP_CWORD": "1"})  # fmt: skip
    assert bash.stdout.split() == ["secret"]
    zsh = cli(env={"_STRONGROOM_COMPLETE": "complete_zsh",
                   "_TYPER_COMPLETE_ARGS": "strongroom rotation his"})  # fmt: skip
    assert '"history"' in zsh.stdout
    fish = cli(env={"_STRONGROOM_COMPLETE": "complete_fish",
                    "_TYPER_COMPLETE_ARGS": "strongroom secret ge",
                    "_TYPER_COMPLETE_FISH_ACTION": "get-args"})  # fmt: skip
    assert fish.stdout.startswith("get\t")
    assert "--install-completion" in cli("--help").stdout


def test_help_is_honest_about_values_on_the_command_line(cli: Cli) -> None:
    text = " ".join(cli("secret", "create", "--help").stdout.split())
    assert "never taken from the command line" not in text
    assert "--value" in text
