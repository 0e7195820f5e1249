"""Push webhooks: vendor CI/CD posts a release or an advisory, the tenant directory posts a manifest.

Each push is validated like file input (errors name the field), stored, and answered with the
delta scan that will bring the affected recommendations up to date. Pushed releases and
advisories are a source of their own (`catalog/pushes.py`): listed here, kept across full
scans until withdrawn, and removed only by an operator (audited).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse

from powerx_governance.api.deps import Internal, Operator, ServiceDep, SessionDep
from powerx_governance.api.problems import ProblemError
from powerx_governance.catalog import pushes
from powerx_governance.catalog.loader import Loaded, add_advisory, release_problem
from powerx_governance.catalog_records import Release
from powerx_governance.db.session import transaction
from powerx_governance.errors import InputProblem
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import manifest_from_data
from powerx_governance.records import convert_record

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

router = APIRouter(prefix="/internal/version/governance/webhooks", tags=["webhooks"])
JsonObject = Annotated[dict[str, Any], Body()]


def _invalid(problem: InputProblem) -> ProblemError:
    field = problem.field or "body"
    return ProblemError(
        422,
        "Invalid push",
        f"{problem.record or 'body'}: {field}: {problem.error}",
        errors=[{"field": field, "error": problem.error}],
    )


def _accepted(scan_id: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"accepted": True, "delta_scan_id": scan_id, **extra}, status_code=202)


@router.post("/releases", status_code=202)
def push_release(body: JsonObject, who: Internal, svc: ServiceDep) -> JSONResponse:
    """`{"plugin_id": ..., "release": {...}}` — a new or corrected release of a plugin."""
    plugin_id = body.get("plugin_id")
    if not isinstance(plugin_id, str) or not plugin_id:
        raise _invalid(InputProblem("push", "release", "plugin_id", "expected a non-empty string"))
    release = convert_record(body.get("release"), Release, source="push", record=f"{plugin_id} release")
    if isinstance(release, InputProblem):
        raise _invalid(
            InputProblem("push", release.record, f"release.{release.field or ''}".rstrip("."), release.error)
        )
    bad = release_problem(release)
    if bad is not None:
        raise _invalid(InputProblem("push", f"{plugin_id} release", f"release.{bad[0]}", bad[1]))
    with transaction(svc.factory) as session:
        outcome = pushes.push_release(session, plugin_id, release, actor=who.name, now=svc.clock())
        scan_id = svc.request_delta(session, who.name)
    svc.wake()
    return _accepted(scan_id, plugin_id=plugin_id, version=release.version, state=outcome.state)


@router.post("/advisories", status_code=202)
def push_advisory(body: JsonObject, who: Internal, svc: ServiceDep) -> JSONResponse:
    """An OSV record (new, updated or withdrawn). The answer passes on the intake's `warnings`
    (repairs) and `errors` (parts that could not be read, DESIGN §7), and the record's `state`."""
    loaded = Loaded()
    advisory = add_advisory(body, "push", loaded, "advisory")
    if advisory is None or (not advisory.affected and loaded.problems):
        raise _invalid(loaded.problems[0])  # nothing usable, not even which plugin it is about
    with transaction(svc.factory) as session:
        outcome = pushes.push_advisory(session, advisory, actor=who.name, now=svc.clock())
        scan_id = svc.request_delta(session, who.name)
    svc.wake()
    return _accepted(
        scan_id,
        advisory_id=advisory.id,
        plugins=sorted(outcome.plugins),
        state=outcome.state,
        warnings=[str(w) for w in loaded.warnings],
        errors=[str(p) for p in loaded.problems],
    )


@router.post("/manifests", status_code=202)
def push_manifest(body: JsonObject, who: Internal, svc: ServiceDep) -> JSONResponse:
    """A tenant's changed manifest (DESIGN §4), as the tenant directory posts it."""
    result = manifest_from_data(body, "push")
    if result.manifest is None:
        problem = result.problem or InputProblem("push", "manifest", None, "invalid manifest")
        raise _invalid(problem)
    with transaction(svc.factory) as session:
        changed = inventory_store.upsert_manifests(session, [result.manifest], svc.clock())
        scan_id = svc.request_delta(session, who.name)
    svc.wake()
    return _accepted(scan_id, tenant_uuid=result.manifest.tenant_uuid, changed=bool(changed))


# -- what the push source holds -------------------------------------------------------------------


class RemovalBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)
    correlation_id: str | None = Field(default=None, max_length=128)


@router.get("/releases")
def list_pushed_releases(_: Operator, session: SessionDep) -> dict[str, Any]:
    """The releases the push source holds, each `in_force` or `overridden_by_catalog`."""
    return {"items": pushes.pushed_release_items(session)}


@router.get("/advisories")
def list_pushed_advisories(_: Operator, session: SessionDep) -> dict[str, Any]:
    """The advisories the push source holds, each `in_force`, `withdrawn` or `overridden_by_catalog`."""
    return {"items": pushes.pushed_advisory_items(session)}


def _removed(svc: GovernanceService, who: str, remove: Callable[[Session], frozenset[str]]) -> JSONResponse:
    with transaction(svc.factory) as session:
        plugins = remove(session)
        scan_id = svc.request_delta(session, who)
    svc.wake()
    return JSONResponse({"removed": True, "delta_scan_id": scan_id, "plugins": sorted(plugins)})


@router.delete("/advisories/{advisory_id}")
def remove_pushed_advisory(
    advisory_id: str, body: RemovalBody, who: Operator, svc: ServiceDep
) -> JSONResponse:
    """Take an advisory out of the push source (audited); the catalog source's record, if any, is in force."""
    removal = pushes.Removal(who.name, body.reason, body.correlation_id)
    return _removed(svc, who.name, lambda s: pushes.remove_advisory(s, advisory_id, removal, svc.clock()))


@router.delete("/releases/{plugin_id}/{version}")
def remove_pushed_release(
    plugin_id: str, version: str, body: RemovalBody, who: Operator, svc: ServiceDep
) -> JSONResponse:
    """Take a release out of the push source (audited); the catalog source's record, if any, is in force."""
    removal = pushes.Removal(who.name, body.reason, body.correlation_id)
    return _removed(
        svc, who.name, lambda s: pushes.remove_release(s, plugin_id, version, removal, svc.clock())
    )
