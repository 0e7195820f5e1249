"""The push source: releases and advisories pushed by vendor CI/CD, kept until withdrawn or removed.

A pushed record stays in the push source however many full scans run; what is in force is
decided by `catalog/precedence.py`. It leaves only when an OSV `withdrawn` retires it (a later
push of the same id keeps the withdrawn record, which affects nothing; a withdrawal by the
catalog source at least as new as the push removes it), or when an operator removes it (audited
with actor and reason). Services here flush, never commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.catalog import store
from powerx_governance.catalog.precedence import Origin, push_wins, release_key, retired_by_catalog
from powerx_governance.catalog.tables import AdvisoryRow, PluginRow, PushedAdvisoryRow, PushedReleaseRow
from powerx_governance.catalog_records import Advisory, Plugin, Release
from powerx_governance.errors import NotFoundError

SOURCE = "governance"


class PushNotFoundError(NotFoundError, LookupError):
    """The push source holds no such record."""


@dataclass(frozen=True)
class PushOutcome:
    """What a push or a removal did: the plugins to re-evaluate, and whether the record is in force."""

    plugins: frozenset[str]
    in_force: bool
    state: str


# -- pushing ------------------------------------------------------------------------------------


def push_release(
    session: Session, plugin_id: str, release: Release, *, actor: str, now: datetime
) -> PushOutcome:
    """Keep a pushed release (replacing an earlier push of the same version) and re-merge its plugin."""
    key = release_key(release.version)
    for row in session.execute(
        select(PushedReleaseRow).where(PushedReleaseRow.plugin_id == plugin_id)
    ).scalars():
        if release_key(row.version) == key:
            session.delete(row)
    session.flush()
    session.add(
        PushedReleaseRow(
            plugin_id=plugin_id,
            version=release.version,
            document=msgspec.to_builtins(release),
            pushed_at=now,
            pushed_by=actor,
        )
    )
    session.flush()
    store.refresh_plugin(session, plugin_id, now)
    state = _release_state(_catalog_plugin(session.get(PluginRow, plugin_id)), release)
    return PushOutcome(frozenset({plugin_id}), state == IN_FORCE, state)


def push_advisory(session: Session, advisory: Advisory, *, actor: str, now: datetime) -> PushOutcome:
    """Keep a pushed OSV record (the latest push of an id replaces the earlier one) and apply precedence."""
    pushed = session.get(PushedAdvisoryRow, advisory.id)
    values = {
        "document": msgspec.to_builtins(advisory),
        "modified": advisory.modified,
        "withdrawn": advisory.withdrawn,
        "pushed_at": now,
        "pushed_by": actor,
    }
    if pushed is None:
        session.add(PushedAdvisoryRow(advisory_id=advisory.id, **values))
    else:
        for name, value in values.items():
            setattr(pushed, name, value)
    row = session.get(AdvisoryRow, advisory.id)
    touched = store.write_advisory(session, row, store.stored_catalog_advisory(row), advisory, now)
    store.mark_dirty(session, touched)
    state = _advisory_state(session.get(AdvisoryRow, advisory.id), advisory)
    return PushOutcome(frozenset(touched | store.advisory_plugins(advisory)), state == IN_FORCE, state)


# -- leaving the push source --------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    """Who takes a record out of the push source, and why (both go to the audit trail)."""

    actor: str
    reason: str
    correlation_id: str | None = None
    operation: str = "push.removed"


def _audit(
    session: Session, removal: Removal, kind: str, resource_id: str, before: dict[str, Any], now: datetime
) -> None:
    event = AuditEvent(
        source=SOURCE,
        operation=removal.operation,
        resource_type=kind,
        resource_id=resource_id,
        actor=removal.actor,
        severity="warning",
        correlation_id=removal.correlation_id,
        changes={"before": before, "after": None},
        meta={"reason": removal.reason},
    )
    record(session, event, now)


def remove_advisory(session: Session, advisory_id: str, removal: Removal, now: datetime) -> frozenset[str]:
    """An operator takes an advisory out of the push source (audited); the catalog's record takes over."""
    pushed = session.get(PushedAdvisoryRow, advisory_id)
    if pushed is None:
        raise PushNotFoundError(f"the push source holds no advisory {advisory_id!r}")
    before = {"modified": pushed.modified, "withdrawn": pushed.withdrawn, "pushed_by": pushed.pushed_by}
    session.delete(pushed)
    row = session.get(AdvisoryRow, advisory_id)
    touched = store.write_advisory(session, row, store.stored_catalog_advisory(row), None, now)
    store.mark_dirty(session, touched)
    _audit(session, removal, "pushed_advisory", advisory_id, before, now)
    return frozenset(touched)


