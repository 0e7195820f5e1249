"""CycloneDX 1.6 exports built with `cyclonedx-python-lib`: an SBOM of installed plugins (and the core)
per tenant, and a VEX of the findings with the analysis the admins' decisions give them.

VEX analysis from decisions:
- an active upgrade or schedule decision: state `exploitable`, response `update` (the detail says
  which target and when);
- an active ignore decision: state `exploitable`, response `will_not_fix`, the detail carrying the
  admin's reason (the justification text) and the ignore's expiry;
- a finding resolved (the installation moved off the affected version) or a fulfilled upgrade:
  state `resolved`;
- no decision in force: state `in_triage`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import ImpactAnalysisResponse, ImpactAnalysisState
from cyclonedx.model.tool import ToolRepository
from cyclonedx.model.vulnerability import (
    BomTarget,
    BomTargetVersionRange,
    Vulnerability,
    VulnerabilityAnalysis,
    VulnerabilityRating,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance import __version__
from powerx_governance.baselines.model import BaselineSpecError
from powerx_governance.baselines.tables import GroupMemberRow
from powerx_governance.db.chunks import chunks
from powerx_governance.decisions.model import DecisionKind, DecisionState
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow, VerdictRow

SCHEMA_VERSION: Final = SchemaVersion.V1_6
MEDIA_TYPE: Final = "application/vnd.cyclonedx+json"
_PROPERTY_PREFIX: Final = "powerx"
_SEVERITY: Final = {
    "critical": VulnerabilitySeverity.CRITICAL,
    "high": VulnerabilitySeverity.HIGH,
    "medium": VulnerabilitySeverity.MEDIUM,
    "low": VulnerabilitySeverity.LOW,
    "none": VulnerabilitySeverity.NONE,
}


class ExportKind(StrEnum):
    SBOM = "cyclonedx-sbom"
    VEX = "cyclonedx-vex"


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose inventory an export covers: one tenant, or a group's members."""

    tenants: tuple[str, ...]
    group_id: str | None = None


def export_tenants(session: Session, *, tenant: str | None, group_id: str | None) -> Scope:
    """The tenants of an export: the caller's tenant (within the group, if named), or the group's members."""
    if group_id is None and tenant is None:
        raise BaselineSpecError(
            "tenant", "name a tenant or a group: a fleet-wide export is not built in memory"
        )
    if group_id is None:
        return Scope((tenant,) if tenant else ())
    stmt = select(GroupMemberRow.tenant_uuid).where(GroupMemberRow.group_id == group_id)
    members = sorted(session.execute(stmt).scalars())
    return Scope(tuple(m for m in members if tenant is None or m == tenant), group_id)


def _ref(tenant: str, plugin_id: str | None = None, version: str | None = None) -> str:
    return f"{tenant}" if plugin_id is None else f"{tenant}/{plugin_id}@{version}"


def _tenant_component(manifest: TenantManifest) -> Component:
    core = Component(
        type=ComponentType.PLATFORM,
        name="powerx-core",
        group="com.powerx",
        version=manifest.core_version,
        bom_ref=f"{manifest.tenant_uuid}/core@{manifest.core_version}",
        properties=[Property(name=f"{_PROPERTY_PREFIX}:host", value=manifest.host_id)],
    )
    plugins = [
        Component(
            type=ComponentType.LIBRARY,
            name=p.plugin_id,
            version=p.version,
            bom_ref=_ref(manifest.tenant_uuid, p.plugin_id, p.version),
            properties=[
                Property(name=f"{_PROPERTY_PREFIX}:channel", value=p.channel.value),
                Property(name=f"{_PROPERTY_PREFIX}:state", value=p.state.value),
                Property(name=f"{_PROPERTY_PREFIX}:pinned", value=str(p.pinned).lower()),
            ],
        )
        for p in sorted(manifest.plugins, key=lambda p: p.plugin_id)
    ]
    facts = [Property(name=f"{_PROPERTY_PREFIX}:tenant_uuid", value=manifest.tenant_uuid)]
    if manifest.plan:
        facts.append(Property(name=f"{_PROPERTY_PREFIX}:plan", value=manifest.plan.value))
    facts += [Property(name=f"{_PROPERTY_PREFIX}:tag", value=t) for t in manifest.tags]
    return Component(
        type=ComponentType.APPLICATION,
        name=manifest.tenant_key or manifest.tenant_uuid,
        description=manifest.name,
        bom_ref=_ref(manifest.tenant_uuid),
        components=[core, *plugins],
        properties=facts,
    )


