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
from html import unescape

import httpx
from sqlalchemy import func, select

from bench.served import console_client, ms, scanned, served, timed
from powerx_governance.auth.model import Role
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.service import GovernanceService

GOAL_MS = 200.0


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
    with served(service) as base_url:
        operator = console_client(service, base_url)
        admin = console_client(service, base_url, Role.TENANT_ADMIN, tenant)
        try:
            pages = [(operator, name, path) for name, path in _routes(service, operator).items()]
            pages.append((admin, "GET /console (tenant admin)", "/console"))
            pages.append((admin, "GET /console/advisories (tenant admin)", "/console/advisories"))
            for client, name, path in pages:

                def fetch(client: httpx.Client = client, path: str = path) -> None:
                    if client.get(path).status_code != 200:
                        raise SystemExit(f"{path} failed")

                samples = timed(fetch, repeat)
                verdict = "ok" if sorted(samples)[len(samples) // 2] * 1000 < GOAL_MS else "OVER GOAL"
                print(f"  {name:52s} {ms(samples)}  {verdict}")
        finally:
            operator.close()
            admin.close()


def run(backend: str, tenants: int, repeat: int) -> None:
    with scanned(backend, tenants) as service:
        _measure(service, backend, repeat)


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
