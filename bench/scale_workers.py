"""Scale-out: a sharded full scan on procrastinate with 1 and with 2 `powerx version worker` processes.

    python -m bench.scale_workers [--tenants N] [--shard-size S] [--workers 1,2] [--noop-jobs K]
                                  [--delta-plugins P] [--delta-shard-from I]
    python -m bench.scale_workers --tenants 0          # the queue overhead only

Per worker count, on a fresh PostgreSQL schema: the first full scan (the one the workers' first
periodic tick requests: every recommendation, revision, console card and event written) and a steady
re-scan (nothing changed), each from its request to the finish job's commit (the store's
timestamps), with N separate worker processes (concurrency 1 each). From the shard rows: the per-
shard cost (evaluate + persist + follow-ups, in the worker) and the share of the wall time the
coordinator took. Then a large delta scan: one pushed critical advisory for each of the P plugins
most tenants run (every version affected), sharded when it evaluates at least I installations, from
the push to the finish job's commit. Queue overhead: K jobs that do nothing (a shard job whose shard
does not exist) through one worker, wall time per job: defer in the caller's transaction, fetch, the
ledger's start and completion, procrastinate's finish.
The default fleet is smaller than DESIGN §8's reference: the
reference workload's first scan takes tens of minutes on this shared 2-core machine, so the
default is 4,000 tenants x 25 installations (100,000), 16 shards of 250 tenants; the per-shard
cost is what extrapolates.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import text

from bench.common import OUT
from bench.store_reference import database
from bench.synthetic import generate
from powerx_governance.catalog import pushes
from powerx_governance.catalog_records import Advisory
from powerx_governance.db.session import transaction
from powerx_governance.jobs import queue
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.shards import SHARD_TASK
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings

POWERX = Path(sys.executable).with_name("powerx")
TICKS = os.sysconf("SC_CLK_TCK")


def _process_ticks(pid: int) -> int:
    """CPU ticks (user + system) a process used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine since boot (/proc/stat's first line)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class CpuMeter:
    """Where the CPU went during a measured span: the worker processes, PostgreSQL's processes
    (backends that exit within the span are not counted) and the whole machine (/proc/stat), in
    cores (CPU seconds per wall second). A run that already keeps the machine's cores busy cannot
    go faster with more workers: `os.cpu_count() / machine cores of one worker` bounds the speed-up."""

    def __init__(self, workers: list[int]) -> None:
        self.workers = workers
        self.started = time.monotonic()
        self.worker_ticks = sum(_process_ticks(p) for p in workers)
        self.postgres = {p: _process_ticks(p) for p in _postgres_pids()}
        self.machine = _machine_ticks()

    def cores(self) -> dict[str, float]:
        wall = time.monotonic() - self.started
        workers = sum(_process_ticks(p) for p in self.workers) - self.worker_ticks
        postgres = sum(_process_ticks(p) - self.postgres.get(p, 0) for p in _postgres_pids())
        busy, total = _machine_ticks()
        machine_busy = (busy - self.machine[0]) / max(1, total - self.machine[1]) * (os.cpu_count() or 1)
        return {
            "workers_cores": round(workers / TICKS / wall, 2),
            "postgres_cores": round(postgres / TICKS / wall, 2),
            "machine_cores_busy": round(machine_busy, 2),
        }


def _fleet(tenants: int, installations: int) -> Path:
    directory = OUT / f"scale-fleet-{tenants}x{installations}"
    if not (directory / "manifests.jsonl").exists():
        generate(
            directory, tenants=tenants, installations_per_tenant=installations, plugins=500, advisories=1_000
        )
    return directory


@contextmanager
def _workers(env: dict[str, str], count: int) -> Iterator[list[int]]:
    logs = [(OUT / f"scale-worker-{n}.log").open("w") for n in range(count)]
    command = [
        str(POWERX),
        "version",
        "worker",
        "--concurrency",
        "1",
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    processes = [subprocess.Popen(command, env=env, stdout=log, stderr=log) for log in logs]
    try:
        yield [p.pid for p in processes]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        for log in logs:
            log.close()


def _wait_scan(service: GovernanceService, scan_id: str, timeout: float = 3600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with service.engine.connect() as connection:
            status = connection.execute(
                text("SELECT status FROM scans WHERE scan_id = :s"), {"s": scan_id}
            ).scalar()
        if status not in ("queued", "running"):
            return str(status)
        time.sleep(0.05)
    raise TimeoutError(scan_id)


def _scheduled(service: GovernanceService, timeout: float = 120) -> str:
    """The scan the workers' first tick requests for the current slot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with service.engine.connect() as connection:
            found = connection.execute(text("SELECT scan_id FROM scans WHERE trigger = 'schedule'")).scalar()
        if found:
            return str(found)
        time.sleep(0.05)
    raise TimeoutError("no scheduled scan")


def _delta(service: GovernanceService, meter: CpuMeter, plugins: int) -> dict[str, Any]:
    """Push a critical advisory (every version affected) for each of the `plugins` most-run plugins,
    all in one transaction with the delta scan they queue; the delta from request to finish."""
    with service.engine.connect() as connection:
        top = connection.execute(
            text(
                "SELECT plugin_id, count(*) FROM installations GROUP BY plugin_id"
                " ORDER BY count(*) DESC, plugin_id LIMIT :n"
            ),
            {"n": plugins},
        ).all()
    with transaction(service.factory) as session:
        for n, (plugin_id, _) in enumerate(top):
            pushes.push_advisory(session, _advisory(n, plugin_id), actor="bench", now=service.clock())
        scan_id = service.request_delta(session, "bench")
    installations = sum(int(c) for _, c in top)
    return {"plugins": plugins, "installations": installations, **_scan(service, meter, scan_id)}


def _advisory(n: int, plugin_id: str) -> Advisory:
    record = {
        "id": f"PXSA-BENCH-{n:04d}",
        "summary": f"bench advisory for {plugin_id}",
        "modified": "2026-12-01T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{"package": {"ecosystem": "PowerX", "name": plugin_id}, "ranges": [_every_version()]}],
    }
    return msgspec.convert(record, Advisory)


def _every_version() -> dict[str, Any]:
    return {"type": "SEMVER", "events": [{"introduced": "0"}]}


def _scan(service: GovernanceService, meter: CpuMeter, scan_id: str | None = None) -> dict[str, Any]:
    """A full scan (the given one, else a new one) from its request to its finish, by the store's
    clock, with the CPU it took (from `meter`'s start)."""
    scan_id = scan_id or service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="bench")
    status = _wait_scan(service, scan_id)
    cores = meter.cores()
    with service.engine.connect() as connection:
        timings, requested, finished = connection.execute(
            text("SELECT timings, requested_at, finished_at FROM scans WHERE scan_id = :s"), {"s": scan_id}
        ).one()
        wall = (finished - requested).total_seconds()
        seconds = [
            float(s)
            for s in connection.execute(
                text("SELECT seconds FROM scan_shards WHERE scan_id = :s AND seconds IS NOT NULL"),
                {"s": scan_id},
            ).scalars()
        ]
    return {
        "status": status,
        "wall_seconds": round(wall, 3),
        "plan_seconds": (timings or {}).get("plan"),
        "shards": len(seconds),
        "shard_seconds_median": round(statistics.median(seconds), 4) if seconds else None,
        "shard_seconds_max": round(max(seconds), 4) if seconds else None,
        "shard_seconds_total": round(sum(seconds), 3),
        **cores,
    }


def _overhead(service: GovernanceService, env: dict[str, str], jobs: int) -> dict[str, Any]:
    """K jobs that return at once through one worker: the queue's own cost per job."""
    with transaction(service.factory) as session:
        for n in range(jobs):
            payload = {"scan_id": "no-such-scan", "shard": n}
            queue.enqueue(session, SHARD_TASK, payload, key=f"bench:noop:{n}", now=service.clock())
    start = time.perf_counter()
    with _workers(env, 1):
        while _unfinished(service, "bench:noop:%"):
            time.sleep(0.02)
    wall = time.perf_counter() - start
    return {"jobs": jobs, "seconds": round(wall, 3), "ms_per_job": round(wall / jobs * 1000, 2)}


def _unfinished(service: GovernanceService, keys: str) -> int:
    with service.engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM jobs WHERE idempotency_key LIKE :k AND status <> 'done'"),
                {"k": keys},
            ).scalar_one()
        )


def _noop_overhead(jobs: int) -> dict[str, Any]:
    """On an empty store: nothing but the no-op jobs in the queue."""
    with database("postgresql") as url:
        env = _environ(url, None, shard_size=0)  # no tenant source: the tick's scan finds an empty store
        service = GovernanceService.create(load_settings(env))
        try:
            return _overhead(service, env, jobs)
        finally:
            service.stop()


def _environ(
    url: str, fleet: Path | None, *, shard_size: int, delta_shard_from: int = 50_000
) -> dict[str, str]:
    sources = (
        {
            "POWERX_TENANT_SOURCE": str(fleet / "manifests.jsonl"),
            "POWERX_CATALOG_SOURCE": str(fleet / "catalog.json"),
        }
        if fleet is not None
        else {}
    )
    return {
        **os.environ,
        **sources,
        "POWERX_DATABASE_URL": url,
        "POWERX_VAR_DIR": str(OUT),
        "POWERX_QUEUE_BACKEND": "procrastinate",
        "POWERX_SCAN_SHARD_SIZE": str(shard_size),
        "POWERX_SCAN_DELTA_SHARD_FROM": str(delta_shard_from),
        "POWERX_WORKER": "0",
    }


def run(
    tenants: int,
    installations: int,
    shard_size: int,
    counts: list[int],
    noop: int,
    delta: tuple[int, int] = (0, 50_000),
) -> dict[str, Any]:
    figures: dict[str, Any] = {"queue_overhead": _noop_overhead(noop)} if noop else {}
    print(f"queue overhead: {figures.get('queue_overhead')}", flush=True)
    if not tenants:  # `--tenants 0`: the queue overhead only
        return figures
    fleet = _fleet(tenants, installations)
    figures |= {
        "tenants": tenants,
        "installations": tenants * installations,
        "shard_size": shard_size,
    }
    for count in counts:
        with database("postgresql") as url:
            env = _environ(url, fleet, shard_size=shard_size, delta_shard_from=delta[1])
            service = GovernanceService.create(load_settings(env))
            try:
                with _workers(env, count) as pids:
                    meter = CpuMeter(pids)
                    first = _scan(service, meter, _scheduled(service))  # the first tick's scan: all new
                    steady = _scan(service, CpuMeter(pids))
                    phases = {"first": first, "steady": steady}
                    if delta[0]:
                        phases["delta"] = _delta(service, CpuMeter(pids), delta[0])
                figures[f"workers_{count}"] = phases
                print(f"{count} worker(s): {json.dumps(phases)}", flush=True)
            finally:
                service.stop()
    if len(counts) == 2:
        for phase in ("first", "steady", *(("delta",) if delta[0] else ())):
            one = figures[f"workers_{counts[0]}"][phase]["wall_seconds"]
            two = figures[f"workers_{counts[1]}"][phase]["wall_seconds"]
            figures[f"speedup_{phase}"] = round(one / two, 2)
            busy = figures[f"workers_{counts[0]}"][phase]["machine_cores_busy"]
            bound = (os.cpu_count() or 1) / busy if busy else float("inf")
            figures[f"cpu_bound_{phase}"] = round(bound, 2)
            print(
                f"{phase}: {counts[1]} workers vs {counts[0]}: x{one / two:.2f}; with {counts[0]} the"
                f" machine's {os.cpu_count()} cores were {busy} busy: at most x{bound:.2f} from this machine"
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=4_000)
    parser.add_argument("--installations", type=int, default=25)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--noop-jobs", type=int, default=1_000)
    parser.add_argument("--delta-plugins", type=int, default=0, help="advisories for P plugins: a delta")
    parser.add_argument("--delta-shard-from", type=int, default=50_000)
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]
    delta = (args.delta_plugins, args.delta_shard_from)
    figures = run(args.tenants, args.installations, args.shard_size, counts, args.noop_jobs, delta)
    out = OUT / "scale_workers.json"
    out.write_text(json.dumps(figures, indent=2))
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
