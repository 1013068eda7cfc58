"""``strongroom operator init/status/unseal/seal`` against a real ``strongroom serve`` started
sealed (the cluster profile on PostgreSQL), shares given from separate processes."""

from __future__ import annotations

import itertools
from pathlib import Path

from clirun import make_cli
from pyrage import x25519
from servedproc import serving

from helpers_hsm import USER_PIN, hsm_changes


def test_operator_ceremony_on_the_cluster_profile(tmp_path: Path, pg_schema: str) -> None:
    cli = make_cli("postgres", tmp_path, pg_schema)
    cli.env["STRONGROOM_SEAL"] = "shamir"
    init = cli("operator", "init", "--key-shares", "3", "--key-threshold", "2", "--json").json()
    shares, token = init["shares"], init["admin_token"]
    assert (len(shares), init["threshold"], init["new_key"]) == (3, 2, True)
    again = cli("operator", "init", code=None)
    assert again.code == 1
    assert "already initialised" in again.stderr
    # Local commands cannot open the store without the quorum.
    assert "quorum" in cli("secret", "list", code=None).stderr

    with serving(cli.env) as served:
        addr = ("--addr", served.base_url)
        assert "0 of 2 shares given" in cli("operator", "status", *addr).stdout
        first = cli("operator", "unseal", *addr, stdin=shares[2] + "\n")
        assert "1 of 2 shares given" in first.stdout
        dup = cli("operator", "unseal", *addr, stdin=shares[2] + "\n", code=4)
        assert "[duplicate_share]" in dup.stderr
        assert "Unsealed." in cli("operator", "unseal", *addr, stdin=shares[0] + "\n").stdout
        refused = cli("operator", "seal", *addr, "--token", "nope", code=4)
        assert "[unauthorized]" in refused.stderr
        assert "Sealed" in cli("operator", "seal", *addr, "--token", token).stdout
        assert cli("operator", "status", *addr, "--json").json()["sealed"] is True
        log = served.log()
    words = [w for s in shares for w in s.split()]
    pairs = {f"{a} {b}" for a, b in itertools.pairwise(words)}
    assert not [p for p in pairs if p in log]
    assert not [run.args for run in cli.runs[1:] for p in pairs if p in run.stdout + run.stderr]


def test_status_warns_when_a_cluster_key_is_a_plain_file(tmp_path: Path, pg_schema: str) -> None:
    cluster = make_cli("postgres", tmp_path / "cluster", pg_schema)
    cluster("init")
    status = cluster("status")  # advice, not a fault: exit code 0
    assert "warning: this cluster deployment's master key comes from a plain key file" in (
        status.stderr
    )
    assert cluster("status", "--json").json()["custody_warnings"]
    embedded = make_cli("sqlite", tmp_path / "embedded")
    embedded("init")
    quiet = embedded("status")
    assert "warning" not in quiet.stderr
    assert embedded("status", "--json").json()["custody_warnings"] == []


def test_shares_encrypted_to_their_holders(tmp_path: Path) -> None:
    cli = make_cli("sqlite", tmp_path)
    cli.env["STRONGROOM_SEAL"] = "shamir"
    holders = [x25519.Identity.generate() for _ in range(3)]
    files = []
    for i, holder in enumerate(holders):
        files.append(tmp_path / f"holder-{i}.txt")
        files[-1].write_text(f"# holder {i}\n{holder}\n")
    keys = [arg for h in holders for arg in ("--holder-key", str(h.to_public()))]
    bad = cli("operator", "init", "--key-shares", "3", "--key-threshold", "2",
              *keys[:-1], "age1nope", code=2)  # fmt: skip
    assert "holder key 3 is not an age public key" in bad.stderr
    init = cli("operator", "init", "--key-shares", "3", "--key-threshold", "2", *keys, "--json")
    sealed = init.json()["shares"]  # nothing was made by the refused run: this init works
    assert all(s.startswith("-----BEGIN AGE ENCRYPTED FILE-----") for s in sealed)
    with serving(cli.env) as served:
        addr = ("--addr", served.base_url)
        wrong = cli("operator", "unseal", *addr, "--identity", str(files[1]), stdin=sealed[0],
                    code=4)  # fmt: skip
        assert "does not open with this identity" in wrong.stderr
        first = cli("operator", "unseal", *addr, "--identity", str(files[0]), stdin=sealed[0])
        assert "1 of 2 shares given" in first.stdout
        done = cli("operator", "unseal", *addr, "--identity", str(files[2]), stdin=sealed[2])
        assert "Unsealed." in done.stdout


def test_the_command_line_unseals_itself_with_the_hsm(tmp_path: Path, pg_schema: str) -> None:
    changes = hsm_changes()
    cli = make_cli("postgres", tmp_path, pg_schema)  # after the token: SOFTHSM2_CONF is set
    cli.env.update(
        STRONGROOM_SEAL="pkcs11",
        STRONGROOM_PKCS11_LIBRARY=str(changes["pkcs11_library"]),
        STRONGROOM_PKCS11_TOKEN_LABEL=str(changes["pkcs11_token_label"]),
        STRONGROOM_PKCS11_PIN=USER_PIN,
        STRONGROOM_PKCS11_KEY_LABEL=str(changes["pkcs11_key_label"]),
    )
    assert cli("operator", "init", "--json").json()["seal"] == "pkcs11"
    cli("secret", "create", "app-hsm", "--value", "sealed-by-hsm")
    assert cli("secret", "get", "app-hsm").stdout.strip() == "sealed-by-hsm"
    status = cli("status", "--json").json()
    assert status["master_key"].startswith("HSM (PKCS#11 token")
    assert status["custody_warnings"] == []
    refused = cli("status", env={"STRONGROOM_PKCS11_PIN": "9999-wrong"}, code=1)
    assert "the HSM refused the PIN" in refused.stderr
    assert "9999-wrong" not in refused.stderr + refused.stdout
