"""Fleet inventory reads: who runs a plugin (by version or range, core, tag, group), how its versions
are distributed, and who an advisory affects, answered from the stored inventory.

Every filter on versions works on the plugin's distinct versions (a few dozen), never per tenant:
the store groups installations by the indexed (plugin, version) pair, the constraint or the
advisory's affected ranges are evaluated once per distinct version, and only the matching
versions' tenants are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from powerx_governance.baselines.derive import parse_spec
from powerx_governance.baselines.model import BaselineSpecError
from powerx_governance.baselines.tables import GroupMemberRow
from powerx_governance.errors import NotFoundError
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.policy.index import CatalogIndex, IndexedAdvisory
from powerx_governance.versioning.ranges import Constraint, ConstraintError
from powerx_governance.versioning.semver import InvalidVersionError, Version, parse_version


class UnknownAdvisoryError(NotFoundError):
    def __init__(self, advisory_id: str) -> None:
        super().__init__(f"no advisory {advisory_id!r} (by id or alias) affects a plugin in the catalog")
        self.advisory_id = advisory_id


@dataclass(frozen=True, slots=True)
class FleetFilter:
    """Which installations of a plugin: a version or range, a core version or range, a tag, a group."""

    plugin_id: str
    version: str | None = None
    core: str | None = None
    tag: str | None = None
    group_id: str | None = None
    tenant: str | None = None  # the caller's scope: a tenant-bound caller sees its own tenant only


def _matcher(text: str | None, field: str) -> Version | Constraint | None:
    if text is None:
        return None
    try:
        return parse_spec(text)
    except ConstraintError as exc:
        raise BaselineSpecError(field, f"neither a version nor a constraint ({exc.detail})") from exc


def _admits(matcher: Version | Constraint | None, text: str) -> bool:
    if matcher is None:
        return True
    try:
        version = parse_version(text)
    except InvalidVersionError:
        return False
    return version.key == matcher.key if isinstance(matcher, Version) else matcher.admits(version)


def version_counts(session: Session, plugin_id: str, *, tenant: str | None = None) -> dict[str, int]:
    """version → installations of the plugin at it (one grouped read of the (plugin, version) index)."""
    stmt = (
        select(InstallationRow.version, func.count())
        .where(InstallationRow.plugin_id == plugin_id)
        .group_by(InstallationRow.version)
    )
    if tenant is not None:
        stmt = stmt.where(InstallationRow.tenant_uuid == tenant)
    return {version: int(count) for version, count in session.execute(stmt)}


def _sorted_versions(versions: Sequence[str]) -> list[str]:
    def key(text: str) -> tuple[int, Any]:
        try:
            return (1, parse_version(text).key)
        except InvalidVersionError:
            return (0, text)

    return sorted(versions, key=key, reverse=True)


def distribution(session: Session, plugin_id: str, *, tenant: str | None = None) -> list[dict[str, Any]]:
    """The plugin's version distribution across the fleet, newest version first."""
    counts = version_counts(session, plugin_id, tenant=tenant)
    total = sum(counts.values())
    return [
        {"version": v, "tenants": counts[v], "share": round(counts[v] / total, 4) if total else 0.0}
        for v in _sorted_versions(list(counts))
    ]


_COLUMNS: Final = (
    TenantRow.tenant_uuid,
    TenantRow.tenant_key,
    TenantRow.name,
    TenantRow.plan,
    TenantRow.tags,
    TenantRow.core_version,
    InstallationRow.version,
    InstallationRow.channel,
    InstallationRow.state,
)
_FIELDS: Final = (
    "tenant_uuid",
    "tenant_key",
    "name",
    "plan",
    "tags",
    "core_version",
    "version",
    "channel",
    "state",
)
DEFAULT_PAGE: Final = 100


def _scoped(stmt: Select[Any], wanted: FleetFilter, versions: Sequence[str]) -> Select[Any]:
    stmt = stmt.where(
        InstallationRow.plugin_id == wanted.plugin_id, InstallationRow.version.in_(list(versions))
    )
    if wanted.tenant is not None:
        stmt = stmt.where(InstallationRow.tenant_uuid == wanted.tenant)
    if wanted.group_id is not None:
        stmt = stmt.join(
            GroupMemberRow,
            (GroupMemberRow.tenant_uuid == InstallationRow.tenant_uuid)
            & (GroupMemberRow.group_id == wanted.group_id),
        )
    return stmt


