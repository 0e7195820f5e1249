"""The console in real headless Chromium against the live service on the scanned example fleet."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import func, select

from powerx_governance.auth.model import Role
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.recommendations.queries import get_recommendation
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.tables import ScanRow
from tests.conftest import LiveServer, issue_token
from tests.functional.console.conftest import ConsoleServer, OpenBrowser
from tests.functional.console.support import ACME, CRM, SANDBOX, artifact, recommendation_id


def _signed_in(context: BrowserContext, live: LiveServer, token: str) -> Page:
    page = context.new_page()
    page.goto(f"{live.base_url}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole$"))
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live.base_url}/console")
    return page


def _nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def test_tenant_admin_ignores_the_crm_card(console_server: ConsoleServer, open_browser: OpenBrowser) -> None:
    service, live = console_server.service, console_server.live
    rec_id = recommendation_id(service, SANDBOX, CRM)
    with service.factory() as session:
        stored = get_recommendation(session, rec_id)
    assert stored is not None
    page = _signed_in(open_browser(), live, issue_token(service, Role.TENANT_ADMIN, SANDBOX))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sandbox Tenant A")

    card = page.locator(f'article[data-recommendation="{rec_id}"]')
    expect(card).to_contain_text("2.3.0")
    expect(card.locator(".versions .target")).to_have_text("2.4.0")
    expect(card.locator(".priority strong")).to_have_text(str(stored["priority"]))
    expect(card).to_contain_text("PXSA-2026-0014")
    page.screenshot(path=artifact("tenant-overview.png"), full_page=True)

    card.get_by_role("link", name="CRM", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("CRM")
    expect(page.locator('[data-figure="priority"]')).to_have_text(str(stored["priority"]))
    expect(page.get_by_role("link", name=re.compile(r"Release notes 2\.4\.0"))).to_have_attribute(
        "href", "https://docs.powerx.example/plugins/crm/releases/2.4.0"
    )
    expect(page.locator("details.changelog[open]")).to_contain_text("Pipeline forecasting")
    expect(page.locator(".rule-ids")).to_contain_text("default:security-fix")
    first_seen = page.locator("time[datetime]").first
    expect(first_seen).to_have_attribute("data-local", "1")
    expect(first_seen).to_have_attribute("title", re.compile(r"UTC$"))

    page.locator("details.decision summary", has_text="Ignore").click()
    reason = "CRM is read-only in the sandbox until the Q1 migration"
    page.get_by_label("Why ignore it? (required, kept in the audit trail)").fill(reason)
    page.get_by_role("button", name="Review the ignore…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm: ignore")
    expect(page.locator("#confirm")).to_contain_text(reason)
    page.get_by_role("button", name="Record this decision").click()

    expect(page.locator("#decision-done")).to_contain_text("ignored")
    expect(page.locator('[data-figure="state"]')).to_have_text("Ignored")
    expect(page.locator("#decision-history tbody tr").first).to_contain_text(reason)
    audit_row = page.locator('#audit-entries tr[data-operation="decision.ignore"]')
    expect(audit_row).to_contain_text(reason)
    expect(audit_row).to_contain_text(f"tenant_admin-{SANDBOX}")
    page.screenshot(path=artifact("card-ignored.png"), full_page=True)

    _nav(page, "Overview")
    expect(page.locator(f'article[data-recommendation="{rec_id}"]')).to_have_count(0)
    expect(page.locator("article[data-recommendation]").first).to_be_visible()

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live.base_url}/console/recommendations/{rec_id}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the card page scrolls sideways on a phone ({width}px)"
    page.screenshot(path=artifact("card-phone.png"), full_page=True)


def test_another_tenant_cannot_reach_the_card(
    console_server: ConsoleServer, open_browser: OpenBrowser
) -> None:
    service, live = console_server.service, console_server.live
    rec_id = recommendation_id(service, SANDBOX, CRM)
    page = _signed_in(open_browser(), live, issue_token(service, Role.TENANT_ADMIN, ACME))
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Retail")
    expect(page.locator(f'article[data-recommendation="{rec_id}"]')).to_have_count(0)
    for path in (f"/console/recommendations/{rec_id}", f"/console/tenants/{SANDBOX}"):
        answer = page.goto(f"{live.base_url}{path}")
        assert answer is not None
        assert answer.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    page.screenshot(path=artifact("cross-tenant-404.png"))


def test_operator_fleet_overview_bulk_decision_and_charts(
    console_server: ConsoleServer, open_browser: OpenBrowser
) -> None:
    service, live = console_server.service, console_server.live
    page = _signed_in(open_browser(), live, issue_token(service, Role.OPERATOR))
    expect(page.get_by_role("heading", level=1)).to_have_text("Fleet overview")
    with service.factory() as session:
        tenants = session.scalar(select(func.count()).select_from(TenantRow))
        rate = session.execute(
            select(ScanRow.coverage_rate)
            .where(ScanRow.finished_at.is_not(None))
            .order_by(ScanRow.finished_at)
        ).scalar()
    assert rate is not None
    expect(page.locator('[data-figure="tenants"]')).to_have_text(str(tenants))
    expect(page.locator('[data-figure="coverage"]')).to_have_text(f"{rate * 100:.1f} %")
    expect(page.get_by_role("heading", name="Most exposed plugins")).to_be_visible()
    expect(page.locator("article[data-recommendation]")).to_have_count(25)
    page.screenshot(path=artifact("fleet-overview.png"), full_page=True)

    page.locator("details.filter-box summary").click()
    page.get_by_label("Risk").select_option("critical")
    page.get_by_role("button", name="Apply").click()
    risks = page.locator("article[data-recommendation] .badge.risk-critical")
    expect(risks.first).to_be_visible()
    assert (
        page.locator("article[data-recommendation] .card-badges .badge:first-child").all_inner_texts()
        == ["CRITICAL"] * page.locator("article[data-recommendation]").count()
    )

    _nav(page, "Bulk decisions")
    page.get_by_label("Plugin (required)").select_option(CRM)
    page.get_by_label("Tenant tags (comma-separated, any of)").fill("finance")
    page.get_by_role("button", name="Preview").click()
    mixed = page.locator("#mixed-targets a")
    if mixed.count():  # one target version per bulk decision: pick the first
        mixed.first.click()
    selected = int(page.locator('[data-figure="bulk-count"]').inner_text())
    assert selected > 0
    page.get_by_role("radio", name="Schedule").check()
    when = datetime.now(UTC) + timedelta(days=10)
    page.get_by_label(re.compile(r"^Upgrade at")).fill(when.strftime("%Y-%m-%dT09:30"))
    page.get_by_role("button", name=re.compile(r"^Review \d+ decision")).click()
    expect(page.locator('[data-confirm="tenants"]')).to_have_text(str(selected))
    late = page.locator('input[name="accept_late"]')
    if late.count():
        late.check()
    page.get_by_role("button", name=re.compile(r"^Record \d+ decision")).click()
    expect(page.locator("#bulk-done")).to_contain_text(f"{selected} decision")

    _nav(page, "Adoption")
    expect(page.get_by_role("heading", level=1)).to_contain_text("fleet")
    decisions = page.locator("#chart-decisions svg[role=img]")
    expect(decisions).to_be_visible()
    with service.factory() as session:
        decided = session.scalar(select(func.count()).select_from(DecisionRow))
    assert decided is not None
    assert decided >= selected
    expect(decisions.locator("desc")).to_contain_text(re.compile(rf": {decided} decisions$"))
    expect(page.locator("#chart-accept svg[role=img], #chart-accept .empty").first).to_be_visible()
    page.screenshot(path=artifact("adoption.png"), full_page=True)


def _upgrade_installations(server: ConsoleServer) -> list[int]:
    """Upgrade, in the manifests, a critical patch and a scheduled upgrade to their latest releases."""
    with server.service.factory() as session:
        critical = session.execute(
            select(RecommendationRow)
            .where(RecommendationRow.critical_patch.is_(True), RecommendationRow.state == "open")
            .order_by(RecommendationRow.id)
            .limit(1)
        ).scalar_one()
        scheduled = session.execute(
            select(RecommendationRow).where(RecommendationRow.state == "decided").limit(1)
        ).scalar_one_or_none()
    chosen = [r for r in (critical, scheduled) if r is not None]
    files = {}
    for path in server.inputs.manifests.glob("*.json"):
        tenant = server.inputs.manifest(path.stem).get("tenant_uuid")  # SBOMs and broken files have none
        files[tenant] = path.stem
    for rec in chosen:
        manifest = server.inputs.manifest(files[rec.tenant_uuid])
        for plugin in manifest["plugins"]:
            if plugin["plugin_id"] == rec.plugin_id:
                plugin["version"] = rec.latest_version or rec.target_version
        server.inputs.put_manifest(files[rec.tenant_uuid], manifest)
    return [r.id for r in chosen]


def test_operator_triggers_a_scan_and_watches_it_finish(
    console_server: ConsoleServer, open_browser: OpenBrowser
) -> None:
    service, live = console_server.service, console_server.live
    upgraded = _upgrade_installations(console_server)
    console_server.clock.advance(30 * 3600)  # patched 30 hours after the first scan saw them
    page = _signed_in(open_browser(), live, issue_token(service, Role.OPERATOR))
    _nav(page, "Scans")
    page.get_by_role("button", name="Full scan").click()
    expect(page).to_have_url(re.compile(r"/console/scans/[0-9a-f-]{36}$"))
    scan_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#scan-status")).to_have_text(re.compile(r"^(succeeded|incomplete)$"), timeout=30_000)
    with service.factory() as session:
        scan = session.get_one(ScanRow, scan_id)
    expect(page.locator("#scan-status")).to_have_text(scan.status)
    expect(page.locator('[data-field="coverage"]')).to_contain_text(
        f"{scan.tenants_scanned} of {scan.tenants_total} tenants"
    )
    page.screenshot(path=artifact("scan-finished.png"), full_page=True)
    _nav(page, "Scans")
    expect(page.locator(f'#scan-history tr[data-scan="{scan_id}"]')).to_contain_text(scan.status)

    page.goto(f"{live.base_url}/console/recommendations/{upgraded[0]}")
    expect(page.locator('[data-figure="state"]')).to_have_text("Resolved")
    _nav(page, "Adoption")
    expect(page.locator("#chart-patch svg[role=img] desc")).to_contain_text(re.compile(r": 30 h \(n=1\)$"))
    expect(page.locator("#chart-sla svg[role=img]")).to_be_visible()
    if len(upgraded) > 1:  # a scheduled upgrade reached its target: the decision was accepted
        expect(page.locator('[data-figure="accept-rate"]')).not_to_have_text("0.0 %")
    page.screenshot(path=artifact("adoption-after-patch.png"), full_page=True)


def test_forms_need_the_csrf_token_and_the_cookie_is_locked_down(
    console_server: ConsoleServer, open_browser: OpenBrowser
) -> None:
    service, live = console_server.service, console_server.live
    rec_id = recommendation_id(service, SANDBOX, "com.powerx.plugins.forms")
    context = open_browser()
    page = _signed_in(context, live, issue_token(service, Role.TENANT_ADMIN, SANDBOX))
    [cookie] = [c for c in context.cookies() if c["name"] == "powerx_console"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] in ("Lax", "Strict")
    assert cookie["path"] == "/console"
    assert page.evaluate("document.cookie") == ""  # not readable by scripts

    url = f"{live.base_url}/console/recommendations/{rec_id}/decision"
    body: dict[str, str | float | bool] = {"revision": "1", "decision": "upgrade"}
    for form in (body, {**body, "csrf_token": "forged"}):
        refused = page.request.post(url, form=form, max_redirects=0)
        assert refused.status == 403
        assert "Form refused" in refused.text()
    page.goto(f"{live.base_url}/console/recommendations/{rec_id}")
    expect(page.locator('[data-figure="state"]')).to_have_text("Open")

    stolen = cookie["value"]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(f"{live.base_url}/console")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    with httpx.Client(base_url=live.base_url, cookies={"powerx_console": stolen}) as replay:
        assert replay.get("/console").status_code == 303  # the signed-out session is refused
