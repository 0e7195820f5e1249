"""HTTP tenant directory and catalog sources against a real fake service on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from powerx_governance.http.client import HttpPolicy, retry_after_seconds
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.sources.http_catalog import HttpCatalogSource
from powerx_governance.sources.http_directory import HttpTenantSource
from powerx_governance.sources.interface import CatalogSource, SourceUnavailableError, TenantSource
from tests.functional.sources.fake_directory import (
    PLUGIN,
    FakePowerX,
    Faults,
    catalog_document,
    closed_port_url,
    manifest,
    tenant_uuid,
)

# Small backoff so retries cost milliseconds; a read timeout far above loopback latency.
FAST = HttpPolicy(connect_timeout=1.0, read_timeout=2.0, max_attempts=5, backoff_base=0.01, backoff_cap=0.05)
TOKEN = "s3cret-token"
WRONG_TOKEN = "not-the-token"


class ErrorLog:
    """A thread-safe `on_error` callback that remembers every failed attempt."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.sources: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, source: str, kind: str) -> None:
        with self._lock:
            self.kinds[kind] += 1
            self.sources.add(source)


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


def _by_tenant(results: Iterator[ManifestResult]) -> dict[str, ManifestResult]:
    """Results keyed by tenant uuid (of the manifest, else of the problem); each tenant once."""
    keyed: dict[str, ManifestResult] = {}
    for result in results:
        if result.manifest is not None:
            key = result.manifest.tenant_uuid
        else:
            assert result.problem is not None
            assert result.problem.tenant_uuid is not None
            key = result.problem.tenant_uuid
        assert key not in keyed, result
        keyed[key] = result
    return keyed


def _problems(results: dict[str, ManifestResult]) -> dict[str, str]:
    return {uuid: str(r.problem) for uuid, r in results.items() if r.problem is not None}


def test_sources_satisfy_the_interfaces() -> None:
    tenant_source: TenantSource = HttpTenantSource("http://127.0.0.1:1")
    catalog_source: CatalogSource = HttpCatalogSource("http://127.0.0.1:1/")
    assert tenant_source.name == "tenant-directory"
    assert catalog_source.name == "catalog-service"
    assert TOKEN not in repr(HttpTenantSource("http://127.0.0.1:1", token=TOKEN))
    with pytest.raises(ValueError, match="http"):
        HttpTenantSource("file:///etc")


def test_every_page_is_listed_and_every_manifest_validated() -> None:
    with FakePowerX(200, faults=Faults(token=TOKEN)) as fake:
        source = HttpTenantSource(fake.base_url, token=TOKEN, policy=FAST, page_size=64)
        results = _by_tenant(source.manifests())
    assert set(results) == set(fake.listed)
    assert all(r.manifest is not None and r.problem is None for r in results.values())
    assert fake.hits["list"] == 4  # 64 + 64 + 64 + 8
    assert all(fake.hits[uuid] == 1 for uuid in fake.listed)


def test_retries_recover_from_random_failures(errors: ErrorLog) -> None:
    with FakePowerX(500, faults=Faults(fail_rate=0.2, seed=20261130)) as fake:
        source = HttpTenantSource(fake.base_url, policy=FAST, page_size=100, on_error=errors)
        results = _by_tenant(source.manifests())
    valid = sum(r.manifest is not None for r in results.values())
    assert len(results) == 500
    assert valid >= 495  # ≥ 99 % coverage
    assert fake.failures_served > 50  # the faults really happened…
    gave_up = len(results) - valid  # tenants whose last attempt failed too
    assert fake.requests == 500 + 5 + fake.failures_served - gave_up  # …and every other one was retried
    assert errors.kinds.total() == fake.failures_served
    assert set(errors.kinds) <= {"http_5xx"}
    assert errors.sources == {"tenant-directory"}


def test_persistent_server_errors_fail_only_those_tenants(errors: ErrorLog) -> None:
    broken = {tenant_uuid(3): 500, tenant_uuid(17): 503, tenant_uuid(42): 502}
    with FakePowerX(60, faults=Faults(always_fail=broken)) as fake:
        source = HttpTenantSource(fake.base_url, policy=FAST, on_error=errors)
        results = _by_tenant(source.manifests())
    problems = _problems(results)
    assert set(problems) == set(broken)
    for uuid, status in broken.items():
        assert f"tenant {uuid}" in problems[uuid]
        assert f"HTTP {status}" in problems[uuid]
        assert "after 5 attempts" in problems[uuid]
        assert fake.hits[uuid] == FAST.max_attempts
    assert errors.kinds == Counter({"http_5xx": 3 * FAST.max_attempts})
    assert sum(r.manifest is not None for r in results.values()) == 57


