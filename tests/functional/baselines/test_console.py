"""The group and plugin fleet pages in real headless Chromium (Debian's, through Playwright), on SQLite.

An operator walks groups → a group (conflicts first, then members x plugins) → the CRM's fleet view
(distribution chart with values, tenants and advisories per version); a tenant admin sees only its own
column and gets a 404 page for a group its tenant is not in. Screenshots go to the test's tmp dir; the
pages raise no Content-Security-Policy violation (every asset is shipped, nothing inline runs).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from powerx_governance.auth.model import Role
from tests.conftest import (
    FakeClock,
    LiveServer,
    PostgresServer,
    built_services,
    issue_token,
    provisioned_database,
)
from tests.functional.baselines.support import (
    ADVISORY,
    CRM,
    GROUP,
    SOLO,
    T1,
    T2,
    T3,
    scanned,
    write_group_fleet,
)
from tests.functional.console.support import CHROMIUM_ARGS, chromium_or_skip, user_data_dir


def _no_postgres() -> PostgresServer:
    raise AssertionError("the browser test runs on SQLite")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with (
        provisioned_database("sqlite", tmp_path, _no_postgres) as url,
        built_services(url, tmp_path) as build,
    ):
        service = scanned(build, write_group_fleet(tmp_path / "fleet"), FakeClock())
        with LiveServer(service, background=False) as server:
            yield server


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    chromium = chromium_or_skip()
    with sync_playwright() as driver, user_data_dir() as profile:
        context = driver.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            args=list(CHROMIUM_ARGS),
            headless=True,
            viewport={"width": 1280, "height": 800},
            locale="en-GB",
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()


def _signed_in(context: BrowserContext, live: LiveServer, token: str, violations: list[str]) -> Page:
    context.clear_cookies()
    page = context.new_page()
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{live.base_url}/console")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live.base_url}/console")
    return page


def test_operator_and_tenant_admin_walk_groups_and_the_plugin_fleet_view(
    live: LiveServer, browser: BrowserContext, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    violations: list[str] = []
    page = _signed_in(browser, live, issue_token(live.service, Role.OPERATOR), violations)

    page.goto(f"{live.base_url}/console/groups")
    groups = page.locator("#groups")
    expect(groups.get_by_role("row").nth(1)).to_contain_text("Platform tenants")  # conflicts first
    expect(groups.get_by_role("row").nth(1)).to_contain_text("1")
    page.screenshot(path=shots / "groups.png", full_page=True)

    groups.get_by_role("link", name="Platform tenants").click()
    expect(page).to_have_url(f"{live.base_url}/console/groups/{GROUP}")
    conflicts = page.locator("#conflicts")
    expect(conflicts).to_contain_text(CRM)
    expect(conflicts).to_contain_text("needs core >= 3.0.0 (min_core), members run core 1.24.0")
    grid = page.locator("#group-grid")
    expect(grid.get_by_role("columnheader")).to_have_count(5)  # plugin, baseline, three members
    expect(grid.get_by_role("row").nth(1)).to_contain_text("conflict")  # the conflicting plugin first
    expect(grid).to_contain_text("1.0.1")
    page.screenshot(path=shots / "group.png", full_page=True)

    grid.get_by_role("link", name=CRM).click()
    expect(page).to_have_url(f"{live.base_url}/console/fleet/plugins/{CRM}")
    chart = page.locator("#distribution svg[role=img]")
    expect(chart).to_have_count(1)
    values = page.locator("#distribution-values")
    for version in ("3.0.0", "2.0.0", "1.1.0"):
        expect(values.get_by_role("row", name=re.compile(version))).to_contain_text("33.3 %")
    expect(values.get_by_role("row", name=re.compile("1.1.0"))).to_contain_text(ADVISORY)
    expect(page.locator("#v-3")).to_contain_text("1.1.0")
    expect(page.get_by_role("link", name=T1)).to_have_count(1)
    page.screenshot(path=shots / "plugin-fleet.png", full_page=True)

    page = _signed_in(browser, live, issue_token(live.service, Role.TENANT_ADMIN, T1), violations)
    page.goto(f"{live.base_url}/console/groups/{GROUP}")
    grid = page.locator("#group-grid")
    expect(grid.get_by_role("columnheader")).to_have_count(3)  # plugin, baseline, its own tenant
    expect(grid).not_to_contain_text(T2)
    expect(page.locator("#conflicts")).not_to_contain_text(T3)
    page.screenshot(path=shots / "group-tenant-admin.png", full_page=True)
    answer = page.goto(f"{live.base_url}/console/groups/{SOLO}")
    assert answer is not None
    assert answer.status == 404
    page.screenshot(path=shots / "group-not-yours.png", full_page=True)
    page.goto(f"{live.base_url}/console/fleet/plugins/{CRM}")
    expect(page.locator("#distribution-values").get_by_role("row")).to_have_count(2)  # header + its version

    assert violations == []
    assert sorted(p.name for p in shots.iterdir()) == [
        "group-not-yours.png",
        "group-tenant-admin.png",
        "group.png",
        "groups.png",
        "plugin-fleet.png",
    ]
