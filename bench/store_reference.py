"""DESIGN §8 through the store: full scans of the reference fleet and push-to-update latency.

    python -m bench.store_reference [--tenants N] [--backend sqlite|postgresql|both] [--pushes K]
                                    [--steps ingest,steady,floor,delta] [--keep] [--reuse URL]

For each backend, in a fresh database (SQLite file or a new PostgreSQL schema), one process per
step, each measured whole by the kernel (wall and peak RSS, as `/usr/bin/time -v` reports them):
  ingest   first full scan: read the JSON-lines source, store 1M installations, evaluate, persist
  vacuum   (only when named in `--steps`) PostgreSQL: `VACUUM (ANALYZE)` of the database's tables, as
           autovacuum does after such an ingest on a server that runs it (this machine's runs with
           autovacuum off: its tables were never vacuumed nor analysed, and the planner guessed their
           sizes: a hash join of the kept sums spilled to disk); timed, not a process
  steady   second full scan, nothing changed: read, evaluate, compare, persist nothing
  floor    a process that only reads every installation back out of the store (DESIGN §8's floor)
  delta    K times: push a critical advisory for the plugin most tenants run, time until the delta
           scan is finished (recommendations updated, notifications queued, scan audited), in a
           process whose catalog was indexed before the first push, as a serving process does at start
Figures are ratios to the floor measured in the same run. Inside each step, the scan's own phase
timings are printed too (they leave out interpreter start, imports and set-up). `--steps` runs some
of them, in this order (the others read what `ingest` stored): `--steps ingest` a first ingest alone.

`--keep` keeps the database (its URL is printed); `--reuse URL` runs only the pushes on such a
database (the reference ingest takes minutes). Each run pushes advisories of its own ids, so runs on
one database each change every affected recommendation; `PYTHONPATH=<other checkout>/src` in front
measures another build's pushes on the same database (A/B).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import create_engine, func, select, text

from bench.common import OUT, Run, dataset, json_line, peak_rss_mib, whole_process
from powerx_governance.catalog.pushes import push_advisory
from powerx_governance.catalog_records import Advisory
from powerx_governance.db.session import transaction
from powerx_governance.inventory.tables import InstallationRow
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.runner import SCAN_TASK
from powerx_governance.scans.shards import FINISH_TASK, SHARD_TASK
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings

PG_ROOT = "postgresql+psycopg://root@127.0.0.1:5432/test"
SCANS_ONLY = frozenset({SCAN_TASK, SHARD_TASK, FINISH_TASK})  # a sharded scan's jobs too
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


@contextmanager
def database(backend: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh database URL for one run, removed afterwards unless `keep`."""
    if backend == "sqlite":
        path = OUT / f"store-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite+pysqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-writers"):
                if not keep:
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ROOT, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ROOT}?options=-csearch_path%3D{schema}"
    finally:
        if not keep:
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


