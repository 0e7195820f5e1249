"""The catalog from the PowerX catalog service: `POST {base}/internal/version/catalog`.

The answer is a catalog document (`powerx.catalog/v1`) with inline OSV `advisories` and an
optional compatibility `matrix`. A bad release, advisory or matrix entry is reported and skipped,
exactly as in a catalog file; an answer that cannot be read at all makes the source unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from powerx_governance.catalog.loader import (
    Loaded,
    load_advisories,
    load_matrix_entries,
    load_plugins,
)
from powerx_governance.catalog_records import CATALOG_SCHEMA
from powerx_governance.errors import InputError, InputProblem
from powerx_governance.http.client import (
    ErrorCallback,
    HttpPolicy,
    HttpSourceError,
    RetryingClient,
    request_headers,
)
from powerx_governance.safe_yaml import MAX_DOCUMENT_BYTES
from powerx_governance.sources.http_directory import check_base_url
from powerx_governance.sources.interface import SourceUnavailableError

CATALOG_REQUEST: Final = {"schema": "powerx.catalog-request/v1"}


def catalog_from_data(raw: Any, source: str) -> Loaded:
    """A catalog document given as plain data, record by record; InputError if unusable as a whole.

    Unlike a catalog file, the document must name its schema (an error body without one must not
    pass for an empty catalog) and carry its advisories inline (a remote answer never names a
    local directory to read).
    """
    if not isinstance(raw, dict):
        raise InputError(
            InputProblem(source, None, None, f"expected a catalog mapping, got {type(raw).__name__}")
        )
    schema = raw.get("schema")
    if schema != CATALOG_SCHEMA:
        raise InputError(InputProblem(source, None, "schema", f"expected {CATALOG_SCHEMA!r}, got {schema!r}"))
    loaded = Loaded()
    load_plugins(raw.get("plugins", []), source, loaded)
    advisories = raw.get("advisories")
    if isinstance(advisories, str):
        loaded.advisory_source_failed(
            InputProblem(source, None, "advisories", "expected a list of OSV records")
        )
    else:
        load_advisories(advisories, Path(), source, loaded)
    load_matrix_entries(raw.get("matrix"), source, loaded)
    return loaded


@dataclass(frozen=True)
class HttpCatalogSource:
    """The PowerX catalog service (`CatalogSource`)."""

    base_url: str
    token: str | None = field(default=None, repr=False)
    policy: HttpPolicy = field(default_factory=HttpPolicy)
    name: str = "catalog-service"
    on_error: ErrorCallback | None = field(default=None, repr=False, compare=False)
    max_body_bytes: int = MAX_DOCUMENT_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", check_base_url(self.base_url))

    @property
    def url(self) -> str:
        """Where the catalog is asked for."""
        return f"{self.base_url}/internal/version/catalog"

    def catalog(self) -> Loaded:
        """The whole catalog with per-record problems; SourceUnavailableError if it cannot be had."""
        try:
            return catalog_from_data(msgspec.json.decode(self._fetch()), self.url)
        except msgspec.DecodeError as exc:
            raise SourceUnavailableError(self.name, f"answer from {self.url} is not JSON: {exc}") from exc
        except InputError as exc:
            raise SourceUnavailableError(self.name, str(exc)) from exc

    def _fetch(self) -> bytes:
        headers = request_headers(self.token)
        with RetryingClient(self.name, self.policy, headers=headers, on_error=self.on_error) as client:
            try:  # the POST only reads the catalog, so retrying it is safe
                return client.request("POST", self.url, json=CATALOG_REQUEST, limit=self.max_body_bytes)
            except HttpSourceError as exc:
                raise SourceUnavailableError(self.name, exc.message) from exc
