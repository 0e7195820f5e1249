"""The console's overview at fleet size: server time of the pages and of the queries behind them.

    python -m bench.console_overview [--tenants N] [--backend sqlite|postgresql|both] [--repeat K]

For each backend, in a fresh database: a full scan of the synthetic reference fleet (20,000
tenants x 50 installations by default), then, signed in as an operator through the console's
own sign-in form, K requests of each page served by uvicorn on a loopback port (server time plus
a loopback round trip), and the console queries on their own.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.served import bench_service, console_client, ms, scanned, served, timed
from powerx_governance.console import queries
from powerx_governance.console.pages import CARD_ORDER as CARDS
from powerx_governance.db.rows import MAX_ID
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.recommendations.queries import (
    Cursor,
    RecommendationFilter,
    encode_cursor,
    list_recommendations,
)
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.service import GovernanceService


def _pages(service: GovernanceService, client: httpx.Client, repeat: int) -> dict[str, list[float]]:
    with service.factory() as session:
        tenant = session.execute(select(RecommendationRow.tenant_uuid).limit(1)).scalar_one()
    deep = "/console"
    for _ in range(20):  # follow "next page" 20 times: page 21 of the fleet's open cards
        found = re.search(r'rel="next" href="([^"]+)"', client.get(deep).text)
        if found is None:
            break
        deep = found.group(1).replace("&amp;", "&")
    routes = {
        "GET /console (fleet overview)": "/console",
        "GET /console?risk=critical&tag=finance": "/console?risk=critical&tag=finance",
        "GET /console, page 21": deep,
        "GET /console/tenants/{one}": f"/console/tenants/{tenant}",
        "GET /console/adoption (fleet)": "/console/adoption",
        "GET /console/scans": "/console/scans",
    }
    results = {}
    for name, path in routes.items():

        def fetch(path: str = path) -> None:
            if client.get(path).status_code != 200:
                raise SystemExit(f"{path} failed")

        results[name] = timed(fetch, repeat)
    return results


def _queries(service: GovernanceService, repeat: int) -> dict[str, list[float]]:
    now = service.clock()
    results = {}
    with service.factory() as session:
        tenant = session.execute(select(RecommendationRow.tenant_uuid).limit(1)).scalar_one()
        from_50 = encode_cursor(Cursor(CARDS, 50, MAX_ID))
        checks: dict[str, Callable[[], Any]] = {
            "posture (fleet)": lambda: queries.posture(session, tenant_uuid=None, now=now),
            "posture (one tenant)": lambda: queries.posture(session, tenant_uuid=tenant, now=now),
            "cards (fleet, open, first 25)": lambda: list_recommendations(
                session, RecommendationFilter(state="open"), limit=25, cursor=None, order=CARDS
            ),
            "cards (fleet, open, from priority 50)": lambda: list_recommendations(
                session, RecommendationFilter(state="open"), limit=25, cursor=from_50, order=CARDS
            ),
            "cards (tag=finance, critical)": lambda: list_recommendations(
                session,
                RecommendationFilter(state="open", risk_level="critical", tenant_tags=("finance",)),
                limit=25,
                cursor=None,
                order=CARDS,
            ),
            "API order (fleet, open, first 25)": lambda: list_recommendations(
                session, RecommendationFilter(state="open"), limit=25, cursor=None
            ),
            "adoption (fleet, 12 weeks)": lambda: queries.adoption(session, tenant_uuid=None, now=now),
        }
        for name, check in checks.items():
            results[name] = timed(check, repeat)
    return results


def _measure(service: GovernanceService, label: str, repeat: int) -> None:
    with service.factory() as session:
        recs = session.scalar(select(func.count()).select_from(RecommendationRow))
        tenants = session.scalar(select(func.count()).select_from(TenantRow))
    print(f"[{label}] {tenants:,} tenants, {recs:,} recommendations")
    with served(service) as base_url:
        client = console_client(service, base_url)
        try:
            for name, samples in _pages(service, client, repeat).items():
                print(f"  {name:44s} {ms(samples)}")
        finally:
            client.close()
    for name, samples in _queries(service, repeat).items():
        print(f"  query {name:38s} {ms(samples)}")


def run(backend: str, tenants: int, repeat: int) -> None:
    """A fresh store of `backend`, a full scan of the synthetic fleet, then the measurements."""
    with scanned(backend, tenants) as service:
        _measure(service, backend, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--database", help="measure an existing, scanned store (a database URL) instead")
    args = parser.parse_args()
    if args.database:
        service = bench_service(args.database, {})
        try:
            _measure(service, args.database.split(":", 1)[0], args.repeat)
        finally:
            service.stop()
        return
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, args.tenants, args.repeat)


if __name__ == "__main__":
    main()