def remove_release(
    session: Session, plugin_id: str, version: str, removal: Removal, now: datetime
) -> frozenset[str]:
    """An operator takes a release out of the push source (audited); the plugin is re-merged."""
    pushed = session.get(PushedReleaseRow, (plugin_id, version))
    if pushed is None:
        raise PushNotFoundError(f"the push source holds no release {version!r} of {plugin_id!r}")
    before = {"yanked": pushed.document.get("yanked", False), "pushed_by": pushed.pushed_by}
    session.delete(pushed)
    session.flush()
    store.refresh_plugin(session, plugin_id, now)
    store.drop_unheld_plugins(session, [plugin_id])
    _audit(session, removal, "pushed_release", f"{plugin_id}@{version}", before, now)
    return frozenset({plugin_id})


def retire_withdrawn(session: Session, catalog: Iterable[Advisory], now: datetime) -> dict[str, Advisory]:
    """Drop the pushed advisories the catalog source withdrew (audited); returns the others."""
    pushed = store.pushed_advisories(session)
    by_id = {a.id: a for a in catalog}
    for advisory_id in sorted(a for a in pushed if retired_by_catalog(by_id.get(a), pushed[a])):
        row = session.get_one(PushedAdvisoryRow, advisory_id)
        before = {"modified": row.modified, "withdrawn": row.withdrawn, "pushed_by": row.pushed_by}
        session.delete(row)
        withdrawn = by_id[advisory_id].withdrawn
        reason = f"withdrawn by the catalog source ({withdrawn.isoformat() if withdrawn else ''})"
        retired = Removal(actor="catalog-source", reason=reason, operation="push.retired")
        _audit(session, retired, "pushed_advisory", advisory_id, before, now)
        del pushed[advisory_id]
    return pushed


# -- what the push source holds -----------------------------------------------------------------

IN_FORCE = "in_force"
WITHDRAWN = "withdrawn"
OVERRIDDEN = "overridden_by_catalog"


def _catalog_plugin(row: PluginRow | None) -> Plugin | None:
    return msgspec.convert(row.catalog_document, Plugin) if row and row.catalog_document else None


def _release_state(catalog: Plugin | None, release: Release) -> str:
    key = release_key(release.version)
    theirs = next((r for r in catalog.releases if release_key(r.version) == key), None) if catalog else None
    return IN_FORCE if theirs is None or push_wins(theirs, release) else OVERRIDDEN


def _advisory_state(row: AdvisoryRow | None, advisory: Advisory) -> str:
    if row is None or row.origin != Origin.PUSH.value:
        return OVERRIDDEN
    return WITHDRAWN if advisory.withdrawn is not None else IN_FORCE


def _release_item(row: PushedReleaseRow, catalog: Plugin | None) -> dict[str, Any]:
    release = msgspec.convert(row.document, Release)
    return {
        "plugin_id": row.plugin_id,
        "version": row.version,
        "state": _release_state(catalog, release),
        "pushed_at": row.pushed_at,
        "pushed_by": row.pushed_by,
        "release": row.document,
    }


def pushed_release_items(session: Session) -> list[dict[str, Any]]:
    """The push source's releases, by plugin and version, each with its state."""
    rows = list(session.execute(select(PushedReleaseRow)).scalars())
    ids = {r.plugin_id for r in rows}
    plugins = {
        p.plugin_id: p
        for p in session.execute(select(PluginRow).where(PluginRow.plugin_id.in_(ids))).scalars()
    }
    rows.sort(key=lambda r: (r.plugin_id, release_key(r.version)))
    return [_release_item(row, _catalog_plugin(plugins.get(row.plugin_id))) for row in rows]


def _advisory_item(row: PushedAdvisoryRow, in_force: AdvisoryRow | None) -> dict[str, Any]:
    advisory = msgspec.convert(row.document, Advisory)
    return {
        "advisory_id": row.advisory_id,
        "plugins": sorted(store.advisory_plugins(advisory)),
        "state": _advisory_state(in_force, advisory),
        "modified": row.modified,
        "withdrawn": row.withdrawn,
        "pushed_at": row.pushed_at,
        "pushed_by": row.pushed_by,
        "summary": advisory.summary,
    }


def pushed_advisory_items(session: Session) -> list[dict[str, Any]]:
    """The push source's advisories, by id, each with its state."""
    rows = list(session.execute(select(PushedAdvisoryRow).order_by(PushedAdvisoryRow.advisory_id)).scalars())
    ids = [r.advisory_id for r in rows]
    in_force = {
        r.advisory_id: r
        for r in session.execute(select(AdvisoryRow).where(AdvisoryRow.advisory_id.in_(ids))).scalars()
    }
    return [_advisory_item(row, in_force.get(row.advisory_id)) for row in rows]
