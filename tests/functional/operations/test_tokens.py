"""`powerx version token create --tenant …`: a tenant's token names a stored tenant (uuid or key)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

from sqlalchemy import select

from powerx_governance.auth.tables import ApiTokenRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from tests.conftest import LiveServer, ServiceFactory, service_env
from tests.functional.cli import powerx_with

ACME_UUID: Final = "90072176-2ac5-5c15-a81e-9bece3eb7393"
ACME_KEY: Final = "acme-retail"


def _token_create(database_url: str, var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return powerx_with(service_env(database_url, var), "version", "token", "create", *args)


def test_a_tenant_token_names_a_stored_tenant_by_uuid_or_key(
    make_service: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    service = make_service(POWERX_WORKER="0")
    service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending()
    by_key = _token_create(
        database_url, tmp_path, "--name", "ana", "--role", "tenant_admin", "--tenant", ACME_KEY
    )
    by_uuid = _token_create(database_url, tmp_path, "--name", "bo", "--role", "viewer", "--tenant", ACME_UUID)
    unknown = _token_create(
        database_url, tmp_path, "--name", "cy", "--role", "viewer", "--tenant", "nobody-inc"
    )
    assert (by_key.returncode, by_uuid.returncode) == (0, 0), by_key.stderr + by_uuid.stderr
    assert f"(tenant_admin of {ACME_UUID})" in by_key.stderr
    assert unknown.returncode == 2
    assert "unknown tenant 'nobody-inc'" in unknown.stderr
    with service.factory() as session:
        stored = session.execute(
            select(ApiTokenRow.name, ApiTokenRow.tenant_uuid).order_by(ApiTokenRow.id)
        ).all()
    assert [tuple(row) for row in stored] == [("ana", ACME_UUID), ("bo", ACME_UUID)]
    with LiveServer(service, background=False) as live, live.client(by_key.stdout.strip()) as client:
        items = client.get("/internal/version/governance/recommendations", params={"limit": 500}).json()[
            "items"
        ]
    assert items
    assert {i["tenant_uuid"] for i in items} == {ACME_UUID}


def test_a_fleet_token_takes_no_tenant_and_a_tenant_role_needs_one(
    make_service: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    make_service(POWERX_WORKER="0")
    fleet = _token_create(database_url, tmp_path, "--name", "ops", "--role", "operator", "--tenant", ACME_KEY)
    missing = _token_create(database_url, tmp_path, "--name", "ana", "--role", "tenant_admin")
    assert (fleet.returncode, missing.returncode) == (2, 2)
    assert "fleet-wide and takes no tenant" in fleet.stderr
    assert "needs a tenant" in missing.stderr
