"""Audit trail: verify a million-event hash chain, and the throughput of `record`.

    python -m bench.audit_verify [--events N] [--records K] [--backend sqlite|postgresql|both]

For each backend, in a fresh database (SQLite file or a new PostgreSQL schema):
  fill     N events written with driver-level bulk inserts, hashes chained in Python (this
           measures verify, not record; the last event goes through `record` so the chain
           head marker is set exactly as in production)
  verify   `verify` over the whole chain (goal: 1,000,000 events in <= 10 s on 2 cores)
  record   K events through `record`, one transaction each (the decision path's cost)
Each backend runs in a fresh interpreter so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bench.common import peak_rss_mib, run_phase
from bench.store_reference import database
from powerx_governance.audit.service import (
    GENESIS,
    AuditEvent,
    chain_hash,
    hashed_fields,
    record,
    rfc3339,
    verify,
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


def time_verify(factory: sessionmaker[Session], count: int) -> dict[str, Any]:
    begin = time.perf_counter()
    with factory() as session:
        result = verify(session)
    seconds = time.perf_counter() - begin
    if not result.ok or result.checked != count:
        raise SystemExit(f"verify failed on the benchmark chain: {result}")
    return {"seconds": round(seconds, 3), "events_per_second": round(count / seconds)}


def time_record(factory: sessionmaker[Session], count: int, offset: int) -> dict[str, Any]:
    begin = time.perf_counter()
    now = START + timedelta(days=2)
    for i in range(offset, offset + count):
        with transaction(factory) as session:
            record(session, _event(i), now)
    seconds = time.perf_counter() - begin
    return {"events": count, "seconds": round(seconds, 3), "events_per_second": round(count / seconds)}


def run(backend: str, events: int, records: int) -> dict[str, Any]:
    with database(backend) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            factory = session_factory(engine)
            filled = fill(factory, events)
            verified = time_verify(factory, events)
            recorded = time_record(factory, records, events)
        finally:
            engine.dispose()
    return {
        "backend": backend,
        "events": events,
        "fill_seconds": round(filled, 3),
        "verify": verified,
        "record": recorded,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def _print(result: dict[str, Any]) -> None:
    verified, recorded = result["verify"], result["record"]
    print(
        f"[{result['backend']}] {result['events']:,} events (filled in {result['fill_seconds']:.1f} s),"
        f" peak RSS {result['peak_rss_mib']} MiB"
    )
    print(f"  verify  {verified['seconds']:7.2f} s   {verified['events_per_second']:>10,} events/s")
    print(
        f"  record  {recorded['seconds']:7.2f} s   {recorded['events_per_second']:>10,} events/s"
        f"  ({recorded['events']:,} events, one transaction each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.events < 1:
        parser.error("--events must be at least 1")
    if args.phase:
        print(json.dumps(run(args.phase, args.events, args.records)))
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        _print(
            run_phase(
                "bench.audit_verify",
                "--phase",
                backend,
                "--events",
                str(args.events),
                "--records",
                str(args.records),
            )
        )


if __name__ == "__main__":
    main()
