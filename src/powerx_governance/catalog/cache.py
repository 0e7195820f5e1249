"""The indexed catalog kept between scans and rebuilt only where the stored catalog changed.

A delta scan after one pushed advisory re-indexes the plugins that advisory touches, not the
500 plugins and 1,000 advisories of the whole catalog. Content hashes decide what changed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Final

import msgspec
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from powerx_governance.catalog.store import MATRIX
from powerx_governance.catalog.tables import AdvisoryRow, CatalogDocumentRow, PluginRow
from powerx_governance.catalog_records import Advisory, CompatEntry, Plugin
from powerx_governance.policy.compat import CompatMatrix
from powerx_governance.policy.index import (
    CatalogIndex,
    IndexedAdvisory,
    PluginIndex,
    index_advisory,
    index_plugin,
)

# Stored documents decoded from their JSON text straight into records: decoding them to Python
# objects first, then converting those, was most of the cost of indexing the catalog afresh (a
# process's first scan or push).
_PLUGIN: Final = msgspec.json.Decoder(Plugin)
_ADVISORY: Final = msgspec.json.Decoder(Advisory)


@dataclass
class CatalogCache:
    _plugins: dict[str, tuple[str, Plugin]] = field(default_factory=dict)
    _advisories: dict[str, tuple[str, list[tuple[str, IndexedAdvisory]]]] = field(default_factory=dict)
    _indexed: dict[str, tuple[tuple[str, ...], PluginIndex]] = field(default_factory=dict)
    _matrix: tuple[str, CompatMatrix] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def index(self, session: Session) -> CatalogIndex:
        """The current catalog, indexed; safe to call from several worker threads."""
        with self._lock:
            self._refresh_plugins(session)
            self._refresh_advisories(session)
            matrix = self._refresh_matrix(session)
            return CatalogIndex(self._plugin_indexes(), matrix)

    @property
    def plugins_indexed(self) -> int:
        """Plugins indexed so far (0 until the first `index`)."""
        with self._lock:
            return len(self._indexed)

    def _refresh_plugins(self, session: Session) -> None:
        hashes = dict(session.connection().execute(select(PluginRow.plugin_id, PluginRow.content_hash)).all())
        stale = [pid for pid, digest in hashes.items() if self._plugins.get(pid, ("",))[0] != digest]
        for pid in set(self._plugins) - set(hashes):
            del self._plugins[pid]
        if stale:
            rows = session.connection().execute(
                select(PluginRow.plugin_id, PluginRow.content_hash, cast(PluginRow.document, Text)).where(
                    PluginRow.plugin_id.in_(stale)
                )
            )
            for pid, digest, doc in rows:
                self._plugins[pid] = (digest, _PLUGIN.decode(doc))

    def _refresh_advisories(self, session: Session) -> None:
        hashes = dict(
            session.connection().execute(select(AdvisoryRow.advisory_id, AdvisoryRow.content_hash)).all()
        )
        stale = [aid for aid, digest in hashes.items() if self._advisories.get(aid, ("",))[0] != digest]
        for aid in set(self._advisories) - set(hashes):
            del self._advisories[aid]
        if stale:
            rows = session.connection().execute(
                select(
                    AdvisoryRow.advisory_id, AdvisoryRow.content_hash, cast(AdvisoryRow.document, Text)
                ).where(AdvisoryRow.advisory_id.in_(stale))
            )
            for aid, digest, doc in rows:
                self._advisories[aid] = (digest, index_advisory(_ADVISORY.decode(doc)))

    def _refresh_matrix(self, session: Session) -> CompatMatrix:
        row = session.get(CatalogDocumentRow, MATRIX)
        digest = row.content_hash if row else ""
        if self._matrix is None or self._matrix[0] != digest:
            entries = tuple(msgspec.convert(e, CompatEntry) for e in (row.document["matrix"] if row else []))
            self._matrix = (digest, CompatMatrix(entries))
        return self._matrix[1]

    def _plugin_indexes(self) -> dict[str, PluginIndex]:
        touching: dict[str, list[tuple[str, str, IndexedAdvisory]]] = {}
        for aid in sorted(self._advisories):
            digest, indexed = self._advisories[aid]
            for plugin_id, advisory in indexed:
                touching.setdefault(plugin_id, []).append((aid, digest, advisory))
        result: dict[str, PluginIndex] = {}
        for pid, (digest, plugin) in self._plugins.items():
            mine = touching.get(pid, [])
            key = (digest, *(f"{aid}:{adigest}" for aid, adigest, _ in mine))
            cached = self._indexed.get(pid)
            if cached is None or cached[0] != key:
                cached = self._indexed[pid] = (key, index_plugin(plugin, [a for _, _, a in mine]))
            result[pid] = cached[1]
        for gone in set(self._indexed) - set(result):
            del self._indexed[gone]
        return result
