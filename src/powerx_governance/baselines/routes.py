"""Groups, baselines, drift, fleet inventory and CycloneDX exports over HTTP.

Every read is tenant-scoped: a tenant-bound caller sees the groups its tenant belongs to (its own
row of each), inventory rows of its own tenant, and exports of its own tenant; other tenants and
their groups do not exist for it (404). Writes are for operators and audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from powerx_governance.api.deps import Operator, Reader, ServiceDep, SessionDep, TenantScope
from powerx_governance.api.problems import declared
from powerx_governance.baselines import export, fleet, queries, service
from powerx_governance.baselines.evaluation import Evaluator, evaluate
from powerx_governance.baselines.model import BaselineSpecError, DriftState, GroupSource, GroupSpec, Selector
from powerx_governance.db.session import transaction

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

router = APIRouter(prefix="/internal/version/governance", tags=["groups and inventory"])
GroupId = Annotated[str, Path(max_length=64, description="A tenant group id.")]
PluginQuery = Annotated[str, Query(min_length=1, max_length=256, description="A plugin id.")]
Limit = Annotated[int, Query(ge=1, le=5000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


class SelectorBody(BaseModel):
    tags: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=50)
    plans: list[Annotated[str, Field(max_length=16)]] = Field(default_factory=list, max_length=3)


class GroupBody(BaseModel):
    id: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=256)
    route: str | None = Field(default=None, max_length=256)
    select: SelectorBody = Field(default_factory=SelectorBody)
    tenants: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=10_000)


class BaselineBody(BaseModel):
    version: str | None = Field(
        default=None,
        max_length=256,
        description="A version or a constraint; null returns to the derived baseline.",
    )
    reason: str = Field(min_length=1, max_length=2000)


def _evaluator(svc: GovernanceService) -> Evaluator:
    return svc.require(Evaluator)


@router.get("/groups")
def list_groups(svc: ServiceDep, session: SessionDep, scope: TenantScope) -> dict[str, Any]:
    """Tenant groups with their member count, conflicts and open drift."""
    return {"items": queries.list_groups(session, _evaluator(svc).settings, tenant=scope)}


@router.post("/groups", status_code=201, responses=declared(409))
def create_group(body: GroupBody, who: Operator, svc: ServiceDep) -> dict[str, Any]:
    """Create a group (audited) and evaluate it at once."""
    spec = GroupSpec(
        id=body.id,
        name=body.name,
        route=body.route,
        select=Selector(tags=tuple(body.select.tags), plans=tuple(body.select.plans)),
        tenants=tuple(body.tenants),
        source=GroupSource.API,
    )
    evaluator = _evaluator(svc)
    with transaction(svc.factory) as session:
        service.create_group(session, evaluator.settings, spec, actor=who.name, now=svc.clock())
        evaluate(session, evaluator, svc.clock(), group_ids={spec.id})
    with svc.factory() as session:
        return queries.group_detail(session, evaluator.settings, spec.id, tenant=None)


@router.delete("/groups/{group_id}", status_code=204, responses=declared(409))
def delete_group(group_id: GroupId, who: Operator, svc: ServiceDep) -> Response:
    """Delete a group made through the API (audited); groups of the groups file change there."""
    with transaction(svc.factory) as session:
        service.delete_group(session, _evaluator(svc).settings, group_id, actor=who.name, now=svc.clock())
    return Response(status_code=204)


@router.get("/groups/{group_id}")
def group(group_id: GroupId, svc: ServiceDep, session: SessionDep, scope: TenantScope) -> dict[str, Any]:
    """A group: members x plugins with baseline and drift, conflicts first."""
    return queries.group_detail(session, _evaluator(svc).settings, group_id, tenant=scope)


@router.put("/groups/{group_id}/baselines")
def set_baseline(
    group_id: GroupId, plugin: PluginQuery, body: BaselineBody, who: Operator, svc: ServiceDep
) -> dict[str, Any]:
    """Set the group's explicit baseline for a plugin (a version or a constraint), or return it to
    derived (`version: null`); audited and versioned. The group is re-evaluated in the same transaction."""
    evaluator = _evaluator(svc)
    change = service.BaselineChange(group_id, plugin, body.version, body.reason)
    with transaction(svc.factory) as session:
        revision = service.change_baseline(
            session, evaluator.settings, change, actor=who.name, now=svc.clock()
        )
        outcome = evaluate(session, evaluator, svc.clock(), group_ids={group_id})
    svc.wake()
    with svc.factory() as session:
        detail = queries.group_detail(session, evaluator.settings, group_id, tenant=None)
    baseline = next(b for b in detail["baselines"] if b["plugin_id"] == plugin)
    return {"revision": revision, "baseline": baseline, "evaluation": outcome.as_dict()}


@router.get("/groups/{group_id}/baselines/history")
def baseline_history(
    group_id: GroupId, plugin: PluginQuery, _: Operator, svc: ServiceDep, session: SessionDep
) -> dict[str, Any]:
    """Every revision of the group's explicit baseline for a plugin."""
    service.get_group(session, _evaluator(svc).settings, group_id)
    return {"items": service.revisions(session, group_id, plugin)}


