"""What the HTTP benches share: a scanned store of the synthetic fleet, the app served on a
loopback port, clients signed in, and timing samples printed the same way."""

from __future__ import annotations

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

from bench.common import dataset
from bench.store_reference import database
from powerx_governance.app import create_app
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import create_token
from powerx_governance.db.session import transaction
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.request import SCAN_TASK
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings

BENCH_NOW = datetime(2026, 11, 30, tzinfo=UTC)


def bench_service(url: str, extra: dict[str, str]) -> GovernanceService:
    """A service on `url` with no scheduler or worker of its own, at a fixed clock."""
    env = {"POWERX_DATABASE_URL": url, "POWERX_SCHEDULER": "0", "POWERX_WORKER": "0", **extra}
    return GovernanceService.create(load_settings(env), clock=lambda: BENCH_NOW)


@contextmanager
def scanned(backend: str, tenants: int) -> Iterator[GovernanceService]:
    """A fresh store of `backend` after one full scan of the synthetic fleet (its time printed);
    deliveries are left queued: they are not what these benches measure."""
    data = dataset(tenants)
    with database(backend) as url:
        service = bench_service(
            url, {"POWERX_TENANT_SOURCE": str(data.manifests), "POWERX_CATALOG_SOURCE": str(data.catalog)}
        )
        try:
            start = time.perf_counter()
            service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="bench")
            service.run_pending(tasks=frozenset({SCAN_TASK}))
            took = time.perf_counter() - start
            print(f"[{backend}] full scan of {data.installations:,} installations: {took:.1f} s")
            yield service
        finally:
            service.stop()


def ms(samples: list[float]) -> str:
    """Median, p95 (nearest rank) and maximum of wall-time samples, in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    median, top = statistics.median(ordered) * 1000, ordered[-1] * 1000
    return f"median {median:7.1f} ms  p95 {p95 * 1000:7.1f} ms  max {top:7.1f} ms"


def timed(action: Callable[[], Any], repeat: int) -> list[float]:
    """`repeat` wall-time samples of `action`, after one warm-up call (caches of the process,
    such as the catalog index, not of the data)."""
    action()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


@contextmanager
def served(service: GovernanceService) -> Iterator[str]:
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


def _token(service: GovernanceService, role: Role, tenant: str | None) -> str:
    with transaction(service.factory) as session:
        _, token = create_token(
            session, name=f"bench-{role.value}", role=role, tenant=tenant, now=service.clock()
        )
    return token


def console_client(
    service: GovernanceService, base_url: str, role: Role = Role.OPERATOR, tenant: str | None = None
) -> httpx.Client:
    """A client signed in to the console through its own sign-in form."""
    client = httpx.Client(base_url=base_url, timeout=60)
    form = client.get("/console/sign-in").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if csrf is None:
        raise SystemExit("no sign-in form")
    answer = client.post(
        "/console/sign-in",
        data={"token": _token(service, role, tenant), "csrf_token": csrf.group(1), "next": "/console"},
    )
    if answer.status_code != 303:
        raise SystemExit(f"sign-in failed: {answer.status_code}")
    return client


def api_client(service: GovernanceService, base_url: str) -> httpx.Client:
    """A client of the API with an operator's bearer token."""
    token = _token(service, Role.OPERATOR, None)
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
