"""The console over a real HTTPS socket: sessions, CSRF and origin checks, authorization as the
API decides it, the audited reveal, headers, idle timeout and sign-out."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from served import Served, serve, server_settings

from helpers_console import ConsoleClient
from strongroom import SecretsAudit, SecretsManager, SecretType, Settings, Strongroom
from strongroom.core.actor import acting_as
from strongroom.core.clock import ManualClock
from strongroom.core.policy import Policy
from strongroom.core.revocation import RevocationRequest
from strongroom.services.revocation.emergency_revoke import EmergencyRevoke

VALUE = "pw-console-9f3a"


@pytest.fixture(params=["sqlite", "postgres"])
def console_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    return server_settings(request.param, tmp_path, schema)


@pytest.fixture
async def site(
    console_settings: Settings, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[Served]:
    app = await Strongroom.open(console_settings, clock=clock)
    manager = SecretsManager(app)
    await manager.create_secret("app-db", VALUE, SecretType.DATABASE_CREDENTIAL)
    await manager.create_secret("other-db", "pw-other", SecretType.DATABASE_CREDENTIAL)
    try:
        async with serve(app, tls_dir=tmp_path) as served:
            yield served
    finally:
        await app.close()


async def token(site: Served, identity: str, *grants: str) -> str:
    return await site.token_for(identity, *grants)


async def events(site: Served, **filters: object) -> list[dict[str, object]]:
    return await SecretsAudit(site.app).get_audit_trail(limit=100, **filters)  # type: ignore[arg-type]


async def test_pages_need_a_session(site: Served) -> None:
    async with ConsoleClient(site) as ui:
        page = await ui.get("/ui/secrets?q=app")
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/signin?next=%2Fui%2Fsecrets%3Fq%3Dapp"
        refused = await ui.post("/ui/secrets/app-db/reveal", csrf=False)
        assert refused.status_code == 303
    assert await events(site, resource_name="app-db", action="READ") == []


async def test_sign_in_cookie_and_audit(site: Served) -> None:
    good = await token(site, "alice", "read,list:app-*")
    async with ConsoleClient(site) as ui:
        wrong = await ui.sign_in("srt_0000000000000000_" + "A" * 43)
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        answer = await ui.sign_in(good)
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("__Host-strongroom-session=")
        for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
            assert flag.lower() in cookie.lower()
    found = await events(site, action="AUTHENTICATE")
    assert [(e["result"], e["actor_id"]) for e in found] == [
        ("SUCCESS", "anonymous"), ("FAILURE", "anonymous")]  # fmt: skip
    assert found[0]["details"]["identity"] == "alice"


async def test_state_changes_need_csrf_token_and_same_origin(site: Served) -> None:
    async with ConsoleClient(site) as ui:
        await ui.sign_in(await token(site, "alice", "read,list:*"))
        assert (await ui.post("/ui/secrets/app-db/reveal", csrf=False)).status_code == 403
        assert (await ui.post("/ui/secrets/app-db/reveal", origin=False)).status_code == 403
        foreign = await ui.http.post("/ui/secrets/app-db/reveal", data={"csrf": ui.csrf},
                                     headers={"Origin": "https://evil.example"})  # fmt: skip
        assert foreign.status_code == 403
        assert VALUE not in foreign.text
        assert await events(site, resource_name="app-db", action="READ") == []
        ok = await ui.post("/ui/secrets/app-db/reveal")
        assert ok.status_code == 200


async def test_inventory_and_detail_follow_the_policies(site: Served) -> None:
    async with ConsoleClient(site) as ui:
        await ui.sign_in(await token(site, "dev", "list:app-*"))
        listed = await ui.get("/ui/secrets")
        assert "app-db" in listed.text
        assert "other-db" not in listed.text
        refused = await ui.get("/ui/secrets/other-db")
        assert refused.status_code == 403
    denied = await events(site, resource_name="other-db", result="FAILURE")
    assert denied
    assert denied[0]["details"]["denied_action"] == "list"
    assert denied[0]["actor_id"] == "dev"


async def test_reveal_needs_read_and_is_audited_never_cached(site: Served) -> None:
    async with ConsoleClient(site) as auditor:
        await auditor.sign_in(await token(site, "carol", "audit-read,list:*"))
        detail = await auditor.get("/ui/secrets/app-db")
        assert detail.status_code == 200
        assert 'id="reveal"' not in detail.text
        refused = await auditor.post("/ui/secrets/app-db/reveal")
        assert refused.status_code == 403
        assert VALUE not in refused.text
    async with ConsoleClient(site) as reader:
        await reader.sign_in(await token(site, "alice", "read,list:app-*"))
        detail = await reader.get("/ui/secrets/app-db")
        assert VALUE not in detail.text
        shown = await reader.post("/ui/secrets/app-db/reveal")
        assert shown.status_code == 200
        assert VALUE in shown.text
        assert shown.headers["cache-control"] == "no-store"
    reads = await events(site, resource_name="app-db", action="READ")
    assert [(e["actor_id"], e["result"]) for e in reads] == [
        ("alice", "SUCCESS"), ("carol", "FAILURE")]  # fmt: skip
    assert reads[1]["details"]["denied_action"] == "read"
    auth = reads[0]["details"]["auth"]  # how the reader authenticated, never the token
    assert (auth["method"], auth["via"]) == ("token", "console")
    assert len(auth["accessor"]) == 16


async def test_security_headers(site: Served) -> None:
    async with ConsoleClient(site) as ui:
        page = await ui.get("/ui/signin")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text
    assert " style=" not in page.text


async def test_idle_timeout_sign_out_and_revoked_token(site: Served, clock: ManualClock) -> None:
    issued = await token(site, "alice", "list:*")
    async with ConsoleClient(site) as ui:
        await ui.sign_in(issued)
        assert (await ui.get("/ui/secrets")).status_code == 200
        clock.advance(minutes=16)  # past the 15-minute idle timeout
        assert (await ui.get("/ui/secrets")).status_code == 303
        await ui.sign_in(issued)
        stolen = ui.http.cookies.get("__Host-strongroom-session")
        assert (await ui.post("/ui/signout", csrf=False)).status_code == 303
    async with ConsoleClient(site) as replay:
        replay.http.cookies.set("__Host-strongroom-session", str(stolen), path="/")
        assert (await replay.get("/ui/secrets")).status_code == 303  # ended server-side
    async with ConsoleClient(site) as ui:
        await ui.sign_in(issued)
        await site.app.access.revoke_token(issued)
        assert (await ui.get("/ui/secrets")).status_code == 303


async def test_self_approval_refused_and_nothing_changes(site: Served) -> None:
    await site.app.access.put_policy(Policy.build("sec", ["revoke-request,revoke-approve,list:*"]))
    with acting_as("bob"):
        made = await EmergencyRevoke(site.app).request_revocation(
            RevocationRequest(
                secret_name="app-db", reason="key_compromise", severity="high", requested_by="bob"
            )
        )
    bob = (await site.app.access.create_token("bob", policies=["sec"])).token
    async with ConsoleClient(site) as ui:
        await ui.sign_in(bob)
        refused = await ui.post(f"/ui/revocations/{made['revocation_id']}/approve")
    assert refused.status_code == 403
    assert "someone else must approve" in refused.text
    row = await site.app.revocation_store.get(made["revocation_id"])
    assert row is not None
    assert row["status"] == "PENDING"
    assert row["approvals"] == []


async def test_break_glass_review_acknowledged_from_the_revocations_view(site: Served) -> None:
    await site.app.access.put_policy(
        Policy.build("resp", ["revoke-break-glass,revoke-approve,list:*"])
    )
    with acting_as("erin"):
        used = await EmergencyRevoke(site.app).request_revocation(
            RevocationRequest(
                secret_name="other-db", reason="key_compromise", requested_by="erin",
                immediate=True,
            )
        )  # fmt: skip
    rid = used["revocation_id"]
    erin = (await site.app.access.create_token("erin", policies=["resp"])).token
    async with ConsoleClient(site) as ui:
        await ui.sign_in(erin)
        page = await ui.get("/ui/revocations")
        assert f'id="review-{rid}"' in page.text
        refused = await ui.post(f"/ui/revocations/{rid}/acknowledge", {"note": "mine"})
    assert refused.status_code == 403
    assert "someone else must review it" in refused.text
    assert (await site.app.break_glass_reviews.get(rid))["status"] == "OPEN"
    ciso = await token(site, "ciso", "revoke-approve,list:*")
    async with ConsoleClient(site) as ui:
        await ui.sign_in(ciso)
        no_csrf = await ui.post(f"/ui/revocations/{rid}/acknowledge", {"note": "x"}, csrf=False)
        assert no_csrf.status_code == 403
        done = await ui.post(f"/ui/revocations/{rid}/acknowledge", {"note": "leak confirmed"})
        assert done.status_code == 303
        after = await ui.get(done.headers["location"])
        assert f'id="review-{rid}"' not in after.text
    review = await site.app.break_glass_reviews.get(rid)
    assert (review["status"], review["acknowledged_by"], review["note"]) == (
        "ACKNOWLEDGED", "ciso", "leak confirmed",
    )  # fmt: skip


async def test_audit_export_neutralises_formulas(site: Served) -> None:
    with acting_as("=HYPERLINK(1)", ip="10.9.9.9"):
        await SecretsAudit(site.app).log_event("READ", "app-db")
    async with ConsoleClient(site) as ui:
        await ui.sign_in(await token(site, "aud", "audit-read,list:*"))
        answer = await ui.get("/ui/audit/export.csv?ip=10.9.9.9")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["actor_id"] for r in rows] == ["'=HYPERLINK(1)"]
    assert answer.headers["content-disposition"].startswith("attachment")


async def test_api_trail_filters_by_address(site: Served) -> None:
    for ip in ("10.1.1.1", "10.2.2.2"):
        with acting_as("svc", ip=ip):
            await SecretsAudit(site.app).log_event("READ", "app-db")
    async with site.admin() as api:
        found = (await api.get("/v1/audit/events", params={"ip": "10.2.2.2"})).json()
    assert [e["actor_ip"] for e in found] == ["10.2.2.2"]


async def test_a_session_row_changed_in_the_database_is_refused(site: Served) -> None:
    """Someone who can write the database cannot point a session at another identity's token
    (the row carries a MAC, as tokens, policies and bindings do)."""
    mine = await token(site, "mallory", "list:*")
    theirs = (await site.app.access.create_token("root-ops", policies=["admin"])).record.id
    async with ConsoleClient(site) as ui:
        await ui.sign_in(mine)
        sessions = site.app.sessions
        rows = await sessions._rows(  # type: ignore[attr-defined]
            "SELECT id_hash FROM strongroom_ui_sessions WHERE identity = :who", {"who": "mallory"}
        )
        await sessions._change(  # type: ignore[attr-defined]
            [("UPDATE strongroom_ui_sessions SET identity = :who, subject = :subject "
              "WHERE id_hash = :id_hash",
              {"who": "root-ops", "subject": theirs, "id_hash": bytes(rows[0]["id_hash"])})]
        )  # fmt: skip
        answer = await ui.get("/ui/reports")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/signin")
