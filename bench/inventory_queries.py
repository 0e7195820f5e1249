"""Fleet inventory queries and group evaluation at the reference fleet: server time over HTTP.

    python -m bench.inventory_queries [--tenants N] [--backend sqlite|postgresql|both] [--repeat K]

For each backend, in a fresh database: a full scan of the synthetic reference fleet (20,000
tenants x 50 installations by default) with no groups, then the groups of a groups file (one per
industry tag, one per plan) evaluated once (its wall time and the process's peak RSS; `--no-groups`
skips it), then K requests of each inventory route served by
uvicorn on a loopback port, as an operator: "tenants on plugin X version Y" (X the most installed
plugin, Y its most common version), the same for a range, the version distribution of X, and "who
is affected by advisory Y" (the advisory affecting the most installations). Figures are the
client's wall time per request (server time plus a loopback round trip): median, p95 and max.
Goal (issue 15): under 200 ms at the reference fleet.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import func, select

from bench.common import OUT, dataset, peak_rss_mib
from bench.console_overview import _served
from bench.store_reference import database
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import create_token
from powerx_governance.baselines.evaluation import Evaluator, evaluate
from powerx_governance.db.session import transaction
from powerx_governance.inventory.tables import InstallationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.request import SCAN_TASK
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings

API = "/internal/version/governance"
INDUSTRIES = ("retail", "finance", "healthcare", "education", "public-sector", "manufacturing")


def _groups_file() -> Path:
    groups = [{"id": tag, "select": {"tags": [tag]}} for tag in INDUSTRIES]
    groups += [{"id": f"plan-{plan}", "select": {"plans": [plan]}} for plan in ("free", "basic", "pro")]
    path = OUT / "groups-bench.yaml"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"schema": "powerx.groups/v1", "groups": groups}), encoding="utf-8")
    return path


def _service(url: str, extra: dict[str, str]) -> GovernanceService:
    env = {"POWERX_DATABASE_URL": url, "POWERX_SCHEDULER": "0", "POWERX_WORKER": "0", **extra}
    return GovernanceService.create(load_settings(env), clock=lambda: datetime(2026, 11, 30, tzinfo=UTC))


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    median, top = statistics.median(ordered) * 1000, ordered[-1] * 1000
    return f"median {median:7.1f} ms  p95 {p95 * 1000:7.1f} ms  max {top:7.1f} ms"


def _timed(action: Callable[[], Any], repeat: int) -> list[float]:
    action()  # warm: the first request loads the catalog index into the process
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def _targets(service: GovernanceService) -> tuple[str, str, str]:
    """(the most installed plugin, its most common version, the advisory affecting most installations)."""
    with service.factory() as session:
        plugin, version, _ = session.execute(
            select(InstallationRow.plugin_id, InstallationRow.version, func.count().label("n"))
            .group_by(InstallationRow.plugin_id, InstallationRow.version)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
        index = service.catalog_cache.index(session)
        counts = dict(
            session.execute(
                select(InstallationRow.plugin_id, func.count()).group_by(InstallationRow.plugin_id)
            ).all()
        )
    advisory = max(
        ((a.id, counts.get(pid, 0)) for pid, p in index.plugins.items() for a in p.advisories),
        key=lambda pair: pair[1],
    )[0]
    return plugin, version, advisory


@contextmanager
def _client(service: GovernanceService, base_url: str) -> Iterator[httpx.Client]:
    with transaction(service.factory) as session:
        _, token = create_token(session, name="bench", role=Role.OPERATOR, tenant=None, now=service.clock())
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        yield client


def _requests(client: httpx.Client, plugin: str, version: str, advisory: str) -> dict[str, Callable[[], Any]]:
    def get(path: str, **params: str) -> Callable[[], Any]:
        def call() -> Any:
            answer = client.get(f"{API}{path}", params=params)
            answer.raise_for_status()
            return answer.json()

        return call

    major = version.split(".", 1)[0]
    return {
        f"tenants on {plugin} {version}": get("/inventory/tenants", plugin=plugin, version=version),
        f"tenants on {plugin} ^{major}.0.0": get(
            "/inventory/tenants", plugin=plugin, version=f"^{major}.0.0"
        ),
        f"version distribution of {plugin}": get("/inventory/distribution", plugin=plugin),
        f"who is affected by {advisory}": get(f"/inventory/advisories/{advisory}"),
    }


def run(backend: str, tenants: int, repeat: int, *, groups: bool) -> None:
    data = dataset(tenants)
    with database(backend) as url:
        service = _service(
            url, {"POWERX_TENANT_SOURCE": str(data.manifests), "POWERX_CATALOG_SOURCE": str(data.catalog)}
        )
        try:
            start = time.perf_counter()
            service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="bench")
            service.run_pending(tasks=frozenset({SCAN_TASK}))  # deliveries are not what is measured
            took = time.perf_counter() - start
            print(f"[{backend}] full scan of {data.installations:,} installations: {took:.1f} s")
            if groups:
                service = service.reconfigured({"POWERX_GROUPS": str(_groups_file())})
                start = time.perf_counter()
                with transaction(service.factory) as session:
                    outcome = evaluate(session, service.require(Evaluator), service.clock())
                took, rss = time.perf_counter() - start, peak_rss_mib()
                print(f"  evaluate every group ({outcome.as_dict()}): {took:.1f} s, peak RSS {rss:.0f} MiB")
            plugin, version, advisory = _targets(service)
            with _served(service) as base_url, _client(service, base_url) as client:
                for name, action in _requests(client, plugin, version, advisory).items():
                    found = action()
                    size = found.get("total", found.get("tenants_total", len(found.get("items", []))))
                    print(f"  {name:60s} {size:>6} rows  {_ms(_timed(action, repeat))}")
        finally:
            service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-groups", action="store_true", help="skip the evaluation of every group")
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, args.tenants, args.repeat, groups=not args.no_groups)


if __name__ == "__main__":
    main()
