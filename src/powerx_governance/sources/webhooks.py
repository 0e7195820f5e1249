"""Push webhooks: vendor CI/CD posts a release or an advisory, the tenant directory posts a manifest.

Each push is validated like file input (errors name the field), stored, and answered with the
delta scan that will bring the affected recommendations up to date.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from starlette.responses import JSONResponse

from powerx_governance.api.deps import Internal, ServiceDep
from powerx_governance.api.problems import ProblemError
from powerx_governance.catalog import store as catalog_store
from powerx_governance.catalog.loader import Loaded, add_advisory, release_problem
from powerx_governance.catalog.models import Release
from powerx_governance.db.session import transaction
from powerx_governance.errors import InputProblem
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import manifest_from_data
from powerx_governance.records import convert_record

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
        catalog_store.put_release(session, plugin_id, release, svc.clock())
        scan_id = svc.request_delta(session, who.name)
    svc.wake()
    return _accepted(scan_id, plugin_id=plugin_id, version=release.version)


@router.post("/advisories", status_code=202)
def push_advisory(body: JsonObject, who: Internal, svc: ServiceDep) -> JSONResponse:
    """An OSV record (new, updated or withdrawn)."""
    loaded = Loaded()
    add_advisory(body, "push", loaded, "advisory")
    if not loaded.advisories:
        raise _invalid(loaded.problems[0])
    advisory = loaded.advisories[0]
    with transaction(svc.factory) as session:
        touched = catalog_store.put_advisory(session, advisory, svc.clock())
        scan_id = svc.request_delta(session, who.name)
    svc.wake()
    warnings = [str(p) for p in loaded.problems]
    return _accepted(scan_id, advisory_id=advisory.id, plugins=sorted(touched), warnings=warnings)


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
