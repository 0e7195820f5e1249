"""One scanned example fleet per backend behind a live server, with a token of every role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import httpx
import pytest

from powerx_governance.auth.model import Role
from powerx_governance.service import GovernanceService
from tests.conftest import (
    BACKENDS,
    Backend,
    LiveServer,
    built_services,
    issue_token,
    postgres_getter,
    provisioned_database,
)
from tests.functional.console.support import ACME, SANDBOX, csrf_of, recommendation_id, scanned_service

API: Final = "/internal/version/governance"
CRM: Final = "com.powerx.plugins.crm"


@dataclass(frozen=True)
class Target:
    """The service under attack, on one backend."""

    backend: Backend
    service: GovernanceService
    live: LiveServer
    tokens: dict[str, str]

    def client(self, who: str | None) -> httpx.Client:
        return self.live.client(self.tokens[who] if who else None)

    @contextmanager
    def console(self, who: str) -> Iterator[httpx.Client]:
        """A browser-like client signed in to the console as `who`."""
        with httpx.Client(base_url=self.live.base_url, timeout=30) as client:
            form = client.get("/console/sign-in")
            answer = client.post(
                "/console/sign-in", data={"token": self.tokens[who], "csrf_token": csrf_of(form.text)}
            )
            assert answer.status_code == 303, answer.text
            yield client

    def csrf(self, client: httpx.Client, path: str) -> str:
        page = client.get(path)
        assert page.status_code == 200, page.text
        return csrf_of(page.text)

    def rec(self, tenant: str, plugin: str = CRM) -> int:
        return recommendation_id(self.service, tenant, plugin)


def _tokens(service: GovernanceService) -> dict[str, str]:
    return {
        "service": issue_token(service, Role.SERVICE),
        "operator": issue_token(service, Role.OPERATOR),
        "admin_a": issue_token(service, Role.TENANT_ADMIN, SANDBOX),
        "viewer_a": issue_token(service, Role.VIEWER, SANDBOX),
        "admin_b": issue_token(service, Role.TENANT_ADMIN, ACME),
        "viewer_b": issue_token(service, Role.VIEWER, ACME),
    }


@pytest.fixture(scope="module", params=BACKENDS, ids=list(BACKENDS))
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    backend: Backend = request.param
    directory = tmp_path_factory.mktemp(f"hardening-{backend}")
    with (
        provisioned_database(backend, directory, postgres_getter(request)) as url,
        built_services(url, directory) as build,
    ):
        service = scanned_service(build, POWERX_WORKER="0")
        tokens = _tokens(service)
        with LiveServer(service, background=False) as live:
            yield Target(backend, service, live, tokens)
