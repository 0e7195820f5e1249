"""Audit trail: verify a million-event hash chain, and the throughput of `record`.

    python -m bench.audit_verify [--events N] [--records K] [--backend sqlite|postgresql|both]
                                 [--repeat R] [--url URL]

For each backend, in a fresh database (SQLite file or a new PostgreSQL schema), one process
per step, each measured whole by the kernel (wall, CPU and peak RSS, as `/usr/bin/time -v`):
  fill     N events written with driver-level bulk inserts, hashes chained in Python (this
           measures verify, not record; the last event goes through `record` so the chain
           head marker is set exactly as in production)
  floor    a process that only reads every stored column of every event out of the store
  verify   the real `powerx audit verify` process over the whole chain (goal: 1,000,000 events
           in <= 10 s on 2 cores), with its ratio to the floor
  record   K events through `record`, one transaction each (the decision path's cost)
Floor and verify run R times, interleaved; medians are printed, with the 1-minute load average
of the machine around them. `--url` measures an already filled database instead (no fill, no
record step: it is left as it was).

Both measured processes run from compiled bytecode, as an installed `powerx` does (pip and
`uv --compile-bytecode` compile at install, Python itself on first run): the bytecode goes to
bench/out/pycache once, so a PYTHONDONTWRITEBYTECODE environment does not make every run
compile a thousand modules again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bench.common import OUT, Run, installed_environment, json_line, whole_process
from bench.store_reference import database
from powerx_governance.audit.service import (
    GENESIS,
    AuditEvent,
    chain_hash,
    hashed_fields,
    record,
    rfc3339,
)
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.db.bulk import bulk_insert
from powerx_governance.db.migrate import upgrade
from powerx_governance.db.session import make_engine, session_factory, transaction

START = datetime(2025, 1, 1, tzinfo=UTC)
CHUNK = 50_000


def _event(i: int) -> AuditEvent:
    """A decision-shaped event, like the ones the service records."""
    return AuditEvent(
        source="governance",
        operation=("decision.upgrade", "decision.ignore", "decision.schedule", "sla.breach")[i % 4],
        resource_type="recommendation",
        resource_id=str(100_000 + i % 50_000),
        actor=f"operator-{i % 17}",
        tenant_uuid=f"00000000-0000-4000-8000-{i % 20_000:012d}",
        correlation_id=f"req-{i:010d}",
        severity="warning" if i % 4 == 1 else "info",
        changes={
            "before": {"state": "open", "revision": i % 9},
            "after": {"state": "decided", "revision": i % 9, "reason": "scheduled with the next window"},
        },
        meta={"plugin_id": f"com.powerx.plugins.p{i % 500:03d}", "target_version": "2.4.1", "risk": 7.5},
        occurred_at=START + timedelta(milliseconds=i),
        event_id=f"bench-{i:012d}",
    )


def _row(event: AuditEvent, prev_hash: str) -> dict[str, Any]:
    """The stored row of `event` (already plain JSON: no masking needed) chained after `prev_hash`."""
    assert event.occurred_at is not None  # noqa: S101 - _event always sets it
    fields = {**hashed_fields(event, event.occurred_at), "recorded_at": rfc3339(event.occurred_at)}
    digest = chain_hash(prev_hash, fields)
    row = {k: v for k, v in fields.items() if k not in ("schema", "occurred_at", "recorded_at")}
    return row | {
        "occurred_at": event.occurred_at,
        "recorded_at": event.occurred_at,
        "prev_hash": prev_hash,
        "hash": digest,
    }


def _chunks(count: int) -> Iterator[list[dict[str, Any]]]:
    prev_hash = GENESIS
    for start in range(0, count, CHUNK):
        rows = []
        for i in range(start, min(count, start + CHUNK)):
            rows.append(_row(_event(i), prev_hash))
            prev_hash = rows[-1]["hash"]
        yield rows


def fill(factory: sessionmaker[Session], count: int) -> float:
    """Write `count` chained events (the last through `record`); seconds taken."""
    begin = time.perf_counter()
    with transaction(factory) as session:
        for rows in _chunks(count - 1):
            bulk_insert(session, AuditEventRow, rows)
        record(session, _event(count - 1), START + timedelta(days=1))
    return time.perf_counter() - begin


def time_record(factory: sessionmaker[Session], count: int, offset: int) -> dict[str, Any]:
    begin = time.perf_counter()
    now = START + timedelta(days=2)
    for i in range(offset, offset + count):
        with transaction(factory) as session:
            record(session, _event(i), now)
    seconds = time.perf_counter() - begin
    return {"events": count, "seconds": round(seconds, 3), "events_per_second": round(count / seconds)}


def step(name: str, url: str, events: int, records: int) -> dict[str, Any]:
    """One step in this process (the parent measures the process)."""
    engine = make_engine(url)
    try:
        factory = session_factory(engine)
        if name == "fill":
            upgrade(engine)
            return {"fill_seconds": round(fill(factory, events), 3)}
        return time_record(factory, records, events)
    finally:
        engine.dispose()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def measure(url: str, repeat: int) -> dict[str, Any]:
    """Floor and verify processes, `repeat` times interleaved; every run, and the machine's load."""
    env = installed_environment({"POWERX_DATABASE_URL": url, "POWERX_SCHEDULER": "0", "POWERX_WORKER": "0"})
    powerx = str(Path(sys.executable).with_name("powerx"))
    runs: dict[str, list[Run]] = {"floor": [], "verify": []}
    loads = [_load()]
    for _ in range(repeat):
        runs["floor"].append(whole_process([sys.executable, "-m", "bench.floors", "audit", url], env=env))
        runs["verify"].append(whole_process([powerx, "audit", "verify", "--json"], env=env))
        loads.append(_load())
    return {"runs": runs, "loads": loads, "verified": json_line(runs["verify"][-1])}


