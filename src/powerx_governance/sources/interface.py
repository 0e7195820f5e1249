"""The source interfaces the scanner depends on (core code imports only this module)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from powerx_governance.catalog.loader import Loaded
from powerx_governance.errors import SourceError
from powerx_governance.inventory.loader import ManifestResult


class SourceUnavailableError(SourceError):
    """The whole source could not be read (after retries): the scan cannot be complete."""


class TenantSource(Protocol):
    """Tenant manifests. A tenant whose manifest cannot be read is yielded as a ManifestResult
    with a problem (tenant_uuid set), never silently dropped, so coverage stays honest."""

    @property
    def name(self) -> str: ...

    def manifests(self, tenants: Iterable[str] | None = None) -> Iterator[ManifestResult]:
        """Every tenant's manifest (or only `tenants`); raises SourceUnavailableError if the
        tenant list itself cannot be read."""
        ...


class CatalogSource(Protocol):
    """Plugins, releases, OSV advisories and the compatibility matrix."""

    @property
    def name(self) -> str: ...

    def catalog(self) -> Loaded:
        """The whole catalog with per-record problems; raises SourceUnavailableError."""
        ...