def _subject(scope: Scope) -> Component:
    if scope.group_id is not None:
        return Component(
            type=ComponentType.APPLICATION, name=f"group:{scope.group_id}", bom_ref=f"group:{scope.group_id}"
        )
    tenant = scope.tenants[0] if scope.tenants else "none"
    return Component(type=ComponentType.APPLICATION, name=f"tenant:{tenant}", bom_ref=f"tenant:{tenant}")


def _bom(
    manifests: Sequence[TenantManifest], scope: Scope, now: datetime
) -> tuple[Bom, dict[str, Component]]:
    subject = _subject(scope)
    tool = Component(
        type=ComponentType.APPLICATION,
        group="com.powerx",
        name="powerx-version-governance",
        version=__version__,
    )
    metadata = BomMetaData(component=subject, timestamp=now, tools=ToolRepository(components=[tool]))
    bom = Bom(serial_number=uuid.uuid4(), metadata=metadata)
    tenants = [_tenant_component(m) for m in manifests]
    bom.components = tenants
    bom.register_dependency(subject, tenants)
    for tenant in tenants:
        bom.register_dependency(tenant, list(tenant.components))
        for child in tenant.components:
            bom.register_dependency(child)
    plugins = {str(c.bom_ref): c for t in tenants for c in t.components}
    return bom, plugins


def build(session: Session, kind: ExportKind, scope: Scope, now: datetime) -> dict[str, Any]:
    """The export as a JSON document (validated by the tests with the library's schema validator)."""
    manifests = inventory_store.load_manifests(session, list(scope.tenants)) if scope.tenants else []
    bom, plugins = _bom(manifests, scope, now)
    if kind is ExportKind.VEX:
        bom.vulnerabilities = list(_vulnerabilities(session, scope.tenants, plugins, now))
    document: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# -- VEX ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Analysis:
    state: ImpactAnalysisState
    responses: tuple[ImpactAnalysisResponse, ...]
    detail: str


def analysis_of(rec_state: str, decision: DecisionRow | None, installed: str) -> Analysis:
    """The VEX analysis of one finding's advisories, from the recommendation and its decision."""
    if rec_state == RecommendationState.RESOLVED.value or (
        decision is not None and decision.state == DecisionState.FULFILLED.value
    ):
        return Analysis(
            ImpactAnalysisState.RESOLVED,
            (),
            f"fixed: the installation moved off the affected version {installed}",
        )
    if decision is None or decision.state != DecisionState.ACTIVE.value:
        return Analysis(ImpactAnalysisState.IN_TRIAGE, (), "no decision taken yet")
    if decision.kind == DecisionKind.IGNORE.value:
        until = f" (until {decision.until.isoformat()})" if decision.until else ""
        detail = f"ignored by {decision.actor}{until}: {decision.reason or 'no reason given'}"
        return Analysis(ImpactAnalysisState.EXPLOITABLE, (ImpactAnalysisResponse.WILL_NOT_FIX,), detail)
    when = f" scheduled for {decision.scheduled_for.isoformat()}" if decision.scheduled_for else ""
    target = decision.target_version or "the recommended target"
    detail = f"{decision.kind} to {target}{when}, decided by {decision.actor}"
    if decision.reason:
        detail += f": {decision.reason}"
    return Analysis(ImpactAnalysisState.EXPLOITABLE, (ImpactAnalysisResponse.UPDATE,), detail)


def _decisions(session: Session, rec_ids: list[int]) -> dict[int, DecisionRow]:
    """The newest decision of each recommendation."""
    newest: dict[int, DecisionRow] = {}
    for part in chunks(rec_ids):
        stmt = select(DecisionRow).where(DecisionRow.recommendation_id.in_(part)).order_by(DecisionRow.id)
        for row in session.execute(stmt).scalars():
            newest[row.recommendation_id] = row
    return newest


def _findings(session: Session, tenants: Sequence[str]) -> list[tuple[RecommendationRow, dict[str, Any]]]:
    found: list[tuple[RecommendationRow, dict[str, Any]]] = []
    stmt = select(RecommendationRow, VerdictRow.document).join(VerdictRow)
    for part in chunks(list(tenants)):
        rows = session.execute(
            stmt.where(RecommendationRow.tenant_uuid.in_(part)).order_by(RecommendationRow.id)
        )
        found += [(rec, doc) for rec, doc in rows]
    return found


