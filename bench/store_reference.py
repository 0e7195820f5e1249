"""DESIGN §8 through the store: full scans of the reference fleet and push-to-update latency.

    python -m bench.store_reference [--tenants N] [--backend sqlite|postgresql|both] [--pushes K]

For each backend, in a fresh database (SQLite file or a new PostgreSQL schema):
  floor    read every installation back out of the store (the load floor of DESIGN §8)
  ingest   first full scan: read the JSON-lines source, store 1M installations, evaluate, persist
  steady   second full scan, nothing changed: read, evaluate, compare, persist nothing
  delta    K times: push a critical advisory for one plugin, time until its recommendations are updated
Phases run in one process per backend; figures are ratios to the floor measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import create_engine, func, select, text

from bench.common import OUT, dataset, peak_rss_mib, run_phase
from powerx_governance.catalog.pushes import push_advisory
from powerx_governance.catalog_records import Advisory
from powerx_governance.db.session import transaction
from powerx_governance.inventory.store import load_manifests
from powerx_governance.inventory.tables import InstallationRow
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.runner import SCAN_TASK
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings

PG_ROOT = "postgresql+psycopg://root@127.0.0.1:5432/test"
SCANS_ONLY = frozenset({SCAN_TASK})
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh database URL for one run, removed afterwards."""
    if backend == "sqlite":
        path = OUT / f"store-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite+pysqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ROOT, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ROOT}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _scan(service: GovernanceService, kind: ScanKind) -> dict[str, Any]:
    start = time.perf_counter()
    scan_id = service.request_scan(kind, ScanTrigger.CLI, requested_by="bench")
    service.run_pending(tasks=SCANS_ONLY)  # notification deliveries are not part of the scan
    seconds = time.perf_counter() - start
    with service.factory() as session:
        row = session.get_one(ScanRow, scan_id)
        return {
            "seconds": round(seconds, 3),
            "status": row.status,
            "changes": row.changes,
            "findings": row.findings,
            "timings": row.timings,
        }


def _floor(service: GovernanceService) -> dict[str, Any]:
    start = time.perf_counter()
    with service.factory() as session:
        manifests = load_manifests(session)
    return {
        "seconds": round(time.perf_counter() - start, 3),
        "installations": sum(len(m.plugins) for m in manifests),
    }


def _busiest_plugin(service: GovernanceService) -> tuple[str, int]:
    with service.factory() as session:
        plugin, count = session.execute(
            select(InstallationRow.plugin_id, func.count())
            .group_by(InstallationRow.plugin_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
    return plugin, count


def _push(service: GovernanceService, plugin_id: str, serial: int) -> float:
    """Push an advisory; seconds until the delta scan has updated the recommendations."""
    advisory = msgspec.convert(
        {
            "id": f"PXSA-BENCH-{serial:04d}",
            "published": "2026-11-29T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": CRITICAL}],
            "affected": [
                {
                    "package": {"ecosystem": "PowerX", "name": plugin_id},
                    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "999.0.0"}]}],
                }
            ],
        },
        Advisory,
    )
    start = time.perf_counter()
    with transaction(service.factory) as session:
        push_advisory(session, advisory, actor="bench", now=service.clock())
        service.request_delta(session, "bench")
    service.run_pending(tasks=SCANS_ONLY)
    return time.perf_counter() - start


def fleet_service(url: str, tenants: int) -> GovernanceService:
    """A service (no threads) on `url` whose sources are the synthetic fleet of `tenants` tenants."""
    data = dataset(tenants)
    env = {
        "POWERX_DATABASE_URL": url,
        "POWERX_TENANT_SOURCE": str(data.manifests),
        "POWERX_CATALOG_SOURCE": str(data.catalog),
        "POWERX_SCHEDULER": "0",
        "POWERX_WORKER": "0",
    }
    return GovernanceService.create(load_settings(env))


def run(backend: str, tenants: int, pushes: int) -> dict[str, Any]:
    with database(backend) as url:
        service = fleet_service(url, tenants)
        try:
            ingest = _scan(service, ScanKind.FULL)
            steady = _scan(service, ScanKind.FULL)
            floor = _floor(service)
            plugin, installs = _busiest_plugin(service)
            latencies = [_push(service, plugin, i) for i in range(pushes)]
            with service.factory() as session:
                recommendations = session.scalar(select(func.count()).select_from(RecommendationRow))
        finally:
            service.stop()
    return {
        "backend": backend,
        "tenants": tenants,
        "floor": floor,
        "ingest": ingest,
        "steady": steady,
        "delta": {
            "plugin": plugin,
            "installations": installs,
            "pushes": pushes,
            "p50": round(statistics.median(latencies), 3),
            "p99": round(sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)], 3),
            "max": round(max(latencies), 3),
        },
        "recommendations": recommendations,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def _print(result: dict[str, Any]) -> None:
    floor = result["floor"]["seconds"]
    installs, recs = result["floor"]["installations"], result["recommendations"]
    print(
        f"[{result['backend']}] {result['tenants']} tenants, {installs:,} installations,"
        f" {recs:,} recommendations, peak RSS {result['peak_rss_mib']} MiB"
    )
    print(f"  floor  (read inventory from store) {floor:7.2f} s")
    for name in ("ingest", "steady"):
        r = result[name]
        print(
            f"  {name:6s} full scan {r['seconds']:7.2f} s  = {r['seconds'] / floor:5.2f}x floor  "
            f"status {r['status']}, {r['changes']:,} changes  {r['timings']}"
        )
    d = result["delta"]
    print(
        f"  delta  advisory for {d['plugin']} ({d['installations']:,} installations): "
        f"p50 {d['p50']:.3f} s, p99 {d['p99']:.3f} s, max {d['max']:.3f} s over {d['pushes']} pushes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run(args.phase, args.tenants, args.pushes), default=str))
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        _print(
            run_phase(
                "bench.store_reference",
                "--phase",
                backend,
                "--tenants",
                str(args.tenants),
                "--pushes",
                str(args.pushes),
            )
        )


if __name__ == "__main__":
    main()