def run(backend: str, events: int, records: int, repeat: int) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    with database(backend) as url:
        command = [sys.executable, "-m", "bench.audit_verify", "--step", "fill", "--url", url]
        filled = json_line(whole_process([*command, "--events", str(events), "--records", str(records)]))
        measured = measure(url, repeat)
        command = [sys.executable, "-m", "bench.audit_verify", "--step", "record", "--url", url]
        recorded = whole_process([*command, "--events", str(events), "--records", str(records)])
    verified = measured["verified"]
    if not verified["ok"] or verified["checked"] != events:
        raise SystemExit(f"verify failed on the benchmark chain: {verified}")
    return {
        "backend": backend,
        "events": events,
        "fill_seconds": filled["fill_seconds"],
        **measured,
        "record": json_line(recorded),
    }


def _median(runs: list[Run], figure: str) -> float:
    return float(statistics.median(getattr(run, figure) for run in runs))


def _print(result: dict[str, Any]) -> None:
    runs, loads = result["runs"], result["loads"]
    filled = f"filled in {result['fill_seconds']:.1f} s" if result.get("fill_seconds") else "already filled"
    print(
        f"[{result['backend']}] {result['events']:,} events ({filled}); medians of {len(runs['floor'])}"
        f" runs; load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs"
    )
    floor = {figure: _median(runs["floor"], figure) for figure in ("seconds", "cpu_seconds", "peak_rss_mib")}
    for name in ("floor", "verify"):
        wall, cpu, rss = (_median(runs[name], f) for f in ("seconds", "cpu_seconds", "peak_rss_mib"))
        label = (
            f"`powerx audit verify`: {wall / floor['seconds']:.2f}x floor wall,"
            f" {cpu / floor['cpu_seconds']:.2f}x floor CPU, {result['events'] / wall:,.0f} events/s"
            if name == "verify"
            else "a bare driver reads every column of every event"
        )
        every = " ".join(f"{r.seconds:.1f}/{r.cpu_seconds:.1f}" for r in runs[name])
        print(f"  {name:7s} {wall:7.2f} s (cpu {cpu:6.2f} s) {rss:6.0f} MiB  {label}  [wall/cpu: {every}]")
    recorded = result.get("record")
    if recorded:
        print(
            f"  record  {recorded['seconds']:7.2f} s   {recorded['events_per_second']:>10,} events/s"
            f"  ({recorded['events']:,} events, one transaction each)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=3, help="floor and verify runs, interleaved")
    parser.add_argument("--url", help="measure this already filled database (its events: --events)")
    parser.add_argument("--step", choices=["fill", "record"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.events < 1 or args.repeat < 1:
        parser.error("--events and --repeat must be at least 1")
    if args.step:
        print(json.dumps(step(args.step, args.url, args.events, args.records)))
        return
    if args.url:
        backend = "postgresql" if args.url.startswith("postgresql") else "sqlite"
        _print({"backend": backend, "events": args.events, **measure(args.url, args.repeat)})
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        _print(run(backend, args.events, args.records, args.repeat))


if __name__ == "__main__":
    main()
