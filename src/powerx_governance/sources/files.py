"""Sources backed by files: a manifest directory (or JSON-lines file) and a catalog file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from powerx_governance.catalog.loader import Loaded, load_catalog, load_matrix
from powerx_governance.errors import InputError
from powerx_governance.inventory.loader import ManifestResult, load_manifests
from powerx_governance.sources.interface import SourceUnavailableError


@dataclass(frozen=True)
class FileTenantSource:
    path: Path
    name: str = "files"

    def manifests(self, tenants: Iterable[str] | None = None) -> Iterator[ManifestResult]:
        wanted = set(tenants) if tenants is not None else None
        try:
            for result in load_manifests(self.path):
                uuid = (
                    result.manifest.tenant_uuid
                    if result.manifest
                    else (result.problem and result.problem.tenant_uuid)
                )
                if wanted is None or uuid in wanted:
                    yield result
        except InputError as exc:
            raise SourceUnavailableError(self.name, str(exc)) from exc


@dataclass(frozen=True)
class FileCatalogSource:
    catalog_path: Path
    matrix_path: Path | None = None
    name: str = "catalog-file"

    def catalog(self) -> Loaded:
        loaded = Loaded()
        try:
            load_catalog(self.catalog_path, loaded)
            if self.matrix_path is not None:
                load_matrix(self.matrix_path, loaded)
        except InputError as exc:
            raise SourceUnavailableError(self.name, str(exc)) from exc
        return loaded
