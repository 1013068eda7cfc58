"""Compliance reports: what they state, their signatures, and the PDF as a person sees it."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from strongroom import SecretsManager, SecretType, Strongroom
from strongroom.core.actor import acting_as
from strongroom.core.clock import ManualClock
from strongroom.core.errors import PermissionDeniedError, ReportSignatureError, ValidationError
from strongroom.core.policy import Action, Policy
from strongroom.core.revocation import RevocationRequest
from strongroom.core.rotation import RotationConfig
from strongroom.services.reports.collect import collect
from strongroom.services.reports.render import render
from strongroom.services.reports.signing import ReportSigner, load_public_key, verify_document
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke
from strongroom.services.rotation.secrets_rotation import SecretsRotation

pytestmark = pytest.mark.stores("sqlite", "postgres")


async def scenario(app: Strongroom, clock: ManualClock) -> dict[str, Any]:
    manager = SecretsManager(app)
    with acting_as("deploy-bot", ip="10.0.0.7"):
        await manager.create_secret("stale-key", "v", SecretType.API_KEY)
        await manager.create_secret("fleet-db", "v", SecretType.DATABASE_CREDENTIAL)
    clock.advance(days=100)  # stale-key is now past its 90-day policy
    rotation = SecretsRotation(app)
    await rotation.register_secret(RotationConfig(name="fleet-db", rotation_days=60,
                                                  generator="password"))  # fmt: skip
    await rotation.rotate_secret("fleet-db", force=True)
    await app.access.put_policy(Policy.build("ops", ["read,list:fleet-*", "write:stale-*"]))
    reader = await app.access.create_token("svc-fleet", policies=["ops"])
    idle = await app.access.create_token("svc-idle", policies=["ops"])
    never = await app.access.create_token("svc-never", ttl=timedelta(days=30))
    await app.access.attach("root-ops", "admin")  # every action: every audit action counts
    with acting_as("svc-fleet", ip="10.0.1.1"):
        await manager.get_secret("fleet-db")
    principal = await app.access.authenticate(idle.token)
    with acting_as("svc-idle", ip="203.0.113.9"), pytest.raises(PermissionDeniedError):
        await app.access.require(principal, Action.READ, "stale-key")
    revoke = EmergencyRevoke(app)
    with acting_as("alice"):
        made = await revoke.request_revocation(RevocationRequest(
            secret_name="stale-key", reason="key_compromise", severity="high",
            requested_by="alice"))  # fmt: skip
    clock.advance(minutes=7)
    with acting_as("bob"):
        await revoke.approve_revocation(made["revocation_id"], "bob")
    clock.advance(minutes=1)
    now = clock()
    data = await collect(app, "pci-dss", now - timedelta(days=90), now)
    return {"data": data, "reader": reader.record.id, "never": never.record.id}


async def test_report_states_the_evidence(app: Strongroom, clock: ManualClock) -> None:
    found = await scenario(app, clock)
    data = found["data"]
    rotation = {e["name"]: e for e in data["rotation"]["entries"]}
    assert rotation["stale-key"]["status"] == "overdue"
    assert rotation["fleet-db"]["status"] == "compliant"
    assert rotation["fleet-db"]["rotations_in_period"] == 1
    assert rotation["fleet-db"]["evidence"][0]["result"] == "SUCCESS"
    access = data["access"]
    assert {"identity": "svc-fleet", "secret": "fleet-db"}.items() <= access["did_read"][0].items()
    unused = {(g["identity"], g["grant"]) for g in access["grants_never_used"]}
    assert ("svc-idle", "list,read:fleet-*") in unused
    assert ("svc-fleet", "write:stale-*") in unused
    assert ("svc-fleet", "list,read:fleet-*") not in unused
    assert any(who == "root-ops" and grant.endswith(":*") for who, grant in unused)
    assert {t["id"] for t in access["tokens_never_used"]} == {found["never"]}
    assert found["reader"] in {t["id"] for t in access["tokens_never_expiring"]}
    assert found["never"] not in {t["id"] for t in access["tokens_never_expiring"]}
    wild = {(g["identity"], g["grant"], g["everything"]) for g in access["wildcard_grants"]}
    assert ("svc-idle", "list,read:fleet-*", False) in wild
    assert ("svc-fleet", "write:stale-*", False) in wild
    assert any(who == "root-ops" and everything for who, _, everything in wild)
    revocation = data["revocations"]["entries"][0]
    assert (revocation["requested_by"], [a["by"] for a in revocation["approvals"]]) == (
        "alice", ["bob"])  # fmt: skip
    assert revocation["minutes_to_revoke"] == 7.0
    assert data["unauthorized"]["attempts"] == 1
    assert data["unauthorized"]["sources"][0]["actor_id"] == "svc-idle"
    integrity = data["integrity"]
    state = await app.audit.store.chain_state()  # type: ignore[union-attr]
    assert integrity["valid"] is True
    assert integrity["head_hash"] == state.last_hash.hex()
    assert data["meta"]["controls"]["integrity"].startswith("10.3.2")


async def test_every_format_verifies_and_tampering_is_caught(
    app: Strongroom, clock: ManualClock, tmp_path: Path
) -> None:
    data = (await scenario(app, clock))["data"]
    signer = ReportSigner(app.report_signing_seed)
    public = load_public_key(signer.public_key_pem().encode())
    stranger = ReportSigner(b"\x01" * 32)
    for fmt in ("json", "csv", "html", "pdf"):
        document = render(data, fmt, signer)
        assert verify_document(document, public).format == fmt
        mid = len(document) // 2
        flipped = document[:mid] + bytes([document[mid] ^ 0x20]) + document[mid + 1 :]
        with pytest.raises(ReportSignatureError):
            verify_document(flipped, public)
        if fmt != "pdf":  # the PDF's text is compressed
            changed = document.replace(b"stale-key", b"stale-kez", 1)
            assert changed != document
            with pytest.raises(ReportSignatureError, match="changed"):
                verify_document(changed, public)
        with pytest.raises(ReportSignatureError, match="another key"):
            verify_document(render(data, fmt, stranger), public)
    parsed = json.loads(render(data, "json", signer))
    assert parsed["report"]["meta"]["framework"] == "pci-dss"
    with pytest.raises(ReportSignatureError, match="no signature"):
        verify_document(b"%PDF-1.4 not signed\n", public)


def read_pdf(document: bytes, folder: Path) -> str:
    """Render the PDF to PNG pages with pdftoppm (it must draw) and return its text."""
    assert shutil.which("pdftoppm"), "poppler-utils is required (installed by .ci/run)"
    assert shutil.which("pdftotext"), "poppler-utils is required (installed by .ci/run)"
    pdf = folder / "report.pdf"
    pdf.write_bytes(document)
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(folder / "page")], check=True)
    pages = sorted(folder.glob("page-*.png"))
    assert pages
    assert pages[0].read_bytes().startswith(b"\x89PNG")
    done = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout


async def test_pdf_renders_and_reads_as_the_report(
    app: Strongroom, clock: ManualClock, tmp_path: Path
) -> None:
    data = (await scenario(app, clock))["data"]
    text = read_pdf(render(data, "pdf", ReportSigner(app.report_signing_seed)), tmp_path)
    for expected in ("Compliance report: PCI DSS v4.0", "Rotation compliance per secret",
                     "stale-key", "overdue", "Audit integrity", "head hash",
                     data["integrity"]["head_hash"][:40]):  # fmt: skip
        assert expected in text


async def test_bad_periods_and_frameworks_are_refused(app: Strongroom, clock: ManualClock) -> None:
    now = clock()
    with pytest.raises(ValidationError, match="unknown framework"):
        await collect(app, "iso-27001", now - timedelta(days=1), now)
    with pytest.raises(ValidationError, match="from before to"):
        await collect(app, "soc2", now, now - timedelta(days=1))
