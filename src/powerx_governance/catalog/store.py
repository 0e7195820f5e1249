"""Catalog persistence: plugins, advisories and the matrix as validated documents, hashed.

A plugin whose releases changed, or that an advisory change touches, is marked dirty: its
installations are re-evaluated by the next delta scan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from powerx_governance.catalog.models import Advisory, Catalog, CompatEntry, Plugin, Release
from powerx_governance.catalog.tables import AdvisoryRow, CatalogDocumentRow, PluginRow
from powerx_governance.policy.matching import POWERX_ECOSYSTEM

MATRIX = "compat_matrix"
_ENCODER = msgspec.json.Encoder(order="deterministic")


def _document(record: msgspec.Struct) -> tuple[dict[str, Any], str]:
    data = msgspec.to_builtins(record)
    return data, hashlib.sha256(_ENCODER.encode(data)).hexdigest()


def advisory_plugins(advisory: Advisory) -> set[str]:
    return {a.package.name for a in advisory.affected if a.package.ecosystem.lower() == POWERX_ECOSYSTEM}


def _sync_plugins(session: Session, plugins: Iterable[Plugin], now: datetime) -> set[str]:
    known = dict(session.execute(select(PluginRow.plugin_id, PluginRow.content_hash)).all())
    changed: set[str] = set()
    seen: set[str] = set()
    for plugin in plugins:
        seen.add(plugin.plugin_id)
        doc, digest = _document(plugin)
        if known.get(plugin.plugin_id) == digest:
            continue
        changed.add(plugin.plugin_id)
        values = {"document": doc, "content_hash": digest, "updated_at": now, "dirty": True}
        if plugin.plugin_id in known:
            session.execute(update(PluginRow).where(PluginRow.plugin_id == plugin.plugin_id).values(**values))
        else:
            session.execute(insert(PluginRow).values(plugin_id=plugin.plugin_id, **values))
    gone = set(known) - seen
    if gone:
        session.execute(delete(PluginRow).where(PluginRow.plugin_id.in_(gone)))
    return changed | gone


def _sync_advisories(session: Session, advisories: Iterable[Advisory], now: datetime) -> set[str]:
    """Store advisories; returns the plugin ids any added, changed or removed advisory touches."""
    known = {row.advisory_id: row for row in session.execute(select(AdvisoryRow)).scalars()}
    touched: set[str] = set()
    seen: set[str] = set()
    for advisory in advisories:
        seen.add(advisory.id)
        doc, digest = _document(advisory)
        row = known.get(advisory.id)
        if row is not None and row.content_hash == digest:
            continue
        touched |= advisory_plugins(advisory)
        if row is not None:
            touched |= advisory_plugins(msgspec.convert(row.document, Advisory))
        _put_advisory(session, advisory, doc, digest, now, exists=row is not None)
    for advisory_id in set(known) - seen:
        touched |= advisory_plugins(msgspec.convert(known[advisory_id].document, Advisory))
        session.delete(known[advisory_id])
    return touched


def _put_advisory(
    session: Session, advisory: Advisory, doc: dict[str, Any], digest: str, now: datetime, *, exists: bool
) -> None:
    values = {"document": doc, "content_hash": digest, "modified": advisory.modified, "updated_at": now}
    if exists:
        session.execute(update(AdvisoryRow).where(AdvisoryRow.advisory_id == advisory.id).values(**values))
    else:
        session.execute(insert(AdvisoryRow).values(advisory_id=advisory.id, **values))


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
    session: Session, catalog: Catalog, now: datetime, *, keep_advisories: bool = False
) -> set[str]:
    """Make the stored catalog equal to `catalog`; returns the plugin ids whose evaluation may change.

    `keep_advisories`: the source's advisories could not be read, so the stored ones stay (an
    unreadable feed must never empty the store and call everyone clean).
    """
    changed = _sync_plugins(session, catalog.plugins, now)
    if not keep_advisories:
        changed |= _sync_advisories(session, catalog.advisories, now)
    if _sync_matrix(session, catalog.matrix, now):
        changed |= set(session.execute(select(PluginRow.plugin_id)).scalars())
    mark_dirty(session, changed)
    return changed


def put_release(session: Session, plugin_id: str, release: Release, now: datetime) -> Plugin:
    """A pushed release (vendor CI/CD): add it, or replace the release with the same version."""
    row = session.get(PluginRow, plugin_id)
    plugin = msgspec.convert(row.document, Plugin) if row else Plugin(plugin_id=plugin_id)
    releases = [r for r in plugin.releases if r.version != release.version] + [release]
    updated = msgspec.structs.replace(plugin, releases=tuple(releases))
    doc, digest = _document(updated)
    if row is None:
        session.add(
            PluginRow(plugin_id=plugin_id, document=doc, content_hash=digest, updated_at=now, dirty=True)
        )
    else:
        row.document, row.content_hash, row.updated_at, row.dirty = doc, digest, now, True
    return updated


def put_advisory(session: Session, advisory: Advisory, now: datetime) -> set[str]:
    """A pushed advisory: store it and mark every plugin it (or its previous version) touches dirty."""
    row = session.get(AdvisoryRow, advisory.id)
    touched = advisory_plugins(advisory)
    if row is not None:
        touched |= advisory_plugins(msgspec.convert(row.document, Advisory))
    doc, digest = _document(advisory)
    _put_advisory(session, advisory, doc, digest, now, exists=row is not None)
    mark_dirty(session, touched)
    return touched


def dirty_plugins(session: Session) -> list[str]:
    return list(session.execute(select(PluginRow.plugin_id).where(PluginRow.dirty)).scalars())


def mark_plugins_clean(session: Session, plugin_ids: Iterable[str]) -> None:
    ids = list(plugin_ids)
    if ids:
        session.execute(update(PluginRow).where(PluginRow.plugin_id.in_(ids)).values(dirty=False))