def test_a_read_timeout_fails_that_tenant_and_a_slow_answer_succeeds(errors: ErrorLog) -> None:
    stuck, slow = tenant_uuid(1), tenant_uuid(2)
    policy = HttpPolicy(read_timeout=1.0, max_attempts=2, backoff_base=0.01, backoff_cap=0.02)
    # Margins that hold on a loaded machine (tests run in parallel): the slow answer comes 0.9 s inside
    # the read timeout, and the stuck one would take 30 s (closing the fake wakes it), far beyond two reads.
    with FakePowerX(20, faults=Faults(delays={stuck: 30.0, slow: 0.1})) as fake:
        started = time.monotonic()
        results = _by_tenant(HttpTenantSource(fake.base_url, policy=policy, on_error=errors).manifests())
        elapsed = time.monotonic() - started
    assert set(_problems(results)) == {stuck}
    assert "timed out" in _problems(results)[stuck]
    assert results[slow].manifest is not None
    assert fake.hits[stuck] == 2
    assert errors.kinds == Counter({"timeout": 2})
    assert elapsed < 10.0  # two 1 s reads, not the server's 30 s sleep


def test_bad_bodies_are_problems_naming_the_tenant_and_field() -> None:
    garbled, invalid, mistyped, elsewhere, missing, huge = (tenant_uuid(i) for i in range(6))
    faults = Faults(raw_manifests={garbled: b'{"schema": "powerx.manifest/v1", ', huge: b" " * 5000})
    with FakePowerX(10, faults=faults) as fake:
        fake.manifests[invalid]["core_version"] = "one.two"
        fake.manifests[mistyped]["plugins"] = [{"plugin_id": PLUGIN, "version": 3}]
        fake.manifests[elsewhere] = manifest(tenant_uuid(99))
        del fake.manifests[missing]
        source = HttpTenantSource(fake.base_url, policy=FAST, max_manifest_bytes=4096)
        results = _by_tenant(source.manifests())
    problems = {uuid: r.problem for uuid, r in results.items() if r.problem is not None}
    assert set(problems) == {garbled, invalid, mistyped, elsewhere, missing, huge}
    assert all(p.record == f"tenant {uuid}" and p.tenant_uuid == uuid for uuid, p in problems.items())
    assert "invalid JSON" in problems[garbled].error
    assert problems[invalid].field == "core_version"
    assert problems[mistyped].field == "plugins[0].version"
    assert problems[elsewhere].field == "tenant_uuid"
    assert "HTTP 404" in problems[missing].error
    assert "over the 4096" in problems[huge].error
    assert fake.hits[missing] == 1  # a 404 is never retried
    assert fake.hits[huge] == 1  # nor is an oversized body


def test_rate_limiting_honours_retry_after(errors: ErrorLog) -> None:
    limited = tenant_uuid(0)
    with FakePowerX(3, faults=Faults(rate_limited={limited: "1"})) as fake:
        source = HttpTenantSource(fake.base_url, policy=FAST, on_error=errors)
        started = time.monotonic()
        results = list(source.manifests([limited]))
        elapsed = time.monotonic() - started
    assert [r.manifest and r.manifest.tenant_uuid for r in results] == [limited]
    assert 0.95 <= elapsed < 3.0
    assert fake.hits == Counter({limited: 2})  # no listing when tenants are given
    assert errors.kinds == Counter({"http_429": 1})


def test_retry_after_is_capped() -> None:
    limited = tenant_uuid(0)
    policy = HttpPolicy(backoff_base=0.01, backoff_cap=0.02, max_retry_after=0.2)
    with FakePowerX(1, faults=Faults(rate_limited={limited: "3600"})) as fake:
        started = time.monotonic()
        results = list(HttpTenantSource(fake.base_url, policy=policy).manifests([limited]))
        elapsed = time.monotonic() - started
    assert results[0].manifest is not None
    assert 0.19 <= elapsed < 1.5


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now=now) == 7.0
    assert retry_after_seconds("Mon, 30 Nov 2026 08:00:12 GMT", now=now) == 12.0
    assert retry_after_seconds("Mon, 30 Nov 2026 07:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds("-3", now=now) is None
    assert retry_after_seconds(None, now=now) is None


def test_a_directory_that_is_down_is_unavailable_quickly(errors: ErrorLog) -> None:
    policy = HttpPolicy(max_attempts=3, backoff_base=0.01, backoff_cap=0.02)
    source = HttpTenantSource(closed_port_url(), policy=policy, on_error=errors)
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="cannot list tenants: cannot connect"):
        list(source.manifests())
    assert time.monotonic() - started < 2.0
    assert errors.kinds == Counter({"connect": 3})