@router.post("/groups/evaluate", responses=declared(404))
def evaluate_groups(
    _: Operator, svc: ServiceDep, group: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    """Re-evaluate every group (or one) now: baselines, conflicts, drift and their announcements."""
    evaluator = _evaluator(svc)
    with transaction(svc.factory) as session:
        if group is not None:
            service.get_group(session, evaluator.settings, group)
        outcome = evaluate(session, evaluator, svc.clock(), group_ids=None if group is None else {group})
    svc.wake()
    return outcome.as_dict()


@router.get("/drift")
def drift(
    svc: ServiceDep,
    session: SessionDep,
    scope: TenantScope,
    group: Annotated[str | None, Query(max_length=64)] = None,
    state: DriftState | None = DriftState.OPEN,
) -> dict[str, Any]:
    """Drift items (open by default): members whose installed version differs from the group's baseline."""
    items = queries.list_drift(session, _evaluator(svc).settings, tenant=scope, group_id=group, state=state)
    return {"items": items}


@router.get("/baselines")
def baselines_of(who: Reader, session: SessionDep, scope: TenantScope, plugin: PluginQuery) -> dict[str, Any]:
    """The baselines a tenant's finding for a plugin links to: its groups' baselines and its drift."""
    if scope is None:
        raise BaselineSpecError("tenant", "name the tenant whose findings' baselines you want")
    return {"tenant_uuid": scope, "plugin_id": plugin, "items": queries.baseline_of(session, scope, plugin)}


# -- fleet inventory ---------------------------------------------------------------------------------


@router.get("/inventory/tenants")
def inventory_tenants(
    who: Reader,
    svc: ServiceDep,
    session: SessionDep,
    scope: TenantScope,
    plugin: PluginQuery,
    version: Annotated[str | None, Query(max_length=256, description="A version or a range.")] = None,
    core: Annotated[str | None, Query(max_length=256, description="A core version or range.")] = None,
    tag: Annotated[str | None, Query(max_length=128)] = None,
    group: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = fleet.DEFAULT_PAGE,
    offset: Offset = 0,
) -> JSONResponse:
    """Which tenants run a plugin, filtered by version or range, core, tag and group: `total`, and a
    page of them by tenant uuid (`limit`, `offset`)."""
    if group is not None:
        queries.visible_group(session, _evaluator(svc).settings, group, tenant=scope)
    wanted = fleet.FleetFilter(plugin, version, core, tag, group, scope)
    items, total = fleet.tenants_running(session, wanted, limit=limit, offset=offset)
    return JSONResponse({"plugin_id": plugin, "total": total, "items": items})


@router.get("/inventory/distribution")
def inventory_distribution(session: SessionDep, scope: TenantScope, plugin: PluginQuery) -> dict[str, Any]:
    """The version distribution of a plugin across the fleet (installations per version)."""
    return {"plugin_id": plugin, "items": fleet.distribution(session, plugin, tenant=scope)}


@router.get("/inventory/advisories/{advisory_id}")
def inventory_affected(
    advisory_id: Annotated[str, Path(max_length=128)],
    svc: ServiceDep,
    session: SessionDep,
    scope: TenantScope,
    limit: Limit = fleet.DEFAULT_PAGE,
) -> JSONResponse:
    """Who is affected by an advisory (by id or alias), answered from the inventory: per plugin the
    affected versions with their counts, the total, and the first `limit` tenants by uuid."""
    index = svc.catalog_cache.index(session)
    return JSONResponse(fleet.affected_by(session, index, advisory_id, tenant=scope, limit=limit))


# -- CycloneDX ----------------------------------------------------------------------------------------


@router.get(
    "/exports/cyclonedx",
    responses={
        200: {"content": {"application/vnd.cyclonedx+json": {}}, "description": "A CycloneDX document"}
    },
)
def cyclonedx(
    who: Reader,
    svc: ServiceDep,
    session: SessionDep,
    scope: TenantScope,
    kind: Annotated[export.ExportKind, Query(alias="format")] = export.ExportKind.SBOM,
    group: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    """A CycloneDX 1.6 SBOM of installed plugins (and the core), or a VEX of the findings with
    analyses from decisions: per tenant (`tenant`), per group (`group`), or the whole fleet."""
    evaluator = _evaluator(svc)
    if group is not None:
        queries.visible_group(session, evaluator.settings, group, tenant=scope)
    tenants = export.export_tenants(session, tenant=scope, group_id=group)
    document = export.build(session, kind, tenants, svc.clock())
    return JSONResponse(content=document, media_type=export.MEDIA_TYPE)
