"""CycloneDX exports of the example fleet: the SBOM and the VEX validate against the 1.6 schema with
`cyclonedx-python-lib`'s own validator, and every decision kind gives its VEX analysis.

The sandbox tenant's CRM finding (PXSA-2026-0014) is ignored as the README's example does ("read-only
sandbox", until 2027-01-31): it appears as `exploitable` / `will_not_fix` with that reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from sqlalchemy import select

from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import Principal
from powerx_governance.baselines.export import ExportKind, Scope, analysis_of, build
from powerx_governance.db.session import transaction
from powerx_governance.decisions.model import DecisionKind, DecisionState, IgnoreScope
from powerx_governance.decisions.service import DecisionRequest, decide
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.inventory import store as inventory_store
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from tests.conftest import REPO, FakeClock, ServiceFactory
from tests.functional.cli import powerx_with

SANDBOX: Final = "sandbox-tenant-a"
OPERATOR: Final = Principal(0, "ops@powerx.test", Role.OPERATOR, None)
VALIDATOR: Final = JsonStrictValidator(SchemaVersion.V1_6)


def _decide(service: GovernanceService, plugin: str, kind: DecisionKind, **fields: Any) -> None:
    with transaction(service.factory) as session:
        rec = session.execute(
            select(RecommendationRow).where(
                RecommendationRow.tenant_uuid == SANDBOX, RecommendationRow.plugin_id == plugin
            )
        ).scalar_one()
        request = DecisionRequest(recommendation_id=rec.id, revision=rec.revision, kind=kind, **fields)
        decide(session, service.notifications, request, OPERATOR, service.clock())


def _upgrade_in_inventory(service: GovernanceService, plugin: str, version: str) -> None:
    """The sandbox upgrades a plugin (a manifest push), then a delta scan resolves its finding."""
    with transaction(service.factory) as session:
        [manifest] = inventory_store.load_manifests(session, [SANDBOX])
        plugins = tuple(
            msgspec.structs.replace(p, version=version) if p.plugin_id == plugin else p
            for p in manifest.plugins
        )
        inventory_store.upsert_manifests(
            session, [msgspec.structs.replace(manifest, plugins=plugins)], service.clock()
        )
    service.request_scan(ScanKind.DELTA, ScanTrigger.PUSH)
    service.run_pending(limit=1000)


def _analyses(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["affects"][0]["ref"].split("@")[0].split("/")[1]: v for v in document["vulnerabilities"]}


def test_each_decision_kind_gives_its_vex_analysis_and_the_documents_validate(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    clock = FakeClock()
    service = make_service(clock=clock, POWERX_WORKER="0")
    service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending(limit=10_000)
    until = datetime(2027, 1, 31, tzinfo=UTC)
    _decide(
        service,
        "com.powerx.plugins.crm",
        DecisionKind.IGNORE,
        reason="read-only sandbox",
        scope=IgnoreScope.UNTIL,
        until=until,
        approver="ciso@powerx.test",
    )
    _decide(service, "com.powerx.plugins.wecom-connector", DecisionKind.UPGRADE)
    _decide(
        service, "com.powerx.plugins.forms", DecisionKind.SCHEDULE, scheduled_for=clock() + timedelta(days=3)
    )
    _upgrade_in_inventory(service, "com.powerx.plugins.i18n", "1.4.0")

    with service.factory() as session:
        vex = build(session, ExportKind.VEX, Scope((SANDBOX,)), clock())
        sbom = build(session, ExportKind.SBOM, Scope((SANDBOX,)), clock())
    assert VALIDATOR.validate_str(json.dumps(vex)) is None
    assert VALIDATOR.validate_str(json.dumps(sbom)) is None
    assert (vex["bomFormat"], vex["specVersion"]) == ("CycloneDX", "1.6")

    found = _analyses(vex)
    crm = found["com.powerx.plugins.crm"]
    assert crm["id"] == "PXSA-2026-0014"
    assert crm["affects"][0]["ref"] == f"{SANDBOX}/com.powerx.plugins.crm@2.3.0"
    assert crm["analysis"]["state"] == "exploitable", crm
    assert crm["analysis"]["response"] == ["will_not_fix"]
    assert (
        crm["analysis"]["detail"]
        == "ignored by ops@powerx.test (until 2027-01-31T00:00:00+00:00): read-only sandbox"
    )
    upgrade = found["com.powerx.plugins.wecom-connector"]["analysis"]
    assert (upgrade["state"], upgrade["response"]) == ("exploitable", ["update"])
    schedule = found["com.powerx.plugins.forms"]["analysis"]
    assert (schedule["state"], schedule["response"]) == ("exploitable", ["update"])
    assert "scheduled for" in schedule["detail"]
    fixed = found["com.powerx.plugins.i18n"]["analysis"]
    assert fixed["state"] == "resolved"
    assert "response" not in fixed

    plugins = {c["name"]: c["version"] for t in sbom["components"] for c in t["components"]}
    assert plugins["powerx-core"] == "1.24.0"
    assert (plugins["com.powerx.plugins.crm"], plugins["com.powerx.plugins.i18n"]) == ("2.3.0", "1.4.0")


@pytest.mark.parametrize(
    ("state", "kind", "decision_state", "expected"),
    [
        ("open", None, None, ("in_triage", ())),
        ("decided", DecisionKind.UPGRADE, DecisionState.ACTIVE, ("exploitable", ("update",))),
        ("decided", DecisionKind.SCHEDULE, DecisionState.ACTIVE, ("exploitable", ("update",))),
        ("ignored", DecisionKind.IGNORE, DecisionState.ACTIVE, ("exploitable", ("will_not_fix",))),
        ("open", DecisionKind.IGNORE, DecisionState.EXPIRED, ("in_triage", ())),
        ("open", DecisionKind.UPGRADE, DecisionState.FULFILLED, ("resolved", ())),
        ("resolved", DecisionKind.SCHEDULE, DecisionState.ACTIVE, ("resolved", ())),
    ],
)
def test_the_analysis_of_every_decision_kind_and_state(
    state: str,
    kind: DecisionKind | None,
    decision_state: DecisionState | None,
    expected: tuple[str, tuple[str, ...]],
) -> None:
    decision = None
    if kind is not None and decision_state is not None:
        decision = DecisionRow(
            kind=kind.value, state=decision_state.value, actor="ops", reason="why", target_version="2.4.0"
        )
    analysis = analysis_of(state, decision, "2.3.0")
    assert (analysis.state.value, tuple(r.value for r in analysis.responses)) == expected


def test_the_cli_exports_a_group_and_a_tenant(make_service: ServiceFactory, tmp_path: Path) -> None:
    """`powerx version export` on the same store (SQLite and PostgreSQL)."""
    groups = str(REPO / "config" / "version" / "groups.yaml")
    service = make_service(POWERX_WORKER="0", POWERX_GROUPS=groups)
    service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending(limit=10_000)
    env = {**service.settings.environ, "POWERX_SCHEDULER": "0", "POWERX_WORKER": "0"}
    evaluated = powerx_with(env, "version", "groups", "evaluate")
    assert evaluated.returncode == 0, evaluated.stderr
    out = tmp_path / "sandbox.vex.json"
    done = powerx_with(
        env, "version", "export", "--format", "cyclonedx-vex", "--tenant", "sandbox-a", "--output", out
    )
    assert done.returncode == 0, done.stderr
    assert VALIDATOR.validate_str(out.read_text(encoding="utf-8")) is None
    group = powerx_with(env, "version", "export", "--format", "cyclonedx-sbom", "--group", "sandboxes")
    assert group.returncode == 0, group.stderr
    document = json.loads(group.stdout)
    assert [c["bom-ref"] for c in document["components"]] == [SANDBOX]
    unknown = powerx_with(env, "version", "export", "--format", "cyclonedx-sbom", "--group", "nope")
    assert (unknown.returncode, "no tenant group 'nope'" in unknown.stderr) == (2, True)
