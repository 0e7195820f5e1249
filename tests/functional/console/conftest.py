"""Console fixtures: one scanned example fleet behind a live server per module, real Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Playwright, sync_playwright

from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, LiveServer, built_services, provisioned_database
from tests.functional.console.support import CHROMIUM_ARGS, chromium_or_skip, scanned_service, user_data_dir
from tests.functional.service.support import Inputs

OpenBrowser = Callable[..., BrowserContext]


def _no_postgres() -> Any:
    raise AssertionError("the browser tests run on SQLite")


@dataclass(frozen=True)
class ConsoleServer:
    service: GovernanceService
    live: LiveServer
    inputs: Inputs  # the files the service scans: a test may change a manifest, then scan
    clock: FakeClock


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    """The example fleet, scanned, served with its worker running (console-triggered scans run)."""
    directory = tmp_path_factory.mktemp("console")
    inputs = Inputs(directory / "inputs")
    clock = FakeClock()
    with (
        provisioned_database("sqlite", directory, _no_postgres) as url,
        built_services(url, directory) as build,
    ):
        service = scanned_service(
            build,
            clock=clock,
            **inputs.sources,
        )
        with LiveServer(service) as live:
            yield ConsoleServer(service, live, inputs, clock)


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    chromium = chromium_or_skip()
    assert chromium.exists()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def open_browser(playwright_driver: Playwright) -> Iterator[OpenBrowser]:
    """`open_browser()`: a new headless Chromium with a fresh profile (its own cookies), closed after."""
    contexts: list[BrowserContext] = []
    with ExitStack() as stack:

        def launch(**options: Any) -> BrowserContext:
            profile: Path = stack.enter_context(user_data_dir())
            settings: dict[str, Any] = {
                "viewport": {"width": 1280, "height": 800},
                "timezone_id": "Asia/Shanghai",  # not UTC, so local times differ from the UTC text
                "locale": "en-GB",
                **options,
            }
            context = playwright_driver.chromium.launch_persistent_context(
                str(profile),
                executable_path=str(chromium_or_skip()),
                args=list(CHROMIUM_ARGS),
                headless=True,
                **settings,
            )
            context.set_default_timeout(15_000)
            contexts.append(context)
            return context

        yield launch
        for context in contexts:
            context.close()
