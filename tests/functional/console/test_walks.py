"""Issue 14's done-when walks: each role in real Chromium at 1280x800 and on a 390x844 phone,
every page checked by axe-core (no serious or critical violations), screenshots kept as artefacts.

The screenshots go to var/test-artifacts/console/walks/ (ignored by git; the path is printed).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect
from sqlalchemy import select

from powerx_governance.auth.model import Role
from powerx_governance.auth.tables import ApiTokenRow
from powerx_governance.auth.tokens import hash_token, revoke_token
from powerx_governance.db.session import transaction
from powerx_governance.recommendations.tables import RecommendationRow
from tests.conftest import LiveServer, issue_token
from tests.functional.console.conftest import ConsoleServer, OpenBrowser
from tests.functional.console.support import ARTIFACTS, SANDBOX

VIEWPORTS: Final = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
WALKS: Final = ARTIFACTS / "walks"
_AXE: Final = Axe()


class Walk:
    """One role's walk at one viewport: screenshots, an axe check and a width check per page."""

    def __init__(self, page: Page, live: LiveServer, viewport: str, role: str) -> None:
        self.page, self.live, self.viewport, self.role = page, live, viewport, role
        self.step = 0
        self.checked: list[str] = []

    def go(self, path: str) -> None:
        self.page.goto(f"{self.live.base_url}{path}")

    def shot(self, name: str) -> Path:
        """Screenshot (full page), axe-core (serious or critical fails), no sideways scrolling."""
        self.step += 1
        path = WALKS / f"{self.viewport}-{self.role}-{self.step:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True)
        results = _AXE.run(self.page)
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"{self.page.url}: axe-core found {bad}"
        width = self.page.evaluate("document.documentElement.scrollWidth")
        limit = VIEWPORTS[self.viewport]["width"]
        assert width <= limit, f"{self.page.url} scrolls sideways at {limit}px ({width}px)"
        self.checked.append(self.page.url)
        return path


@pytest.fixture(scope="module", autouse=True)
def _artifacts() -> None:
    WALKS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole walk screenshots: {WALKS}")  # noqa: T201 - where the artefacts are


def _walk(open_browser: OpenBrowser, live: LiveServer, token: str, viewport: str, role: str) -> Walk:
    touch = {"is_mobile": True, "has_touch": True} if viewport == "phone" else {}
    page = open_browser(viewport=VIEWPORTS[viewport], **touch).new_page()
    page.goto(f"{live.base_url}/console")
    walk = Walk(page, live, viewport, role)
    walk.shot("sign-in")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live.base_url}/console")
    return walk


def _top(page: Page, selector: str) -> float:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return float(box["y"])