def _busiest_plugin(service: GovernanceService) -> tuple[str, int]:
    with service.factory() as session:
        plugin, count = session.execute(
            select(InstallationRow.plugin_id, func.count())
            .group_by(InstallationRow.plugin_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
    return plugin, count


def _push(service: GovernanceService, plugin_id: str, serial: str) -> tuple[float, float]:
    """Push an advisory; seconds until the delta scan has committed the updated recommendations and
    their notifications (DESIGN §8's measure), and until the scan is finished (its audit record too)."""
    advisory = msgspec.convert(
        {
            "id": f"PXSA-BENCH-{serial}",
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
    start, pushed_at = time.perf_counter(), service.clock()
    with transaction(service.factory) as session:
        push_advisory(session, advisory, actor="bench", now=pushed_at)
        scan_id = service.request_delta(session, "bench")
    service.run_pending(tasks=SCANS_ONLY)
    finished = time.perf_counter() - start
    with service.factory() as session:
        scan = session.get_one(ScanRow, scan_id)
        assert scan.started_at is not None  # noqa: S101 - it ran
        updated = (scan.started_at - pushed_at).total_seconds() + float(scan.timings["total"])
    return updated, finished


def _p99(values: list[float]) -> float:
    """Nearest rank: the largest of fewer than 100 values."""
    return sorted(values)[max(0, math.ceil(len(values) * 0.99) - 1)]


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
    if os.environ.get("POWERX_SCAN_SHARD_SIZE"):  # full scans cut into tenant shards (each its own job)
        env["POWERX_SCAN_SHARD_SIZE"] = os.environ["POWERX_SCAN_SHARD_SIZE"]
    return GovernanceService.create(load_settings(env))


def step(name: str, url: str, tenants: int, pushes: int) -> dict[str, Any]:
    """One step in this process (the parent measures the process)."""
    service = fleet_service(url, tenants)
    try:
        if name in ("ingest", "steady"):
            return _scan(service, ScanKind.FULL)
        plugin, installs = _busiest_plugin(service)
        service.warm_catalog()  # as a serving process does at start (`GovernanceService.start`)
        run = uuid.uuid4().hex[:8]  # a database kept for more runs gets new advisories from each
        updated, latencies = zip(
            *(_push(service, plugin, f"{run}-{i:04d}") for i in range(pushes)), strict=True
        )
        with service.factory() as session:
            recommendations = session.scalar(select(func.count()).select_from(RecommendationRow))
    finally:
        service.stop()
    return {
        "plugin": plugin,
        "installations": installs,
        "pushes": pushes,
        "p50": round(statistics.median(latencies), 3),
        "p99": round(_p99(list(latencies)), 3),
        "max": round(max(latencies), 3),
        "updated_p50": round(statistics.median(updated), 3),
        "updated_p99": round(_p99(list(updated)), 3),
        "recommendations": recommendations,
        "peak_rss_mib_inside": round(peak_rss_mib(), 1),
    }


STEPS = ("ingest", "vacuum", "steady", "floor", "delta")
DEFAULT_STEPS = ("ingest", "steady", "floor", "delta")  # as measured before `vacuum` was a step


def run(
    backend: str, tenants: int, pushes: int, wanted: tuple[str, ...] = DEFAULT_STEPS, *, keep: bool = False
) -> dict[str, tuple[Run, dict[str, Any]]]:
    """The `wanted` steps of one backend, each its own process on the same fresh database."""
    dataset(tenants)  # generated (once) before anything is timed
    with database(backend, keep=keep) as url:
        if keep:
            print(f"[{backend}] database kept: --reuse '{url}'")
        return run_steps(url, tenants, pushes, wanted)


def vacuum(url: str) -> Run:
    """`VACUUM (ANALYZE)` of the tables of the database at `url` (its schema's only: the server holds
    other databases' schemas), timed."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        start = time.perf_counter()
        with engine.connect() as connection:
            mine = text("SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()")
            tables = ", ".join(connection.execute(mine).scalars())
            connection.execute(text(f"VACUUM (ANALYZE) {tables}"))
        seconds = time.perf_counter() - start
    finally:
        engine.dispose()
    return Run(round(seconds, 3), 0.0, 0, "", 0.0, 0.0, 1)


def run_steps(
    url: str, tenants: int, pushes: int, names: tuple[str, ...]
) -> dict[str, tuple[Run, dict[str, Any]]]:
    """The steps `names` on the database at `url`, each its own process."""
    steps: dict[str, tuple[Run, dict[str, Any]]] = {}
    for name in (step for step in STEPS if step in names):
        if name == "vacuum":
            if url.startswith("postgresql"):
                steps[name] = (vacuum(url), {})
            continue
        command = [sys.executable, "-m", "bench.store_reference", "--step", name, "--url", url]
        command += ["--tenants", str(tenants), "--pushes", str(pushes)]
        if name == "floor":
            command = [sys.executable, "-m", "bench.floors", "inventory", url]
        done = whole_process(command)
        steps[name] = (done, json_line(done))
    return steps


def _figures(run_: Run) -> str:
    return f"{run_.seconds:7.2f} s (cpu {run_.cpu_seconds:6.2f} s) {run_.peak_rss_mib:6.0f} MiB"


def _print(backend: str, tenants: int, steps: dict[str, tuple[Run, dict[str, Any]]]) -> None:
    print(f"[{backend}] {tenants:,} tenants; whole processes: wall (cpu) peak RSS")
    floor = steps["floor"][0] if "floor" in steps else None
    if floor is not None:
        read = steps["floor"][1]
        print(
            f"  floor  {_figures(floor)}  a process reading the inventory out of the store"
            f" ({read['installations']:,} installations)"
        )
    if "vacuum" in steps:
        print(
            f"  vacuum {steps['vacuum'][0].seconds:7.2f} s"
            "  VACUUM (ANALYZE) of the tables after the ingest, as autovacuum would"
        )
    for name in ("ingest", "steady"):
        if name not in steps:
            continue
        run_, r = steps[name]
        ratio = (
            ""
            if floor is None
            else f" full scan = {run_.seconds / floor.seconds:5.2f}x floor"
            f" (cpu {run_.cpu_seconds / floor.cpu_seconds:5.2f}x);"
        )
        print(
            f"  {name:6s} {_figures(run_)} {ratio} the scan itself {r['seconds']:.2f} s,"
            f" {r['status']}, {r['findings']:,} findings, {r['changes']:,} changes {r['timings']}"
        )
    if "delta" not in steps:
        return
    delta_run, delta = steps["delta"]
    print(
        f"  delta  {_figures(delta_run)}  {delta['pushes']} pushes of an advisory for {delta['plugin']}"
        f" ({delta['installations']:,} installations): push -> recommendations updated and notifications"
        f" queued p50 {delta['updated_p50']:.3f} s, p99 {delta['updated_p99']:.3f} s; push -> scan finished"
        f" (its audit record written) p50 {delta['p50']:.3f} s, p99 {delta['p99']:.3f} s,"
        f" max {delta['max']:.3f} s; {delta['recommendations']:,} recommendations"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument(
        "--steps",
        default=",".join(DEFAULT_STEPS),
        help="comma-separated, of " + ",".join(STEPS) + " (default: all but vacuum)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (for --reuse)")
    parser.add_argument("--reuse", metavar="URL", help="only the pushes, on a database kept by --keep")
    parser.add_argument("--step", choices=["ingest", "steady", "delta"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.url, args.tenants, args.pushes), default=str))
        return
    if args.reuse:
        backend = "postgresql" if args.reuse.startswith("postgresql") else "sqlite"
        _print(backend, args.tenants, run_steps(args.reuse, args.tenants, args.pushes, ("delta",)))
        return
    wanted = tuple(step.strip() for step in args.steps.split(","))
    unknown = set(wanted) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        _print(backend, args.tenants, run(backend, args.tenants, args.pushes, wanted, keep=args.keep))


if __name__ == "__main__":
    main()
