"""``secret import|export`` with the real command: a 1,000-line .env file, then an encrypted
export re-imported into an empty store, on the embedded default and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from clirun import Cli, make_cli

from helpers_settings import drop_schema

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return make_cli(request.param, tmp_path / "home", schema)


def env_file(lines: int) -> tuple[str, dict[str, str]]:
    """A .env file of exactly ``lines`` lines in every style the parser takes, and the secrets
    (strongroom names -> values) it holds."""
    out: list[str] = []
    expected: dict[str, str] = {}
    i = 0
    while len(out) < lines:
        token = secrets.token_hex(6)
        key = f"SVC_{i:04d}_KEY"
        name = key.replace("_", "-")
        style = i % 8
        if style == 0:
            out.append(f"{key}=plain-{token}")
            expected[name] = f"plain-{token}"
        elif style == 1:
            out.append(f"export {key}='single # not a comment {token}'")
            expected[name] = f"single # not a comment {token}"
        elif style == 2:
            out.append(f'{key}="dq \\"quoted\\" \\t tab \\\\ {token}"  # a comment')
            expected[name] = f'dq "quoted" \t tab \\ {token}'
        elif style == 3 and len(out) <= lines - 2:
            out += [f'{key}="first line {token}', 'second line"']
            expected[name] = f"first line {token}\nsecond line"
        elif style == 4:
            out.append(f"{key} = spaced-{token}   # trailing comment")
            expected[name] = f"spaced-{token}"
        elif style == 5:
            out.append(f"{key}=café-ü-✓-{token}")
            expected[name] = f"café-ü-✓-{token}"
        elif style == 6:
            out.append("# a comment line" if i % 16 == 6 else "")
        else:
            out.append(f'{key}="{{\\"k\\": \\"{token}\\"}}"')
            expected[name] = f'{{"k": "{token}"}}'
        i += 1
    assert len(out) == lines
    return "\n".join(out) + "\n", expected


def plain_export(cli: Cli) -> dict[str, dict[str, object]]:
    run = cli("secret", "export", "--plain", "--format", "json")
    assert "unencrypted" in run.stderr
    document = json.loads(run.stdout)
    assert document["format"] == "strongroom-secrets/1"
    return {s["name"]: s for s in document["secrets"]}


def test_import_1000_line_env_then_encrypted_round_trip(cli: Cli, tmp_path: Path) -> None:
    text, expected = env_file(1000)
    source = tmp_path / "fleet.env"
    source.write_text(text, encoding="utf-8")
    cli("init", "-q")

    report = cli("secret", "import", str(source), "--tag", "source=fleet-env", "--json").json()
    assert report["created"] == len(expected)
    assert report["failed"] == []
    assert report["renamed"]["SVC_0000_KEY"] == "SVC-0000-KEY"
    assert len(report["renamed"]) == len(expected)

    # Importing again: fail (the default) writes nothing; skip and update say what they did.
    again = cli("secret", "import", str(source), code=1)
    assert "already in use" in again.stderr
    assert "nothing was imported" in again.stderr
    skipped = cli("secret", "import", str(source), "--on-conflict", "skip", "--json").json()
    assert (skipped["skipped"], skipped["created"]) == (len(expected), 0)
    changed = f"changed-{secrets.token_hex(6)}"
    updated = cli("secret", "import", "-", "--on-conflict", "update", "--json",
                  stdin=json.dumps({"SVC_0000_KEY": changed})).json()  # fmt: skip
    assert (updated["updated"], updated["created"]) == (1, 0)
    expected["SVC-0000-KEY"] = changed

    first = plain_export(cli)
    assert {name: s["value"] for name, s in first.items()} == expected
    assert all(s["tags"] == {"source": "fleet-env"} for s in first.values())

    # Encrypted export (the default), passphrase from the environment.
    sealed = tmp_path / "export.json"
    env = {"STRONGROOM_EXPORT_PASSPHRASE": PASSPHRASE}
    cli("secret", "export", "-o", str(sealed), env=env)
    assert sealed.stat().st_mode & 0o777 == 0o600
    envelope = json.loads(sealed.read_text())
    assert envelope["format"] == "strongroom-export/1"
    assert envelope["kdf"] == {
        **envelope["kdf"], "name": "argon2id", "iterations": 3, "memory_kib": 65536, "lanes": 4
    }  # fmt: skip
    weak = tmp_path / "weak.json"
    weak_env = {**env, "STRONGROOM_EXPORT_PASSPHRASE": "x"}
    refused = cli("secret", "export", "-o", str(weak), env=weak_env, code=2)
    assert "passphrase" in refused.stderr
    assert not weak.exists()
    cli("secret", "export", "-o", str(sealed), env=env, code=2)  # exists: needs --force

    fresh = reimport_into_empty_store(cli, sealed, tmp_path, expected=len(expected))
    assert fresh.exported == first  # values, types, content types, tags, expiry

    values = list(expected.values())
    assert cli.leaks(*values) == []
    assert fresh.cli.leaks(*values) == []
    assert not any(v in sealed.read_text() for v in values)


@dataclass
class Reimported:
    cli: Cli
    exported: dict[str, dict[str, object]]


def reimport_into_empty_store(
    cli: Cli, sealed: Path, tmp_path: Path, *, expected: int
) -> Reimported:
    """Import an encrypted export into an empty store of the same kind (a wrong passphrase and
    a broken file first: neither writes anything), and export it again in plain JSON."""
    schema = f"{cli.env['STRONGROOM_PG_SCHEMA']}_b" if cli.store == "postgres" else None
    fresh = make_cli(cli.store, tmp_path / "fresh", schema)
    try:
        fresh("init", "-q")
        wrong = fresh("secret", "import", str(sealed),
                      env={"STRONGROOM_EXPORT_PASSPHRASE": "not it"}, code=1)  # fmt: skip
        assert "cannot decrypt" in wrong.stderr
        broken = tmp_path / "broken.env"
        broken.write_text("GOOD=1\nthis is not a pair\nEMPTY=\n")
        bad = fresh("secret", "import", str(broken), code=2)
        assert "line 2" in bad.stderr
        assert "line 3" in bad.stderr
        assert fresh("secret", "list", "--json").json() == []  # neither wrote anything
        passphrase_file = tmp_path / "passphrase"
        passphrase_file.write_text(PASSPHRASE + "\n")
        done = fresh("secret", "import", str(sealed), "--passphrase-file", str(passphrase_file),
                     "--json").json()  # fmt: skip
        assert (done["format"], done["created"]) == ("encrypted", expected)
        return Reimported(fresh, plain_export(fresh))
    finally:
        if schema is not None:
            asyncio.run(drop_schema(schema))
