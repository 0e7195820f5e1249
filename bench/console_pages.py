"""The console pages of issue 14 at the reference fleet: overview, grouped advisory view and a card.

    python -m bench.console_pages [--tenants N] [--backend sqlite|postgresql|both] [--repeat K]

For each backend, in a fresh database: a full scan of the synthetic reference fleet (20,000
tenants x 50 installations by default, `bench/synthetic.py`), then, signed in through the
console's own sign-in form (an operator, and a tenant admin for the tenant pages), K requests of
each page served by uvicorn on a loopback port: server time plus a loopback round trip. The goal
is < 200 ms per page (issue 14). The first request of each page is a warm-up and not counted.
"""

from __future__ import annotations

import argparse
import re
import time
from html import unescape

import httpx
from sqlalchemy import func, select

from bench.common import dataset
from bench.console_overview import _ms, _served, _service, _signed_in, _timed
from bench.store_reference import database
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import create_token
from powerx_governance.db.session import transaction
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService

GOAL_MS = 200.0


def _tenant_admin(service: GovernanceService, base_url: str, tenant: str) -> httpx.Client:
    with transaction(service.factory) as session:
        _, token = create_token(
            session, name="bench-admin", role=Role.TENANT_ADMIN, tenant=tenant, now=service.clock()
        )
    client = httpx.Client(base_url=base_url, timeout=60)
    form = client.get("/console/sign-in").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if csrf is None:
        raise SystemExit("no sign-in form")
    client.post("/console/sign-in", data={"token": token, "csrf_token": csrf.group(1), "next": "/console"})
    return client


def _routes(service: GovernanceService, operator: httpx.Client) -> dict[str, str]:
    with service.factory() as session:
        busiest = session.execute(
            select(RecommendationRow.id, RecommendationRow.tenant_uuid)
            .where(RecommendationRow.state == "open")
            .order_by(RecommendationRow.priority.desc(), RecommendationRow.id)
            .limit(1)
        ).one()
    grouped = operator.get("/console/advisories").text
    bulk = re.search(r'href="(/console/bulk\?[^"]+)"', grouped)
    routes = {
        "GET /console (fleet action list)": "/console",
        "GET /console?critical=1 (filtered, counted)": "/console?critical=1",
        "GET /console/advisories (grouped)": "/console/advisories",
        f"GET /console/recommendations/{busiest.id} (card)": f"/console/recommendations/{busiest.id}",
        f"GET /console/tenants/{busiest.tenant_uuid}": f"/console/tenants/{busiest.tenant_uuid}",
    }
    if bulk is not None:
        routes["GET /console/bulk?… (advisory group preview)"] = unescape(bulk.group(1))
    return routes


def _measure(service: GovernanceService, label: str, repeat: int) -> None:
    with service.factory() as session:
        recs = session.scalar(select(func.count()).select_from(RecommendationRow))
        tenant = session.execute(select(RecommendationRow.tenant_uuid).limit(1)).scalar_one()
    print(f"[{label}] {recs:,} recommendations")
    with _served(service) as base_url:
        operator = _signed_in(service, base_url)
        admin = _tenant_admin(service, base_url, tenant)
        try:
            pages = [(operator, name, path) for name, path in _routes(service, operator).items()]
            pages.append((admin, "GET /console (tenant admin)", "/console"))
            pages.append((admin, "GET /console/advisories (tenant admin)", "/console/advisories"))
            for client, name, path in pages:

                def fetch(client: httpx.Client = client, path: str = path) -> None:
                    if client.get(path).status_code != 200:
                        raise SystemExit(f"{path} failed")

                fetch()  # warm-up: caches of the process, not of the data
                samples = _timed(fetch, repeat)
                verdict = "ok" if sorted(samples)[len(samples) // 2] * 1000 < GOAL_MS else "OVER GOAL"
                print(f"  {name:52s} {_ms(samples)}  {verdict}")
        finally:
            operator.close()
            admin.close()


def run(backend: str, tenants: int, repeat: int) -> None:
    data = dataset(tenants)
    with database(backend) as url:
        service = _service(
            url, {"POWERX_TENANT_SOURCE": str(data.manifests), "POWERX_CATALOG_SOURCE": str(data.catalog)}
        )
        try:
            start = time.perf_counter()
            service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="bench")
            service.run_pending()
            took = time.perf_counter() - start
            print(f"[{backend}] full scan of {data.installations:,} installations: {took:.1f} s")
            _measure(service, backend, repeat)
        finally:
            service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="postgresql")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, args.tenants, args.repeat)


if __name__ == "__main__":
    main()
