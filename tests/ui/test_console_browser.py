"""The console in a real browser against a real server: sign-in, inventory, an audited reveal,
audit search and export, revocation approval by a second person (self-approval refused), a
threat after an attack, keyboard navigation; no console errors and no CSP violations."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest
from playwright.async_api import Page, expect
from uisite import SHOTS, Site

from strongroom import (
    EmergencyRevoke,
    RevocationRequest,
    SecretsAudit,
    SecretsManager,
    acting_as,
)

pytestmark = pytest.mark.slow


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_sign_in_overview_and_inventory_search(site: Site) -> None:
    page = await site.signed_in("alice")
    await expect(page.locator("header .who span")).to_have_text("alice")
    await expect(page.locator("svg.chart").first).to_be_visible()
    await shot(page, "overview")
    # Other tests of this module may add secrets first, and the inventory is a snapshot a few
    # seconds old: the count shown must be the table's, and the store's at some recent moment.
    listed = len(await SecretsManager(site.app).list_secrets())
    await page.click("nav >> text=Inventory")
    rows = page.locator("table.inventory tbody tr")
    await expect(page.locator("#count")).to_contain_text(" secrets")
    shown = int((await page.locator("#count").inner_text()).split(" secrets")[0].replace(",", ""))
    assert 33 <= shown <= listed
    await expect(rows).to_have_count(shown)
    await page.fill("#q", "fleet")
    await expect(page.locator("#count")).to_contain_text("1 secrets")  # htmx swapped the table
    await expect(rows).to_have_count(1)
    await page.fill("#q", "")
    recent = "|".join(str(n) for n in range(shown, listed + 1))  # a newer snapshot may count more
    await expect(page.locator("#count")).to_have_text(re.compile(rf"^({recent}) secrets"))
    again = int((await page.locator("#count").inner_text()).split(" secrets")[0])
    await expect(rows).to_have_count(again)
    await shot(page, "inventory")
    await page.context.close()


async def test_reveal_is_audited_and_not_cached(site: Site) -> None:
    page = await site.signed_in("alice")
    await page.goto(f"{site.url}/ui/secrets/fleet-db")
    await expect(page.locator("#secret-value")).to_have_count(0)  # hidden until asked
    async with page.expect_response("**/reveal") as answer:
        await page.click("#reveal")
    response = await answer.value
    assert "no-store" in (await response.header_value("cache-control") or "")
    value = await page.locator("#secret-value").inner_text()
    assert value.startswith("pw-")
    reads = await SecretsAudit(site.app).get_audit_trail("fleet-db", "READ", 5, actor_id="alice")
    assert reads
    assert reads[0]["result"] == "SUCCESS"
    assert reads[0]["actor_user_agent"]
    assert "Chrome" in reads[0]["actor_user_agent"]
    await shot(page, "secret-detail")
    await page.context.close()


async def test_audit_search_verify_and_export(site: Site) -> None:
    page = await site.signed_in("alice")
    await page.goto(f"{site.url}/ui/audit")
    await page.fill("#f-actor", "svc-console")
    await page.click("form.filters button[type=submit]")
    rows = page.locator("table.audit tbody tr")
    await expect(rows).to_have_count(6)
    await page.click("#verify")
    await expect(page.locator("#chain-status")).to_contain_text("Chain verified")
    await shot(page, "audit")
    async with page.expect_download() as download_info:
        await page.click("#export")
    download = await download_info.value
    text = (await download.path()).read_text(encoding="utf-8")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert len(exported) == 6
    assert {r["actor_id"] for r in exported} == {"svc-console"}
    await page.context.close()


async def test_self_approval_refused_then_second_person_approves(site: Site) -> None:
    async with site.served.client(site.tokens["bob"]) as api:
        made = await api.post("/v1/revocations", json={
            "secret_name": "jwt-signing", "reason": "key_compromise", "severity": "high",
            "description": "seen in a build log"})  # fmt: skip
        assert made.status_code == 201
        request_id = made.json()["revocation_id"]
    bob = await site.signed_in("bob")
    await bob.goto(f"{site.url}/ui/revocations")
    await bob.click(f"#approve-{request_id}")
    await expect(bob.locator(".alert")).to_contain_text("someone else must approve")
    await bob.context.close()
    alice = await site.signed_in("alice")
    await alice.goto(f"{site.url}/ui/revocations")
    await shot(alice, "revocations")
    await alice.click(f"#approve-{request_id}")
    await expect(alice.locator(".notice")).to_contain_text(f"Request {request_id} is now")
    status = await site.app.revocation_store.get(request_id)
    assert status is not None
    assert status["status"] == "COMPLETED"
    assert [a["by"] for a in status["approvals"]] == ["alice"]
    await alice.context.close()


async def test_threat_visible_after_an_attack(site: Site) -> None:
    intruder = {"Authorization": f"Bearer {site.tokens['intruder']}"}
    async with httpx.AsyncClient(base_url=site.url, verify=False) as raw:  # noqa: S501
        for i in range(12):  # an identity without policies probing secrets
            await raw.get(f"/v1/secrets/radio-gw-{i:02d}", headers=intruder)
    page = await site.signed_in("alice")
    # A threshold no other test asks for: the rules run now, not from an earlier snapshot.
    await page.goto(f"{site.url}/ui/threats")
    await page.fill("#t-threshold", "6")
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("table.threats")).to_contain_text("failure_burst_actor")
    await expect(page.locator("table.threats")).to_contain_text("intruder")
    await page.click("table.threats >> text=show >> nth=0")
    await expect(page.locator("table.audit")).to_contain_text("forbidden")
    await page.goto(f"{site.url}/ui/threats?hours=24&threshold=6")
    await shot(page, "threats")
    await page.context.close()


async def test_keyboard_navigation(site: Site) -> None:
    context = await site.context()
    page = await context.new_page()
    await page.goto(f"{site.url}/ui/secrets")  # not signed in: the sign-in form, focused
    await expect(page.locator("#token")).to_be_focused()  # autofocus may land after "load"
    await page.keyboard.type(site.tokens["alice"])
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/ui/secrets")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await page.keyboard.press("Shift+Tab")  # back into the navigation
    for _ in range(12):
        if await page.evaluate("document.activeElement.textContent") == "Audit":
            break
        await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/ui/audit")
    await expect(page.locator("h1")).to_have_text("Audit trail")
    await context.close()


async def test_other_views_render(site: Site) -> None:
    page = await site.signed_in("alice")
    for path, name in (("/ui/rotation", "rotation"), ("/ui/analytics", "analytics"),
                       ("/ui/reports", "reports")):  # fmt: skip
        await page.goto(f"{site.url}{path}")
        await expect(page.locator("main h1").first).to_be_visible()
        await shot(page, name)
    await page.context.close()


async def test_no_console_errors_or_csp_violations(site: Site) -> None:
    """Every view, loaded as a person would: no console error, no CSP violation (and none in
    any flow before this one, refusals included)."""
    site.problems.clear()
    page = await site.signed_in("admin")
    for path in ("/ui/", "/ui/secrets", "/ui/secrets/fleet-db", "/ui/audit", "/ui/threats",
                 "/ui/revocations", "/ui/rotation", "/ui/analytics", "/ui/reports"):  # fmt: skip
        await page.goto(f"{site.url}{path}")
        await page.wait_for_load_state("networkidle")
        await page.click("header .brand")  # htmx and the stylesheet loaded on every view
    await page.context.close()
    assert site.problems == []
    assert site.csp == []


async def test_a_break_glass_use_is_acknowledged_by_someone_else(site: Site) -> None:
    await SecretsManager(site.app).create_secret("bg-radio", "bg-value")
    with acting_as("bob"):
        used = await EmergencyRevoke(site.app).request_revocation(RevocationRequest(
            secret_name="bg-radio", reason="key_compromise", requested_by="bob",
            immediate=True))  # fmt: skip
    rid = used["revocation_id"]
    bob = await site.signed_in("bob")
    await bob.goto(f"{site.url}/ui/revocations")
    await bob.fill(f"#note-{rid}", "it was me")
    await bob.click(f"#acknowledge-{rid}")
    await expect(bob.locator(".alert")).to_contain_text("someone else must review it")
    await bob.context.close()
    alice = await site.signed_in("alice")
    await alice.goto(f"{site.url}/ui/revocations")
    await alice.fill(f"#note-{rid}", "build log leak confirmed")
    await shot(alice, "revocations-break-glass")
    await alice.click(f"#acknowledge-{rid}")
    await expect(alice.locator(".notice")).to_contain_text(f"{rid} acknowledged")
    await expect(alice.locator(f"#review-{rid}")).to_have_count(0)
    review = await site.app.break_glass_reviews.get(rid)
    assert (review["status"], review["acknowledged_by"], review["note"]) == (
        "ACKNOWLEDGED", "alice", "build log leak confirmed",
    )  # fmt: skip
    await alice.context.close()
