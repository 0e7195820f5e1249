"""Helpers for the console tests: a scanned example fleet behind a live server, sign-in, Chromium."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import httpx
import pytest
from sqlalchemy import select

from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import REPO, FakeClock, ServiceFactory

SANDBOX: Final = "sandbox-tenant-a"
ACME: Final = "90072176-2ac5-5c15-a81e-9bece3eb7393"  # acme-retail: another tenant of the example fleet
CRM: Final = "com.powerx.plugins.crm"
CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS: Final = REPO / "var" / "test-artifacts" / "console"
_CSRF: Final = re.compile(r'name="csrf_token" value="([^"]+)"')


def scanned_service(
    make_service: ServiceFactory, *, clock: FakeClock | None = None, **env: str
) -> GovernanceService:
    """A service on the example fleet after one full scan (run here, before any server starts)."""
    service = make_service(clock=clock, **env)
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending()
    with service.factory() as session:
        status = session.get_one(ScanRow, scan_id).status
    assert status in ("succeeded", "incomplete"), f"the first scan did not run: {status}"
    return service


def recommendation_id(service: GovernanceService, tenant: str, plugin: str) -> int:
    with service.factory() as session:
        return session.execute(
            select(RecommendationRow.id).where(
                RecommendationRow.tenant_uuid == tenant, RecommendationRow.plugin_id == plugin
            )
        ).scalar_one()


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client, token: str, next_path: str = "/console") -> httpx.Response:
    """Sign in through the form, as a browser does; returns the answer to the POST."""
    form = client.get("/console/sign-in", params={"next": next_path})
    assert form.status_code == 200, form.text
    return client.post(
        "/console/sign-in", data={"token": token, "csrf_token": csrf_of(form.text), "next": next_path}
    )


def chromium_or_skip() -> Path:
    """Debian's Chromium. Missing: a failure under CI or where apt-get could install it, else a skip."""
    if CHROMIUM.exists():
        return CHROMIUM
    message = f"{CHROMIUM} is missing (apt-get install chromium; make test installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the browser tests")
    if shutil.which("apt-get") and os.geteuid() == 0:
        pytest.fail(f"{message}: apt-get can install it here")
    pytest.skip(f"{message}; apt-get cannot install it on this machine")


@contextmanager
def user_data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="powerx-chromium-") as directory:
        yield Path(directory)


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
