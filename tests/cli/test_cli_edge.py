"""``strongroom edge`` on the command line: usage refusals before anything opens."""

from __future__ import annotations

from pathlib import Path

from clirun import Cli, make_cli


def test_the_edge_needs_an_upstream_a_scope_and_a_credential(tmp_path: Path) -> None:
    cli: Cli = make_cli("sqlite", tmp_path)
    no_upstream = cli("edge", "--scope", "dn-*", code=2)
    assert "--upstream" in no_upstream.stderr
    no_scope = cli("edge", "--upstream", "https://central.example:8200", code=2)
    assert "--scope" in no_scope.stderr
    no_token = cli("edge", "--upstream", "https://central.example:8200", "--scope", "d*", code=1)
    assert "STRONGROOM_EDGE_TOKEN" in no_token.stderr
    assert not (tmp_path / "strongroom.db").exists()
