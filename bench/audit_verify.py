"""Audit trail: verify a million-event hash chain, and the throughput of `record`.

    python -m bench.audit_verify [--events N] [--records K] [--backend sqlite|postgresql|both]

For each backend, in a fresh database (SQLite file or a new PostgreSQL schema), one process
per step, each measured whole by the kernel (wall and peak RSS, as `/usr/bin/time -v`):
  fill     N events written with driver-level bulk inserts, hashes chained in Python (this
           measures verify, not record; the last event goes through `record` so the chain
           head marker is set exactly as in production)
  floor    a process that only reads every stored column of every event out of the store
  verify   the real `powerx audit verify` process over the whole chain (goal: 1,000,000 events
           in <= 10 s on 2 cores), with its ratio to the floor
  record   K events through `record`, one transaction each (the decision path's cost)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bench.common import Run, json_line, whole_process
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


def run(backend: str, events: int, records: int) -> dict[str, Any]:
    with database(backend) as url:
        steps: dict[str, Run] = {}
        command = [sys.executable, "-m", "bench.audit_verify", "--step", "fill", "--url", url]
        steps["fill"] = whole_process([*command, "--events", str(events), "--records", str(records)])
        steps["floor"] = whole_process([sys.executable, "-m", "bench.floors", "audit", url])
        env = {**os.environ, "POWERX_DATABASE_URL": url, "POWERX_SCHEDULER": "0", "POWERX_WORKER": "0"}
        powerx = str(Path(sys.executable).with_name("powerx"))
        steps["verify"] = whole_process([powerx, "audit", "verify", "--json"], env=env)
        command = [sys.executable, "-m", "bench.audit_verify", "--step", "record", "--url", url]
        steps["record"] = whole_process([*command, "--events", str(events), "--records", str(records)])
    verified = json_line(steps["verify"])
    if not verified["ok"] or verified["checked"] != events:
        raise SystemExit(f"verify failed on the benchmark chain: {verified}")
    return {
        "backend": backend,
        "events": events,
        "fill_seconds": json_line(steps["fill"])["fill_seconds"],
        "floor": steps["floor"],
        "verify": steps["verify"],
        "record": json_line(steps["record"]),
    }


def _print(result: dict[str, Any]) -> None:
    floor, verified, recorded = result["floor"], result["verify"], result["record"]
    print(f"[{result['backend']}] {result['events']:,} events (filled in {result['fill_seconds']:.1f} s)")
    print(
        f"  floor   {floor.seconds:7.2f} s (cpu {floor.cpu_seconds:6.2f} s) {floor.peak_rss_mib:6.0f} MiB"
        "  a bare driver reads every column of every event"
    )
    print(
        f"  verify  {verified.seconds:7.2f} s (cpu {verified.cpu_seconds:6.2f} s)"
        f" {verified.peak_rss_mib:6.0f} MiB"
        f"  `powerx audit verify`: {verified.seconds / floor.seconds:.2f}x floor,"
        f" {result['events'] / verified.seconds:,.0f} events/s"
    )
    print(
        f"  record  {recorded['seconds']:7.2f} s   {recorded['events_per_second']:>10,} events/s"
        f"  ({recorded['events']:,} events, one transaction each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--step", choices=["fill", "record"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.events < 1:
        parser.error("--events must be at least 1")
    if args.step:
        print(json.dumps(step(args.step, args.url, args.events, args.records)))
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        _print(run(backend, args.events, args.records))


if __name__ == "__main__":
    main()
