"""``strongroom report`` and ``strongroom rotation recommend`` as a person or a cron job runs
them: a signed report written and verified, a changed one refused, recommendations as JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import Cli, make_cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The embedded profile: the report's queries run on PostgreSQL in tests/test_reports.py."""
    return make_cli("sqlite", tmp_path / "home", None)


def test_report_written_verified_and_tampering_refused(cli: Cli, tmp_path: Path) -> None:
    cli("init")
    cli("secret", "create", "fleet-db", "-", "--type", "database_credential", stdin="pw")
    cli("secret", "get", "fleet-db")
    out = tmp_path / "soc2.html"
    done = cli("report", "compliance", "--framework", "soc2",
               "--format", "html", "-o", str(out))  # fmt: skip
    assert "Wrote a signed html report" in done.stdout
    assert "fleet-db" in out.read_text()
    checked = cli("--json", "report", "verify", str(out)).json()
    assert checked["valid"] is True
    assert checked["format"] == "html"
    pem = tmp_path / "report-key.pem"
    pem.write_text(cli("report", "public-key").stdout)
    cli("report", "verify", str(out), "--public-key", str(pem))
    out.write_text(out.read_text().replace("fleet-db", "fleet-dc", 1))
    refused = cli("report", "verify", str(out), code=1)
    assert "was changed" in refused.stderr
    bad = cli("report", "compliance", "--framework", "iso", code=2)
    assert "unknown framework" in bad.stderr


def test_rotation_recommend_json(cli: Cli) -> None:
    cli("init")
    cli("secret", "create", "api-a", "-", "--type", "api_key", stdin="v")
    found = cli("--json", "rotation", "recommend").json()
    assert [(r["name"], r["policy_days"], r["recommended_days"], r["level"]) for r in found] == [
        ("api-a", 90, 90, "low")]  # fmt: skip
