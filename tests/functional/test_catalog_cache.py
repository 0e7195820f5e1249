"""The indexed catalog is reused between scans and rebuilt only for what changed."""

from __future__ import annotations

import msgspec

from powerx_governance.catalog.cache import CatalogCache
from powerx_governance.catalog.pushes import push_advisory
from powerx_governance.catalog_records import Advisory
from powerx_governance.db.session import transaction
from powerx_governance.scans.model import ScanKind, ScanTrigger
from tests.conftest import ServiceFactory, wait_until

CRM = "com.powerx.plugins.crm"


def test_only_touched_plugins_are_reindexed(make_service: ServiceFactory) -> None:
    service = make_service(POWERX_WORKER="0")
    service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending()
    cache = CatalogCache()
    with service.factory() as session:
        first = cache.index(session)
        again = cache.index(session)
    assert all(again.plugins[pid] is index for pid, index in first.plugins.items())
    advisory = msgspec.convert(
        {
            "id": "PXSA-CACHE-1",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [
                {
                    "package": {"ecosystem": "PowerX", "name": CRM},
                    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.5.0"}]}],
                }
            ],
        },
        Advisory,
    )
    with transaction(service.factory) as session:
        push_advisory(session, advisory, actor="test", now=service.clock())
    with service.factory() as session:
        after = cache.index(session)
    assert after.plugins[CRM] is not first.plugins[CRM]
    assert "PXSA-CACHE-1" in [a.id for a in after.plugins[CRM].advisories]
    untouched = [pid for pid in first.plugins if pid != CRM]
    assert all(after.plugins[pid] is first.plugins[pid] for pid in untouched)


def test_a_serving_process_indexes_the_catalog_at_start_before_any_scan(make_service: ServiceFactory) -> None:
    stored = make_service(POWERX_WORKER="0")
    stored.request_scan(ScanKind.FULL, ScanTrigger.API)
    stored.run_pending()
    api_only = make_service(POWERX_WORKER="0")
    api_only.start()
    serving = make_service(POWERX_WORKER="1")
    assert serving.catalog_cache.plugins_indexed == 0
    serving.start()
    with serving.factory() as session:
        plugins = len(CatalogCache().index(session).plugins)  # a cache of its own: the serving one untouched
    assert plugins > 0
    wait_until(lambda: serving.catalog_cache.plugins_indexed == plugins)
    assert api_only.catalog_cache.plugins_indexed == 0  # no scans run there: nothing indexed