def _header_height(page: Page) -> float:
    box = page.locator("header.topbar").bounding_box()
    assert box is not None
    return float(box["height"])


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_tenant_admin_walk(console_server: ConsoleServer, open_browser: OpenBrowser, viewport: str) -> None:
    service, live = console_server.service, console_server.live
    walk = _walk(open_browser, live, issue_token(service, Role.TENANT_ADMIN, SANDBOX), viewport, "admin")
    page = walk.page
    # 3: the action list first, with its count and the active filters; tables below
    expect(page.locator("#result-count")).to_contain_text("awaiting a decision")
    assert _top(page, "#cards article") < _top(page, "#top-title")
    assert _header_height(page) <= (110 if viewport == "phone" else 64)
    walk.shot("overview")
    # 1: the tenant's own scan, not the fleet's coverage
    expect(page.locator('[data-figure="tenant-outcome"]')).to_be_visible()
    expect(page.locator('[data-figure="coverage"]')).to_have_count(0)
    page.get_by_role("link", name=re.compile("Critical patches awaiting a decision")).click()
    expect(page.locator("#result-count")).to_contain_text("critical patches")
    shown = int(page.locator('[data-figure="result-count"]').inner_text().replace(",", ""))
    expect(page.locator("article[data-recommendation]")).to_have_count(min(shown, 25))
    walk.shot("filtered-critical")
    # 4: the card: recommended action near the top, advisory ids linked, EXPLOITED on the card
    if not shown:
        walk.go("/console")
    page.locator("article[data-recommendation]").first.locator("h3 a").click()
    assert _top(page, "#decide") < (500 if viewport == "desktop" else 700)
    expect(page.locator("#decide-title")).to_contain_text("Recommended:")
    links = page.locator("table a.advisory-id")
    if links.count():
        expect(links.first).to_have_attribute("href", re.compile(r"^https://"))
    walk.shot("card")
    # 2: schedule past the SLA deadline: the confirmation step warns and asks
    page.locator("details.decision summary", has_text="Schedule").click()
    late = datetime.now(UTC) + timedelta(days=400)
    page.get_by_label(re.compile(r"^Upgrade at")).fill(late.strftime("%Y-%m-%dT09:30"))
    page.get_by_role("button", name="Review the schedule…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm: schedule the upgrade")
    expect(page.locator('[data-confirm="tenants"]')).to_have_text("1")
    expect(page.locator("#confirm-warnings")).to_contain_text("after the SLA deadline")
    walk.shot("confirm-late-schedule")
    page.get_by_label("I know this is after the SLA deadline").check()
    page.get_by_role("button", name="Record this decision").click()
    expect(page.locator("#decision-done")).to_be_visible()
    expect(page.locator(".decision-standing")).to_contain_text("scheduled for")
    walk.shot("card-scheduled")
    # 2: and reopen it (audited)
    page.get_by_role("button", name="Withdraw the decision and reopen").click()
    expect(page.locator("#decision-done")).to_contain_text("open again")
    expect(page.locator('#audit-entries tr[data-operation="decision.reopen"]').first).to_be_visible()
    walk.shot("card-reopened")
    # 4: readable charts
    walk.go("/console/adoption")
    expect(page.locator("svg.chart .value, .chart-empty").first).to_be_visible()
    walk.shot("adoption")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_operator_walk(console_server: ConsoleServer, open_browser: OpenBrowser, viewport: str) -> None:
    service, live = console_server.service, console_server.live
    walk = _walk(open_browser, live, issue_token(service, Role.OPERATOR), viewport, "operator")
    page = walk.page
    expect(page.get_by_role("heading", level=1)).to_have_text("Fleet overview")
    assert _top(page, "#cards article") < _top(page, "#top-title")
    assert _header_height(page) <= (110 if viewport == "phone" else 64)
    walk.shot("fleet-overview")
    # 3: grouped by advisory, with the bulk count of each upgrade path
    page.get_by_role("link", name="By advisory").click()
    first = page.locator("#advisory-groups tbody tr").first
    walk.shot("by-advisory")
    first.locator("details.group-targets summary").click()
    path = (
        first.locator("li[data-target]")
        .filter(has=page.get_by_role("link", name=re.compile("decide for")))
        .first
    )
    count = path.locator('[data-figure="group-count"]').inner_text()
    walk.shot("by-advisory-expanded")
    path.get_by_role("link", name=re.compile("decide for")).click()
    expect(page.locator('[data-figure="bulk-count"]')).to_have_text(count)
    page.get_by_role("radio", name="Upgrade now").check()
    page.get_by_role("button", name=re.compile(r"^Review .* decision")).click()
    expect(page.locator('[data-confirm="tenants"]')).to_have_text(count)
    walk.shot("bulk-confirm")
    page.get_by_role("button", name=re.compile(r"^Record .* decision")).click()
    expect(page.locator('[data-figure="bulk-recorded"]')).to_have_text(count)
    walk.shot("bulk-recorded")
    # searchable by name: the tenant list and the adoption scope
    walk.go("/console/tenants")
    expect(page.locator("#tenant-list tbody tr").first).to_be_visible()
    walk.shot("tenants")
    walk.go("/console/adoption")
    page.get_by_label(re.compile("Tenant name, key or uuid")).fill("Sandbox Tenant")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Sandbox Tenant A")
    walk.shot("adoption-tenant")
    walk.go("/console/scans")
    walk.shot("scans")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_viewer_walk(console_server: ConsoleServer, open_browser: OpenBrowser, viewport: str) -> None:
    service, live = console_server.service, console_server.live
    token = issue_token(service, Role.VIEWER, SANDBOX)
    walk = _walk(open_browser, live, token, viewport, "viewer")
    page = walk.page
    expect(page.locator(".card-actions a.button:not(.link)")).to_have_count(0)
    walk.shot("overview")
    page.locator("article[data-recommendation] h3 a").first.click()
    expect(page.locator("#decide")).to_contain_text("You can read this card")
    walk.shot("card")
    with service.factory() as session:
        open_one = session.execute(
            select(RecommendationRow.id).where(RecommendationRow.tenant_uuid == SANDBOX)
        ).scalar()
    assert open_one is not None
    with transaction(service.factory) as session:
        row = session.execute(
            select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(token))
        ).scalar_one()
        revoke_token(session, row.id, service.clock())
    page.reload()
    expect(page.get_by_role("status")).to_contain_text("token was revoked")
    walk.shot("revoked")
