"""Console pages of groups (members x plugins with baseline and drift, conflicts first) and of a plugin's
fleet view (version distribution with values, tenants per version, advisories per version).

Pages render what the API's queries return (`queries`, `fleet`), scoped like the API: a tenant-bound
user sees the groups of its tenant, its own row of each, and its own installations.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from powerx_governance.baselines import fleet, queries
from powerx_governance.baselines.evaluation import Evaluator
from powerx_governance.console.charts import Point, bar_list
from powerx_governance.console.deps import ConsoleRoute, PageDep, see_other
from powerx_governance.errors import NotFoundError
from powerx_governance.versioning.semver import InvalidVersionError, parse_version

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
TENANTS_PER_VERSION: Final = 25
GroupId = Annotated[str, Path(max_length=64)]
PluginId = Annotated[str, Path(max_length=256)]


@router.get("/console/groups")
def groups(page: PageDep) -> Response:
    """Every group the user may see, conflicts and drift first."""
    scope = page.scope(None)
    with page.svc.factory() as session:
        items = queries.list_groups(session, page.svc.require(Evaluator).settings, tenant=scope)
    items.sort(key=lambda g: (-g["conflicts"], -g["open_drift"], g["id"]))
    return page.render("baselines/groups.html", {"groups": items}, nav="groups")


def _cells(detail: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(tenant, plugin) → what the group grid shows: the installed version and its drift."""
    drift = {(d["tenant_uuid"], d["plugin_id"]): d for d in detail["drift"] if d["state"] == "open"}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for member in detail["members"]:
        tenant = member["tenant_uuid"]
        for baseline in detail["baselines"]:
            plugin = baseline["plugin_id"]
            installed = detail["installed"].get(tenant, {}).get(plugin)
            found = drift.get((tenant, plugin))
            cells[(tenant, plugin)] = {"installed": installed, "drift": found}
    return cells


@router.get("/console/groups/{group_id}")
def group(group_id: GroupId, page: PageDep) -> Response:
    scope = page.scope(None)
    with page.svc.factory() as session:
        try:
            detail = queries.group_detail(
                session, page.svc.require(Evaluator).settings, group_id, tenant=scope
            )
        except NotFoundError as exc:
            raise page.not_found("group") from exc
    conflicts = [b for b in detail["baselines"] if b["status"] == "conflict"]
    context = {"detail": detail, "cells": _cells(detail), "conflicts": conflicts}
    return page.render("baselines/group.html", context, nav="groups")


@router.get("/console/fleet/plugins")
def plugin_search(page: PageDep, plugin: Annotated[str | None, Query(max_length=256)] = None) -> Response:
    """Pick a plugin for its fleet view."""
    if plugin:
        return see_other(f"/console/fleet/plugins/{quote(plugin.strip(), safe='')}")
    with page.svc.factory() as session:
        known = sorted(page.svc.catalog_cache.index(session).plugins)
    return page.render("baselines/plugins.html", {"plugins": known}, nav="fleet")


def _advisories_per_version(
    page: PageDep, plugin_id: str, versions: list[str]
) -> dict[str, list[dict[str, Any]]]:
    with page.svc.factory() as session:
        index = page.svc.catalog_cache.index(session)
    plugin = index.plugins.get(plugin_id)
    found: dict[str, list[dict[str, Any]]] = {v: [] for v in versions}
    if plugin is None:
        return found
    for text in versions:
        try:
            version = parse_version(text)
        except InvalidVersionError:
            continue
        found[text] = [
            {"id": a.id, "severity": a.severity.level.value, "summary": a.advisory.summary or ""}
            for a in plugin.advisories
            if a.spec.affects(version)
        ]
    return found


@router.get("/console/fleet/plugins/{plugin_id}")
def plugin_fleet(plugin_id: PluginId, page: PageDep) -> Response:
    """A plugin across the fleet: version distribution (chart, values), tenants and advisories per version."""
    scope = page.scope(None)
    with page.svc.factory() as session:
        distribution = fleet.distribution(session, plugin_id, tenant=scope)
        tenants, total = fleet.tenants_running(
            session, fleet.FleetFilter(plugin_id, tenant=scope), limit=100_000
        )
    if not distribution:
        raise page.not_found("plugin installation")
    per_version: dict[str, list[dict[str, Any]]] = {}
    for t in tenants:
        per_version.setdefault(t["version"], []).append(t)
    points = [Point(d["version"], d["tenants"], f"{d['tenants']:,}") for d in distribution]
    context = {
        "plugin_id": plugin_id,
        "distribution": distribution,
        "chart": bar_list(f"Installed versions of {plugin_id}", points),
        "per_version": per_version,
        "listed": TENANTS_PER_VERSION,
        "total": total,
        "advisories": _advisories_per_version(page, plugin_id, [d["version"] for d in distribution]),
    }
    return page.render("baselines/plugin.html", context, nav="fleet")
