"""Catalog persistence: plugins, advisories and the matrix as validated documents, hashed.

What is in force is the catalog source merged with the push source (`catalog/precedence.py`);
the catalog source's own records are kept beside it, so a push can be removed without waiting
for the next full scan. A plugin whose record in force changed, or that a changed advisory
touches, is marked dirty: its installations are re-evaluated by the next delta scan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from powerx_governance.catalog.precedence import Origin, advisory_in_force, merge_plugin
from powerx_governance.catalog.tables import (
    AdvisoryRow,
    CatalogDocumentRow,
    PluginRow,
    PushedAdvisoryRow,
    PushedReleaseRow,
)
from powerx_governance.catalog_records import Advisory, Catalog, CompatEntry, Plugin, Release
from powerx_governance.inventory.tables import InstallationRow
from powerx_governance.policy.matching import POWERX_ECOSYSTEM

MATRIX = "compat_matrix"
_ENCODER = msgspec.json.Encoder(order="deterministic")
Document = tuple[dict[str, Any], str]


def _document(record: msgspec.Struct) -> Document:
    data = msgspec.to_builtins(record)
    return data, hashlib.sha256(_ENCODER.encode(data)).hexdigest()


def advisory_plugins(advisory: Advisory) -> set[str]:
    return {a.package.name for a in advisory.affected if a.package.ecosystem.lower() == POWERX_ECOSYSTEM}


# -- the push source, as stored -----------------------------------------------------------------


def pushed_releases(session: Session, plugin_ids: Sequence[str] | None = None) -> dict[str, list[Release]]:
    """The push source's releases by plugin (only of `plugin_ids` when given)."""
    stmt = select(PushedReleaseRow.plugin_id, PushedReleaseRow.document)
    if plugin_ids is not None:
        stmt = stmt.where(PushedReleaseRow.plugin_id.in_(plugin_ids))
    found: dict[str, list[Release]] = {}
    for plugin_id, doc in session.execute(stmt):
        found.setdefault(plugin_id, []).append(msgspec.convert(doc, Release))
    return found


def pushed_advisories(session: Session) -> dict[str, Advisory]:
    rows = session.execute(select(PushedAdvisoryRow.advisory_id, PushedAdvisoryRow.document))
    return {aid: msgspec.convert(doc, Advisory) for aid, doc in rows}


# -- writing what is in force -------------------------------------------------------------------


def write_plugin(
    session: Session, row: PluginRow | None, merged: Plugin, catalog: Document | None, now: datetime
) -> bool:
    """Store the plugin in force (and the catalog source's record); True when what is in force changed."""
    doc, digest = _document(merged)
    catalog_doc, catalog_hash = catalog if catalog is not None else (None, None)
    if row is None:
        session.add(
            PluginRow(
                plugin_id=merged.plugin_id,
                document=doc,
                content_hash=digest,
                updated_at=now,
                dirty=True,
                catalog_document=catalog_doc,
                catalog_hash=catalog_hash,
            )
        )
        return True
    changed = row.content_hash != digest
    if changed:
        row.document, row.content_hash, row.updated_at, row.dirty = doc, digest, now, True
    if row.catalog_hash != catalog_hash:
        row.catalog_document, row.catalog_hash = catalog_doc, catalog_hash
    return changed


def refresh_plugin(session: Session, plugin_id: str, now: datetime) -> bool:
    """Re-merge one plugin from its stored catalog record and the push source; True when it changed."""
    row = session.get(PluginRow, plugin_id)
    catalog = msgspec.convert(row.catalog_document, Plugin) if row and row.catalog_document else None
    pushed = pushed_releases(session, [plugin_id]).get(plugin_id, [])
    if catalog is None and not pushed and row is None:
        return False
    kept = (
        (row.catalog_document, row.catalog_hash)
        if row and row.catalog_document and row.catalog_hash
        else None
    )
    return write_plugin(session, row, merge_plugin(plugin_id, catalog, pushed), kept, now)


def write_advisory(
    session: Session,
    row: AdvisoryRow | None,
    catalog: Advisory | None,
    pushed: Advisory | None,
    now: datetime,
) -> set[str]:
    """Store the advisory in force for one id (or remove it); the plugins whose evaluation may change."""
    in_force = advisory_in_force(catalog, pushed)
    before = advisory_plugins(msgspec.convert(row.document, Advisory)) if row is not None else set()
    if in_force is None:
        if row is not None:
            session.delete(row)
        return before
    advisory, origin = in_force
    doc, digest = _document(advisory)
    catalog_doc, catalog_hash = _document(catalog) if catalog is not None else (None, None)
    if row is None:
        row = AdvisoryRow(advisory_id=advisory.id, document=doc, content_hash="", updated_at=now)
        session.add(row)
    elif row.content_hash == digest:
        row.origin, row.catalog_document, row.catalog_hash = origin.value, catalog_doc, catalog_hash
        return set()
    row.document, row.content_hash, row.modified, row.updated_at = doc, digest, advisory.modified, now
    row.origin, row.catalog_document, row.catalog_hash = origin.value, catalog_doc, catalog_hash
    return before | advisory_plugins(advisory)


