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
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from sqlalchemy import func, select

from bench.common import dataset
from bench.store_reference import database
from powerx_governance.app import create_app
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import create_token
from powerx_governance.console import queries
from powerx_governance.console.pages import CARD_ORDER as CARDS
from powerx_governance.db.rows import MAX_ID
from powerx_governance.db.session import transaction
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.recommendations.queries import (
    Cursor,
    RecommendationFilter,
    encode_cursor,
    list_recommendations,
)
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def _timed(action: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


@contextmanager
def _served(service: GovernanceService) -> Iterator[str]:
    """The app on a free loopback port, in a thread; its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(service, background=False), log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _signed_in(service: GovernanceService, base_url: str) -> httpx.Client:
    with transaction(service.factory) as session:
        _, token = create_token(session, name="bench", role=Role.OPERATOR, tenant=None, now=service.clock())
    client = httpx.Client(base_url=base_url, timeout=60)
    form = client.get("/console/sign-in").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if csrf is None:
        raise SystemExit("no sign-in form")
    answer = client.post(
        "/console/sign-in", data={"token": token, "csrf_token": csrf.group(1), "next": "/console"}
    )
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code}")
    return client


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

        results[name] = _timed(fetch, repeat)
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
            results[name] = _timed(check, repeat)
    return results


def _measure(service: GovernanceService, label: str, repeat: int) -> None:
    with service.factory() as session:
        recs = session.scalar(select(func.count()).select_from(RecommendationRow))
        tenants = session.scalar(select(func.count()).select_from(TenantRow))
    print(f"[{label}] {tenants:,} tenants, {recs:,} recommendations")
    with _served(service) as base_url:
        client = _signed_in(service, base_url)
        try:
            for name, samples in _pages(service, client, repeat).items():
                print(f"  {name:44s} {_ms(samples)}")
        finally:
            client.close()
    for name, samples in _queries(service, repeat).items():
        print(f"  query {name:38s} {_ms(samples)}")


def _service(url: str, extra: dict[str, str]) -> GovernanceService:
    env = {"POWERX_DATABASE_URL": url, "POWERX_SCHEDULER": "0", "POWERX_WORKER": "0", **extra}
    return GovernanceService.create(load_settings(env), clock=lambda: datetime(2026, 11, 30, tzinfo=UTC))


def run(backend: str, tenants: int, repeat: int) -> None:
    """A fresh store of `backend`, a full scan of the synthetic fleet, then the measurements."""
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--database", help="measure an existing, scanned store (a database URL) instead")
    args = parser.parse_args()
    if args.database:
        service = _service(args.database, {})
        try:
            _measure(service, args.database.split(":", 1)[0], args.repeat)
        finally:
            service.stop()
        return
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, args.tenants, args.repeat)


if __name__ == "__main__":
    main()