def _earlier_advisories(session: Session, rec_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """recommendation → advisory id → the advisory as an earlier revision of its finding listed it."""
    earlier: dict[int, dict[str, dict[str, Any]]] = {}
    stmt = (
        select(RecommendationRevisionRow.recommendation_id, VerdictRow.document)
        .join(VerdictRow, VerdictRow.fingerprint == RecommendationRevisionRow.verdict)
        .order_by(RecommendationRevisionRow.recommendation_id, RecommendationRevisionRow.revision)
    )
    for part in chunks(rec_ids):
        for rec_id, doc in session.execute(stmt.where(RecommendationRevisionRow.recommendation_id.in_(part))):
            for advisory in doc.get("advisories", ()):
                earlier.setdefault(rec_id, {})[advisory["id"]] = advisory
    return earlier


def _vulnerabilities(
    session: Session, tenants: Sequence[str], plugins: dict[str, Component], now: datetime
) -> Iterable[Vulnerability]:
    """The advisories of every finding with the analysis its decision gives, and the advisories an
    earlier revision listed that the installation no longer carries (fixed: `resolved`)."""
    findings = _findings(session, tenants)
    rec_ids = [rec.id for rec, _ in findings]
    decisions, earlier = _decisions(session, rec_ids), _earlier_advisories(session, rec_ids)
    for rec, doc in findings:
        installed = _installed_ref(plugins, rec)
        closed = rec.state == RecommendationState.RESOLVED.value
        current = {} if closed else {a["id"]: a for a in doc.get("advisories", ())}
        analysis = analysis_of(rec.state, decisions.get(rec.id), rec.current_version)
        for advisory in current.values():
            yield _vulnerability(rec, advisory, installed, analysis, now)
        fixed = analysis_of(RecommendationState.RESOLVED.value, None, rec.current_version)
        for advisory_id, advisory in earlier.get(rec.id, {}).items():
            if advisory_id not in current:
                yield _vulnerability(rec, advisory, installed, fixed, now)


def _installed_ref(plugins: dict[str, Component], rec: RecommendationRow) -> str:
    """The component the finding is about (the installed version; the finding's, when it moved since)."""
    exact = _ref(rec.tenant_uuid, rec.plugin_id, rec.current_version)
    if exact in plugins:
        return exact
    prefix = f"{rec.tenant_uuid}/{rec.plugin_id}@"
    return next((ref for ref in plugins if ref.startswith(prefix)), _ref(rec.tenant_uuid))


def _vulnerability(
    rec: RecommendationRow,
    advisory: dict[str, Any],
    target: str,
    analysis: Analysis,
    now: datetime,
) -> Vulnerability:
    ratings = []
    if advisory.get("vector") and advisory.get("cvss") is not None:
        method = (
            VulnerabilityScoreSource.CVSS_V4
            if str(advisory["vector"]).startswith("CVSS:4")
            else VulnerabilityScoreSource.CVSS_V3
        )
        ratings.append(
            VulnerabilityRating(
                score=Decimal(str(advisory["cvss"])),
                severity=_SEVERITY.get(advisory.get("severity", ""), VulnerabilitySeverity.UNKNOWN),
                method=method,
                vector=advisory["vector"],
            )
        )
    else:
        ratings.append(
            VulnerabilityRating(
                severity=_SEVERITY.get(advisory.get("severity", ""), VulnerabilitySeverity.UNKNOWN)
            )
        )
    affected_version = BomTargetVersionRange(version=rec.current_version)
    return Vulnerability(
        bom_ref=f"{advisory['id']}:{rec.tenant_uuid}/{rec.plugin_id}",
        id=advisory["id"],
        source=VulnerabilitySource(name="OSV"),
        description=advisory.get("summary"),
        ratings=ratings,
        recommendation=f"upgrade to {advisory['fixed_in']}" if advisory.get("fixed_in") else None,
        analysis=VulnerabilityAnalysis(
            state=analysis.state,
            responses=list(analysis.responses) or None,
            detail=analysis.detail,
            first_issued=rec.first_seen_at,
            last_updated=rec.updated_at,
        ),
        affects=[BomTarget(ref=target, versions=[affected_version])],
        properties=[Property(name=f"{_PROPERTY_PREFIX}:recommendation_id", value=str(rec.id))],
        updated=now,
    )
