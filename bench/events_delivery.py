"""Downstream events at fleet scale: what recording them costs a first full scan, and how fast a
subscriber on loopback receives them (signed, in order, batch mode).

    python -m bench.events_delivery [--tenants N] [--backend sqlite|postgresql|both] [--batch-size B]

Two stores per backend scan the same synthetic fleet: one without subscriptions (the baseline,
no events are recorded) and one with a subscription, so the cost of the outbox is a ratio
measured in the same run. The subscriber is a plain HTTP server on 127.0.0.1 that answers 204
and checks that sequences arrive strictly increasing.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from bench.common import OUT, peak_rss_mib
from bench.store_reference import SCANS_ONLY, database, fleet_service
from powerx_governance.db.session import transaction
from powerx_governance.events import service as subscriptions
from powerx_governance.events.jobs import EventsConfig
from powerx_governance.events.outbox import DELIVER_TASK
from powerx_governance.events.tables import EventRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received = 0
        self.last_sequence = 0
        self.out_of_order = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        events = json.loads(body)
        events = events if isinstance(events, list) else [events]
        with self.server.lock:
            for event in events:
                sequence = int(event["sequence"])
                self.server.out_of_order += sequence <= self.server.last_sequence
                self.server.last_sequence = max(sequence, self.server.last_sequence)
            self.server.received += len(events)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@contextmanager
def _receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _routes_file() -> Path:
    path = OUT / "events-bench-routes.yaml"
    document = {
        "schema": "powerx.notification-routes/v1",
        "webhooks": {"allow_hosts": ["127.0.0.1"], "require_https": False},
        "recipients": {},
        "routes": {},
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _service(url: str, tenants: int) -> GovernanceService:
    os.environ["POWERX_NOTIFICATION_ROUTES"] = str(_routes_file())  # notifications read the process env
    return fleet_service(url, tenants)


def _first_scan(service: GovernanceService) -> float:
    start = time.perf_counter()
    service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="bench")
    service.run_pending(tasks=SCANS_ONLY)
    return time.perf_counter() - start


def _subscribe(service: GovernanceService, url: str, batch_size: int) -> None:
    with transaction(service.factory) as session:
        subscriptions.create(
            session,
            subscriptions.SubscriptionSpec(name="bench", url=url, batch_size=batch_size),
            service.require(EventsConfig).destinations,
            "bench",
            service.clock(),
        )


def _deliver_all(service: GovernanceService, receiver: _Receiver, expected: int) -> float:
    start = time.perf_counter()
    while receiver.received < expected:
        if not service.run_pending(limit=10_000, tasks=frozenset({DELIVER_TASK})):
            time.sleep(0.01)
    return time.perf_counter() - start


def run(backend: str, tenants: int, batch_size: int) -> dict[str, Any]:
    with database(backend) as url:
        service = _service(url, tenants)
        try:
            baseline = _first_scan(service)
        finally:
            service.stop()
    with database(backend) as url, _receiver() as receiver:
        service = _service(url, tenants)
        try:
            _subscribe(service, f"http://127.0.0.1:{receiver.server_address[1]}/events", batch_size)
            with_events = _first_scan(service)
            with service.factory() as session:
                events = session.scalar(select(func.count()).select_from(EventRow)) or 0
            delivery = _deliver_all(service, receiver, events)
        finally:
            service.stop()
    return {
        "backend": backend,
        "tenants": tenants,
        "batch_size": batch_size,
        "first_scan_without_subscriptions_s": round(baseline, 2),
        "first_scan_with_a_subscription_s": round(with_events, 2),
        "outbox_cost_ratio": round(with_events / baseline, 3),
        "events": events,
        "delivered": receiver.received,
        "out_of_order": receiver.out_of_order,
        "delivery_s": round(delivery, 2),
        "events_per_s": round(receiver.received / delivery) if delivery else None,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        print(json.dumps(run(backend, args.tenants, args.batch_size)))


if __name__ == "__main__":
    main()