def drop_unheld_plugins(session: Session, plugin_ids: Iterable[str]) -> set[str]:
    """Forget plugins that neither source holds and no tenant runs (a removed push's leftovers)."""
    candidates = set(plugin_ids)
    if not candidates:
        return set()
    held = set(
        session.execute(
            select(PushedReleaseRow.plugin_id).where(PushedReleaseRow.plugin_id.in_(candidates))
        ).scalars()
    )
    held |= set(
        session.execute(
            select(InstallationRow.plugin_id).where(InstallationRow.plugin_id.in_(candidates))
        ).scalars()
    )
    unheld = set(
        session.execute(
            select(PluginRow.plugin_id).where(
                PluginRow.plugin_id.in_(candidates - held), PluginRow.catalog_hash.is_(None)
            )
        ).scalars()
    )
    if unheld:
        session.execute(delete(PluginRow).where(PluginRow.plugin_id.in_(unheld)))
    return unheld


def stored_catalog_advisory(row: AdvisoryRow | None) -> Advisory | None:
    if row is None or row.catalog_document is None:
        return None
    return msgspec.convert(row.catalog_document, Advisory)


# -- full scans: the catalog source merged with the push source ---------------------------------


def _sync_plugins(
    session: Session, plugins: Iterable[Plugin], pushed: Mapping[str, list[Release]], now: datetime
) -> set[str]:
    known = {
        pid: (content, catalog)
        for pid, content, catalog in session.execute(
            select(PluginRow.plugin_id, PluginRow.content_hash, PluginRow.catalog_hash)
        )
    }
    changed: set[str] = set()
    seen: set[str] = set()
    for plugin in plugins:
        pid = plugin.plugin_id
        seen.add(pid)
        catalog = _document(plugin)
        merged = merge_plugin(pid, plugin, pushed[pid]) if pid in pushed else plugin
        in_force = catalog if merged is plugin else _document(merged)
        if known.get(pid) == (in_force[1], catalog[1]):
            continue  # the common case: nothing changed
        if write_plugin(session, session.get(PluginRow, pid), merged, catalog, now):
            changed.add(pid)
    for pid in sorted(set(pushed) - seen):  # known to the push source only
        if write_plugin(
            session, session.get(PluginRow, pid), merge_plugin(pid, None, pushed[pid]), None, now
        ):
            changed.add(pid)
    gone = set(known) - seen - set(pushed)
    if gone:
        session.execute(delete(PluginRow).where(PluginRow.plugin_id.in_(gone)))
    return changed | gone


def _unchanged(known: tuple[str, str | None] | None, catalog: Advisory | None) -> bool:
    """The stored record in force is the catalog's, and the catalog's record did not change."""
    return (
        known is not None and catalog is not None and known == (Origin.CATALOG.value, _document(catalog)[1])
    )


def _sync_advisories(
    session: Session, advisories: Iterable[Advisory], pushed: Mapping[str, Advisory], now: datetime
) -> set[str]:
    """Store the advisories in force; returns the plugin ids any added, changed or removed one touches."""
    known = {
        aid: (origin, catalog)
        for aid, origin, catalog in session.execute(
            select(AdvisoryRow.advisory_id, AdvisoryRow.origin, AdvisoryRow.catalog_hash)
        )
    }
    catalog = {a.id: a for a in advisories}
    touched: set[str] = set()
    for advisory_id in sorted(set(known) | set(catalog) | set(pushed)):
        mine = catalog.get(advisory_id)
        if advisory_id not in pushed and _unchanged(known.get(advisory_id), mine):
            continue  # the common case: the catalog's record, unchanged
        row = session.get(AdvisoryRow, advisory_id)
        touched |= write_advisory(session, row, mine, pushed.get(advisory_id), now)
    return touched


def _sync_matrix(session: Session, matrix: tuple[CompatEntry, ...], now: datetime) -> bool:
    doc = {"matrix": [msgspec.to_builtins(e) for e in matrix]}
    digest = hashlib.sha256(_ENCODER.encode(doc)).hexdigest()
    row = session.get(CatalogDocumentRow, MATRIX)
    if row is not None and row.content_hash == digest:
        return False
    if row is None:
        session.add(CatalogDocumentRow(name=MATRIX, document=doc, content_hash=digest, updated_at=now))
    else:
        row.document, row.content_hash, row.updated_at = doc, digest, now
    return True


def mark_dirty(session: Session, plugin_ids: Iterable[str]) -> None:
    ids = list(plugin_ids)
    if ids:
        session.execute(update(PluginRow).where(PluginRow.plugin_id.in_(ids)).values(dirty=True))


def replace_catalog(
    session: Session,
    catalog: Catalog,
    now: datetime,
    *,
    keep_advisories: bool = False,
    pushed: Mapping[str, Advisory] | None = None,
) -> set[str]:
    """Store the catalog source's records merged with the push source's; returns the plugin ids whose
    evaluation may change. What the push source holds stays (docs/formats.md, "Pushed records").

    `keep_advisories`: the source's advisories could not be read, so the stored ones stay (an
    unreadable feed must never empty the store and call everyone clean). `pushed`: the push
    source's advisories to merge (default: as stored).
    """
    changed = _sync_plugins(session, catalog.plugins, pushed_releases(session), now)
    if not keep_advisories:
        merged = pushed_advisories(session) if pushed is None else pushed
        changed |= _sync_advisories(session, catalog.advisories, merged, now)
    if _sync_matrix(session, catalog.matrix, now):
        changed |= set(session.execute(select(PluginRow.plugin_id)).scalars())
    mark_dirty(session, changed)
    return changed


def dirty_plugins(session: Session) -> list[str]:
    return list(session.execute(select(PluginRow.plugin_id).where(PluginRow.dirty)).scalars())


def mark_plugins_clean(session: Session, plugin_ids: Iterable[str]) -> None:
    ids = list(plugin_ids)
    if ids:
        session.execute(update(PluginRow).where(PluginRow.plugin_id.in_(ids)).values(dirty=False))
