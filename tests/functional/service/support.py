"""Helpers shared by the service tests: scan polling, paging, metrics, the CLI engine as oracle."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from powerx_governance.scans.report import build_report
from powerx_governance.scans.service import FileScanRequest, run_file_scan
from tests.conftest import COMPAT, EXAMPLES, NOW, RULES, wait_until

API: Final = "/internal/version/governance"
FINISHED: Final = frozenset({"succeeded", "incomplete", "failed"})

# What a stored recommendation adds to the DESIGN §4 finding it was made from.
RECOMMENDATION_ONLY: Final = frozenset(
    {
        "id",
        "revision",
        "state",
        "first_seen_at",
        "updated_at",
        "resolved_at",
        "scan_id",
        "history",
        "policy_version",
    }
)
# What a report adds to the finding: figures as of the report's time.
REPORT_ONLY: Final = frozenset(
    {"manifest_age_seconds", "first_seen_at"}
)  # first_seen_at: when the scan first saw it


def wait_for_scan(client: httpx.Client, scan_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the scan's status route until the background worker has finished it."""
    latest: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal latest
        response = client.get(f"{API}/scans/{scan_id}")
        assert response.status_code == 200, response.text
        latest = response.json()
        return latest["status"] in FINISHED

    try:
        wait_until(finished, timeout=timeout, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"scan {scan_id} did not finish: {latest}") from exc
    return latest


def every_page(client: httpx.Client, *, limit: int, **filters: str) -> tuple[list[dict[str, Any]], int]:
    """Every recommendation matching `filters`, following `next_cursor`; (items, pages read)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {**filters, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get(f"{API}/recommendations", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 1000, "pagination does not end"


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text → {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(text: str, name: str, **labels: str) -> float | None:
    return metric_samples(text).get((name, frozenset(labels.items())))


def metric_sum(text: str, name: str) -> float:
    """The sum of a sample over all its label sets."""
    return sum(value for (sample, _), value in metric_samples(text).items() if sample == name)


def file_scan_report(
    *,
    catalog: Path = EXAMPLES / "catalog.yaml",
    manifests: Path = EXAMPLES / "manifests",
    now: datetime = NOW,
) -> dict[str, Any]:
    """What `powerx version scan --format json` reports for the same inputs: the oracle."""
    request = FileScanRequest(catalog=catalog, manifests=manifests, now=now, rules=RULES, compat=COMPAT)
    return build_report(run_file_scan(request).result)


def as_finding(recommendation: Mapping[str, Any]) -> dict[str, Any]:
    """A recommendation without its store bookkeeping: the finding it stands for."""
    return {k: v for k, v in recommendation.items() if k not in RECOMMENDATION_ONLY}


def as_stored(finding: Mapping[str, Any]) -> dict[str, Any]:
    """A report's finding as a recommendation keeps it (without report-time figures)."""
    return {k: v for k, v in finding.items() if k not in REPORT_ONLY}


def key(item: Mapping[str, Any]) -> tuple[str, str]:
    return item["tenant_uuid"], item["plugin_id"]


def _yaml(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    return loaded


class Inputs:
    """A copy of the example data as JSON (read ten times faster than YAML) that tests change.

    It serves as the service's file sources and as the input of the oracle, so a test can change
    the data the way a push does and ask what a full scan of the changed data reports.
    """

    def __init__(self, directory: Path, *, tenants: Iterable[str] | None = None) -> None:
        self.catalog_file = directory / "catalog.json"  # for POWERX_CATALOG_SOURCE
        self.manifests = directory / "manifests"  # for POWERX_TENANT_SOURCE
        self.manifests.mkdir(parents=True)
        shutil.copytree(EXAMPLES / "advisories", directory / "advisories")
        wanted = set(tenants) if tenants is not None else None
        for source in sorted((EXAMPLES / "manifests").iterdir()):
            if wanted is not None and source.stem not in wanted:
                continue
            if source.suffix == ".yaml":
                self.put_manifest(source.stem, _yaml(source))
            else:
                shutil.copy(source, self.manifests)
        self.catalog_document: dict[str, Any] = _yaml(EXAMPLES / "catalog.yaml")
        self._write()

    @property
    def sources(self) -> dict[str, str]:
        """The settings that make a service read these inputs as its tenant and catalog sources."""
        return {"POWERX_TENANT_SOURCE": str(self.manifests), "POWERX_CATALOG_SOURCE": str(self.catalog_file)}

    def _write(self) -> None:
        self.catalog_file.write_text(json.dumps(self.catalog_document), encoding="utf-8")

    def add_advisory(self, advisory: dict[str, Any]) -> None:
        path = self.catalog_file.parent / "advisories" / f"{advisory['id']}.json"
        path.write_text(json.dumps(advisory), encoding="utf-8")

    def add_release(self, plugin_id: str, release: dict[str, Any]) -> None:
        plugin = next(p for p in self.catalog_document["plugins"] if p["plugin_id"] == plugin_id)
        plugin["releases"].append(release)
        self._write()

    def manifest(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.manifests / f"{name}.json").read_text(encoding="utf-8"))
        return loaded

    def put_manifest(self, name: str, manifest: dict[str, Any]) -> None:
        (self.manifests / f"{name}.json").write_text(json.dumps(manifest), encoding="utf-8")

    def oracle(self) -> dict[str, Any]:
        return file_scan_report(catalog=self.catalog_file, manifests=self.manifests)
