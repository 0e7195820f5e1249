"""`powerx version groups | inventory` on the same store as a running service (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from powerx_governance.audit.tables import AuditEventRow
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.baselines.support import ADVISORY, BASE, CRM, T1, T2, T3, scanned, write_group_fleet
from tests.functional.cli import powerx_with


def _json(env: dict[str, str], *args: str) -> Any:
    done = powerx_with(env, "version", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_groups_and_inventory_from_the_command_line(make_service: ServiceFactory, tmp_path: Path) -> None:
    service = scanned(make_service, write_group_fleet(tmp_path), FakeClock())
    env = {**service.settings.environ, "POWERX_SCHEDULER": "0", "POWERX_WORKER": "0"}

    made = powerx_with(
        env, "version", "groups", "create", "core12", "--tenant", T1, "--tenant", T2, "--actor", "li"
    )
    assert made.returncode == 0, made.stderr
    again = powerx_with(env, "version", "groups", "create", "core12", "--tenant", T1)
    assert (again.returncode, "already" in again.stderr) == (2, True)
    listed = {g["id"]: g for g in _json(env, "groups", "list")}
    assert (listed["core12"]["source"], listed["core12"]["members"], listed["core12"]["conflicts"]) == (
        "api",
        2,
        1,
    )

    pinned = powerx_with(
        env,
        "version",
        "groups",
        "baseline",
        "core12",
        CRM,
        "--version",
        "2.0.0",
        "--reason",
        "move to core 2",
        "--actor",
        "li",
    )
    assert pinned.returncode == 0, pinned.stderr
    shown = _json(env, "groups", "show", "core12")
    crm = next(b for b in shown["baselines"] if b["plugin_id"] == CRM)
    assert (crm["mode"], crm["baseline"], crm["revision"]) == ("explicit", "2.0.0", 1)
    drift = _json(env, "groups", "drift", "--group", "core12")
    assert [(d["tenant_uuid"], d["plugin_id"], d["status"]) for d in drift] == [(T1, CRM, "behind")]
    bad = powerx_with(
        env, "version", "groups", "baseline", "core12", CRM, "--version", "two", "--reason", "x"
    )
    assert (bad.returncode, "version: neither a version nor a constraint" in bad.stderr) == (2, True)

    running = _json(env, "inventory", "tenants", CRM, "--version", ">=2.0.0", "--group", "platform")
    assert [(t["tenant_uuid"], t["version"]) for t in running["items"]] == [(T2, "2.0.0"), (T3, "3.0.0")]
    spread = _json(env, "inventory", "distribution", BASE)
    assert spread["items"] == [{"version": "1.0.1", "tenants": 3, "share": 1.0}]
    affected = _json(env, "inventory", "affected", "CVE-2026-40001")
    assert (affected["advisory_id"], affected["tenants_total"]) == (ADVISORY, 1)

    removed = powerx_with(env, "version", "groups", "delete", "core12", "--actor", "li")
    assert removed.returncode == 0, removed.stderr
    with service.factory() as session:
        audited = session.execute(
            select(AuditEventRow.operation, AuditEventRow.resource_id, AuditEventRow.actor)
            .where(AuditEventRow.resource_type.in_(("tenant_group", "group_baseline")))
            .order_by(AuditEventRow.seq)
        ).all()
    assert [tuple(a) for a in audited] == [
        ("group.created", "core12", "cli:li"),
        ("baseline.set", f"core12/{CRM}", "cli:li"),
        ("group.deleted", "core12", "cli:li"),
    ]
