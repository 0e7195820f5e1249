"""The seeded synthetic fleet generator: deterministic, well-formed, fleet-shaped."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from bench.synthetic import CVSS_VECTORS, SyntheticSet, generate

from powerx_governance.catalog.loader import Loaded, load_catalog
from powerx_governance.domain import Severity
from powerx_governance.inventory.loader import load_manifests
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.policy.severity import score_vector
from powerx_governance.scans.service import FileScanRequest, run_file_scan

SMALL = {
    "tenants": 50,
    "installations_per_tenant": 12,
    "plugins": 40,
    "releases_per_plugin": 10,
    "advisories": 60,
}
LABEL_BANDS = {
    "CRITICAL": Severity.CRITICAL,
    "HIGH": Severity.HIGH,
    "MODERATE": Severity.MEDIUM,
    "LOW": Severity.LOW,
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSet:
    return generate(tmp_path_factory.mktemp("synthetic"), seed=7, **SMALL)


def _files(result: SyntheticSet) -> tuple[bytes, bytes]:
    return result.catalog.read_bytes(), result.manifests.read_bytes()


def test_same_seed_writes_byte_identical_files(small: SyntheticSet, tmp_path: Path) -> None:
    again = generate(tmp_path, seed=7, **SMALL)
    assert _files(again) == _files(small)


def test_a_different_seed_writes_different_files(small: SyntheticSet, tmp_path: Path) -> None:
    other = generate(tmp_path, seed=8, **SMALL)
    catalog, manifests = _files(other)
    assert catalog != small.catalog.read_bytes()
    assert manifests != small.manifests.read_bytes()


def test_reports_what_it_wrote(small: SyntheticSet) -> None:
    assert small.catalog.name == "catalog.json"
    assert small.manifests.name == "manifests.jsonl"
    assert (small.tenants, small.installations) == (50, 50 * 12)
    assert (small.plugins, small.releases, small.advisories) == (40, 400, 60)


def test_catalog_loads_without_problems_and_matches_the_counts(small: SyntheticSet) -> None:
    loaded = Loaded()
    load_catalog(small.catalog, loaded)
    assert loaded.problems == []
    assert len(loaded.plugins) == small.plugins
    assert all(len(p.releases) == 10 for p in loaded.plugins)
    assert len(loaded.advisories) == small.advisories
    assert len({a.id for a in loaded.advisories}) == small.advisories


def test_every_manifest_line_decodes_and_validates(small: SyntheticSet) -> None:
    lines = small.manifests.read_bytes().splitlines()
    assert len(lines) == small.tenants
    assert all(msgspec.json.decode(line, type=TenantManifest) for line in lines)
    results = list(load_manifests(small.manifests))
    assert [r.problem for r in results if r.problem] == []
    manifests = [r.manifest for r in results if r.manifest is not None]
    assert len(manifests) == small.tenants
    assert len({m.tenant_uuid for m in manifests}) == small.tenants
    assert all(len(m.plugins) == 12 for m in manifests)
    assert all(len({p.plugin_id for p in m.plugins}) == 12 for m in manifests)


def test_installations_refer_to_catalog_releases(small: SyntheticSet) -> None:
    loaded = Loaded()
    load_catalog(small.catalog, loaded)
    known = {(p.plugin_id, r.version) for p in loaded.plugins for r in p.releases}
    for result in load_manifests(small.manifests):
        assert result.manifest is not None
        assert all((i.plugin_id, i.version) in known for i in result.manifest.plugins)


def test_the_fleet_repeats_combinations_like_a_real_one(tmp_path: Path) -> None:
    """Most installations share their (plugin, version, core) with others: evaluation cost stays flat."""
    result = generate(tmp_path, tenants=2_000, installations_per_tenant=10, plugins=30, advisories=10, seed=3)
    combos: set[tuple[str, str, str]] = set()
    for item in load_manifests(result.manifests):
        assert item.manifest is not None
        combos.update((p.plugin_id, p.version, item.manifest.core_version) for p in item.manifest.plugins)
    assert len(combos) < result.installations / 5


def test_the_set_scans_without_errors(small: SyntheticSet) -> None:
    request = FileScanRequest(
        catalog=small.catalog, manifests=small.manifests, now=datetime(2026, 11, 30, tzinfo=UTC)
    )
    result = run_file_scan(request).result
    assert result.errors == []
    assert result.tenants_scanned == small.tenants
    assert result.installations == small.installations
    assert result.findings


@pytest.mark.parametrize(("vector", "label"), CVSS_VECTORS)
def test_sampled_vectors_score_in_their_band(vector: str, label: str) -> None:
    assert score_vector(vector)[2] is LABEL_BANDS[label]


def test_defaults_are_the_reference_workload() -> None:
    defaults = {
        name: p.default for name, p in inspect.signature(generate).parameters.items() if name != "out_dir"
    }
    assert defaults == {
        "tenants": 20_000,
        "installations_per_tenant": 50,
        "plugins": 500,
        "releases_per_plugin": 40,
        "advisories": 1_000,
        "seed": 0,
    }


def test_refuses_more_installations_than_plugins(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot exceed plugins"):
        generate(tmp_path, tenants=1, installations_per_tenant=11, plugins=10)


def test_tiny_sets_are_still_valid(tmp_path: Path) -> None:
    result = generate(
        tmp_path, tenants=2, installations_per_tenant=1, plugins=1, releases_per_plugin=1, advisories=2
    )
    loaded = Loaded()
    load_catalog(result.catalog, loaded)
    assert loaded.problems == []
    assert [r.problem for r in load_manifests(result.manifests)] == [None, None]
