"""Break-glass reviews with the real ``strongroom`` command (embedded default): `revoke pending`
shows the open review, the responder cannot acknowledge it (exit 4), someone else does with a
note, and `revoke reviews --all` keeps the record."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

from clirun import make_cli

ME = f"{getpass.getuser()}@{socket.gethostname()}"


def test_break_glass_is_reviewed_on_the_command_line(tmp_path: Path) -> None:
    cli = make_cli("sqlite", tmp_path / "home")
    cli("init", "-q")
    cli("secret", "create", "radio-key", "-", "-q", stdin="leaked-value")
    used = cli(
        "revoke", "request", "radio-key", "-r", "key_compromise", "-s", "critical",
        "--immediate", "--json",
    ).json()  # fmt: skip
    rid = str(used["revocation_id"])
    pending, listed, own, empty, status = cli.parallel(
        lambda: cli("revoke", "pending", env={"COLUMNS": "200"}),
        lambda: cli("revoke", "reviews", "--json"),
        lambda: cli("revoke", "acknowledge", rid, "--note", "mine", code=4),
        lambda: cli("--as", "ciso", "revoke", "acknowledge", rid, "--note", " ", code=2),
        lambda: cli("revoke", "status", rid, env={"COLUMNS": "200"}),
    )
    assert "open, due in" in status.stdout
    assert "break-glass uses waiting for review" in pending.stdout
    assert "radio-key" in pending.stdout
    assert "open" in pending.stdout
    assert [(r["revocation_id"], r["used_by"], r["status"]) for r in listed.json()] == [
        (int(rid), ME, "OPEN")
    ]
    assert "their own break-glass use" in own.stderr
    assert "note" in empty.stderr
    done = cli("--as", "ciso", "revoke", "acknowledge", rid, "--note", "leak confirmed", "--json")
    assert (done.json()["acknowledged_by"], done.json()["note"]) == ("ciso", "leak confirmed")
    after, every = cli.parallel(
        lambda: cli("revoke", "reviews"),
        lambda: cli("revoke", "reviews", "--all", "--json"),
    )
    assert "No break-glass review is open" in after.stdout
    assert [r["status"] for r in every.json()] == ["ACKNOWLEDGED"]
    assert cli.leaks("leaked-value") == []
