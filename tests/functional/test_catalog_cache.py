"""The indexed catalog is reused between scans and rebuilt only for what changed."""

from __future__ import annotations

import msgspec

from powerx_governance.catalog.cache import CatalogCache
from powerx_governance.catalog.pushes import push_advisory
from powerx_governance.catalog_records import Advisory
from powerx_governance.db.session import transaction
from powerx_governance.scans.model import ScanKind, ScanTrigger
from tests.conftest import ServiceFactory

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