def _joined(wanted: FleetFilter, versions: Sequence[str]) -> Select[Any]:
    joined = select(*_COLUMNS).join(TenantRow, TenantRow.tenant_uuid == InstallationRow.tenant_uuid)
    return _scoped(joined, wanted, versions).order_by(InstallationRow.tenant_uuid)


def _page(
    session: Session, wanted: FleetFilter, versions: Sequence[str], limit: int, offset: int
) -> list[Any]:
    """A page of installations read from the (plugin, version) index alone, then its tenants' facts."""
    page = (
        select(InstallationRow.tenant_uuid).order_by(InstallationRow.tenant_uuid).limit(limit).offset(offset)
    )
    uuids = list(session.execute(_scoped(page, wanted, versions)).scalars())
    if not uuids:
        return []
    stmt = _joined(FleetFilter(wanted.plugin_id, tenant=wanted.tenant), versions)
    return list(session.execute(stmt.where(InstallationRow.tenant_uuid.in_(uuids))))


def tenants_running(
    session: Session,
    wanted: FleetFilter,
    *,
    versions: Sequence[str] | None = None,
    total: int | None = None,
    limit: int = DEFAULT_PAGE,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """(a page of the tenants running the plugin as filtered, by tenant uuid; how many match in all).

    Versions narrow the indexed (plugin, version) read; without a tag or core filter the store
    counts (unless the caller knows `total`) and pages the installations alone and only the page's
    tenants are read; a tag or core filter is applied to the plugin's rows as they are read.
    """
    matcher = _matcher(wanted.version, "version")
    core = _matcher(wanted.core, "core")
    if versions is None:
        counts = version_counts(session, wanted.plugin_id, tenant=wanted.tenant)
        versions = [v for v in counts if _admits(matcher, v)]
        if wanted.group_id is None:
            total = sum(counts[v] for v in versions)
    if not versions:
        return [], 0
    if wanted.tag is None and core is None:
        if total is None:
            counted = _scoped(select(func.count()).select_from(InstallationRow), wanted, versions)
            total = int(session.execute(counted).scalar_one())
        rows = _page(session, wanted, versions, limit, offset)
        return [dict(zip(_FIELDS, row, strict=True)) for row in rows], total
    found = [
        row
        for row in session.execute(_joined(wanted, versions))
        if (wanted.tag is None or wanted.tag in row.tags) and _admits(core, row.core_version)
    ]
    return [dict(zip(_FIELDS, row, strict=True)) for row in found[offset : offset + limit]], len(found)


def advisory(index: CatalogIndex, advisory_id: str) -> list[tuple[str, IndexedAdvisory]]:
    """(plugin id, indexed advisory) of every plugin the advisory (by id or alias) concerns."""
    return [
        (pid, a)
        for pid, plugin in index.plugins.items()
        for a in plugin.advisories
        if advisory_id in a.names()
    ]


def affected_by(
    session: Session,
    index: CatalogIndex,
    advisory_id: str,
    *,
    tenant: str | None = None,
    limit: int = DEFAULT_PAGE,
) -> dict[str, Any]:
    """Who runs a version the advisory affects: per plugin, the affected versions and the tenants."""
    concerned = advisory(index, advisory_id)
    if not concerned:
        raise UnknownAdvisoryError(advisory_id)
    plugins: list[dict[str, Any]] = []
    total = 0
    for plugin_id, indexed in sorted(concerned, key=lambda c: c[0]):
        counts = version_counts(session, plugin_id, tenant=tenant)
        hit = [v for v in _sorted_versions(list(counts)) if _affects(indexed, v)]
        matched = sum(counts[v] for v in hit)
        tenants, _ = tenants_running(
            session, FleetFilter(plugin_id, tenant=tenant), versions=hit, total=matched, limit=limit
        )
        total += matched
        plugins.append(
            {
                "plugin_id": plugin_id,
                "affected_versions": [{"version": v, "tenants": counts[v]} for v in hit],
                "tenants": tenants,
                "tenants_total": matched,
            }
        )
    first = concerned[0][1]
    return {
        "advisory_id": first.id,
        "aliases": list(first.advisory.aliases),
        "severity": first.severity.level.value,
        "summary": first.advisory.summary,
        "tenants_total": total,
        "plugins": plugins,
    }


def _affects(indexed: IndexedAdvisory, text: str) -> bool:
    try:
        return indexed.spec.affects(parse_version(text))
    except InvalidVersionError:
        return indexed.spec.unreadable is not None