def test_an_unreadable_page_makes_the_directory_unavailable() -> None:
    with FakePowerX(30, faults=Faults(fail_listing_page=1)) as fake:
        source = HttpTenantSource(fake.base_url, policy=FAST, page_size=10)
        with pytest.raises(SourceUnavailableError, match="HTTP 500"):
            list(source.manifests())
    assert fake.hits["list"] == 1 + FAST.max_attempts
    assert fake.requests == fake.hits["list"]  # no manifest fetched from a partial list


def test_stopping_early_closes_cleanly() -> None:
    with FakePowerX(100) as fake:
        results = HttpTenantSource(fake.base_url, policy=FAST, workers=2, page_size=100).manifests()
        first = next(results)
        results.close()
    assert first.manifest is not None
    assert fake.requests < 1 + 100  # the rest was never fetched


def test_catalog_is_loaded_from_the_service() -> None:
    with FakePowerX(faults=Faults(token=TOKEN)) as fake:
        loaded = HttpCatalogSource(fake.base_url, token=TOKEN, policy=FAST).catalog()
    assert loaded.problems == []
    assert [r.version for r in loaded.plugins[0].releases] == ["2.3.0", "2.4.0"]
    assert [a.id for a in loaded.advisories] == ["PXSA-2026-0001"]
    assert len(loaded.matrix) == 1
    assert fake.hits["catalog"] == 1


def test_a_bad_release_in_the_catalog_is_reported_and_skipped() -> None:
    bad = {"version": "2.5.x", "released_at": "2026-02-01T00:00:00Z"}
    with FakePowerX(catalog=catalog_document(bad)) as fake:
        source = HttpCatalogSource(fake.base_url, policy=FAST)
        loaded = source.catalog()
    assert [r.version for r in loaded.plugins[0].releases] == ["2.3.0", "2.4.0"]
    [problem] = loaded.problems
    assert problem.source == source.url
    assert problem.record == f"{PLUGIN} releases[2] 2.5.x"
    assert problem.field == "version"


def test_catalog_retries_through_transient_unavailability(errors: ErrorLog) -> None:
    with FakePowerX(faults=Faults(catalog_failures=2)) as fake:
        loaded = HttpCatalogSource(fake.base_url, policy=FAST, on_error=errors).catalog()
    assert loaded.plugins
    assert fake.hits["catalog"] == 3
    assert errors.kinds == Counter({"http_5xx": 2})


def test_a_catalog_service_that_stays_down_is_unavailable() -> None:
    with (
        FakePowerX(faults=Faults(catalog_failures=100)) as fake,
        pytest.raises(SourceUnavailableError, match=r"HTTP 503 .* after 5 attempts"),
    ):
        HttpCatalogSource(fake.base_url, policy=FAST).catalog()
    assert fake.hits["catalog"] == FAST.max_attempts
    with pytest.raises(SourceUnavailableError, match="cannot connect"):
        HttpCatalogSource(closed_port_url(), policy=FAST).catalog()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>gateway</html>", "not JSON"),
        (json.dumps({"schema": "powerx.catalog/v2", "plugins": []}).encode(), "'schema'"),
        (json.dumps({"error": "maintenance"}).encode(), "'schema'"),
        (b"[]", "expected a catalog mapping"),
    ],
)
def test_an_unusable_catalog_answer_is_unavailable(body: bytes, message: str) -> None:
    with (
        FakePowerX(faults=Faults(catalog_body=body)) as fake,
        pytest.raises(SourceUnavailableError, match=message),
    ):
        HttpCatalogSource(fake.base_url, policy=FAST).catalog()
    assert fake.hits["catalog"] == 1


def test_a_refused_token_is_not_retried() -> None:
    with (
        FakePowerX(faults=Faults(token=TOKEN)) as fake,
        pytest.raises(SourceUnavailableError, match=r"HTTP 401 .* after 1 attempt:"),
    ):
        HttpCatalogSource(fake.base_url, token=WRONG_TOKEN, policy=FAST).catalog()
    assert fake.hits["catalog"] == 1
