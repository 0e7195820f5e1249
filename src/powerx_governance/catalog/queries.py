"""Reads of the stored catalog shared by the API, the console, the notifier and the CLI."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from powerx_governance.catalog.tables import AdvisoryRow, PluginRow
from powerx_governance.db.chunks import chunks


def plugin_names(session: Session, plugin_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Display names from the catalog, by plugin id (every stored plugin when `plugin_ids` is None);
    a plugin without a name is shown by its id, one the catalog does not hold is left out."""
    name = PluginRow.document["name"].as_string()
    stmt = select(PluginRow.plugin_id, name).order_by(PluginRow.plugin_id)
    if plugin_ids is None:
        return {plugin_id: found or plugin_id for plugin_id, found in session.execute(stmt)}
    names: dict[str, str] = {}
    for part in chunks(sorted(set(plugin_ids))):
        rows = session.execute(stmt.where(PluginRow.plugin_id.in_(part)))
        names.update({plugin_id: found or plugin_id for plugin_id, found in rows})
    return names


def catalog_version(session: Session) -> tuple[int, datetime | None]:
    """How many plugins the catalog holds and when one last changed: moves whenever a name may have."""
    count, newest = session.execute(select(func.count(), func.max(PluginRow.updated_at))).one()
    return int(count), newest


def advisory_references(session: Session, advisory_ids: Iterable[str]) -> dict[str, str]:
    """Each advisory's reference page: its OSV `references` entry of type ADVISORY, else the first
    http(s) reference; advisories without one are left out."""
    found: dict[str, str] = {}
    for part in chunks(sorted(set(advisory_ids))):
        stmt = select(AdvisoryRow.advisory_id, AdvisoryRow.document["references"]).where(
            AdvisoryRow.advisory_id.in_(part)
        )
        for advisory_id, references in session.execute(stmt):
            urls = [
                (r.get("type") != "ADVISORY", str(r["url"]))
                for r in references or []
                if isinstance(r, dict) and str(r.get("url", "")).startswith(("https://", "http://"))
            ]
            if urls:
                found[advisory_id] = min(urls)[1]
    return found
