"""Helpers for event tests: a real subscriber on loopback, a service that may reach it, a worker drain.

The subscriber is a ThreadingHTTPServer that keeps each request's raw body and headers (the
signature covers the raw bytes), answers 200 or whatever status it is told, can be stopped and
started again on the same port (a subscriber that is down: connection refused), and counts
how many requests it handles at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from standardwebhooks import Webhook

from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import Principal
from powerx_governance.db.session import transaction
from powerx_governance.decisions.model import DecisionKind
from powerx_governance.decisions.service import DecisionRequest, decide
from powerx_governance.events import service as subscriptions
from powerx_governance.events.jobs import EventsConfig
from powerx_governance.events.model import EventType
from powerx_governance.events.tables import EventRow
from powerx_governance.jobs.model import JobStatus
from powerx_governance.jobs.tables import JobRow
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.notifications.fleet import Fleet, write_fleet
from tests.functional.notifications.support import routes_file

OPERATOR = Principal(0, "ops@powerx.test", Role.OPERATOR, None)


@dataclass(frozen=True)
class Request:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        document = json.loads(self.body)
        return document if isinstance(document, list) else [document]


class Subscriber:
    """A webhook receiver on 127.0.0.1; `status` is what it answers (200 unless told otherwise)."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.status = 200
        self.retry_after: str | None = None
        self.delay = delay
        self.requests: list[Request] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/governance"

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Down: the port refuses connections until `start()`."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
            self._server = None

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            status = self.status
        time.sleep(self.delay)
        with self._lock:
            self.in_flight -= 1
            self.requests.append(Request(status, headers, body))
        return status, ({"Retry-After": self.retry_after} if self.retry_after and status != 200 else {})

    def accepted(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.status == 200]

    def events(self) -> list[dict[str, Any]]:
        """Every event of every accepted request, in arrival order."""
        return [event for request in self.accepted() for event in request.events]

    def verify(self, secret: str) -> None:
        """Every accepted request carries a valid Standard Webhooks signature (per `standardwebhooks`)."""
        for request in self.accepted():
            Webhook(secret).verify(request.body, request.headers)
            assert request.headers["idempotency-key"] == request.headers["webhook-id"]
            assert request.headers["webhook-id"] == request.events[0]["id"]


def _handler(subscriber: Subscriber) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, extra = subscriber.answer({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            return

    return Handler


@contextmanager
def subscriber(*, delay: float = 0.0) -> Iterator[Subscriber]:
    receiver = Subscriber(delay=delay)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


# -- the service ------------------------------------------------------------------------------------


def allow_loopback(service: GovernanceService, directory: Path, *hosts: str) -> GovernanceService:
    """The service restarted with a routes file whose webhook allow-list admits the loopback subscriber."""
    routes = routes_file(
        directory,
        recipients={"console": {"channel": "console", "immediate": [], "digest": "none"}},
        routes={"default": ["console"]},
        allow_hosts=hosts or ("127.0.0.1",),
    )
    return service.reconfigured({"POWERX_NOTIFICATION_ROUTES": str(routes)})


def fleet_service(
    make_service: ServiceFactory, tmp_path: Path, *, tenants: int = 2, plugins: int = 2, **env: str
) -> tuple[GovernanceService, FakeClock, Fleet]:
    """A service on a small hand-made fleet (one finding per installation), loopback allowed."""
    fleet = write_fleet(tmp_path / "fleet", tenants=tenants, plugins=plugins)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env(), **env)
    return allow_loopback(service, tmp_path), clock, fleet


def subscribe(service: GovernanceService, url: str, name: str = "downstream", **spec: Any) -> tuple[str, str]:
    """(subscription id, secret) of a new subscription, created as an operator would."""
    with transaction(service.factory) as session:
        row, secret = subscriptions.create(
            session,
            subscriptions.SubscriptionSpec(name=name, url=url, **spec),
            service.require(EventsConfig).destinations,
            OPERATOR.name,
            service.clock(),
        )
        return row.id, secret


def show(service: GovernanceService, ref: str) -> dict[str, Any]:
    with service.factory() as session:
        return subscriptions.show(session, ref)


def replay(service: GovernanceService, ref: str, after: int) -> None:
    with transaction(service.factory) as session:
        subscriptions.replay(session, ref, after, OPERATOR.name, service.clock())


def open_recommendations(service: GovernanceService) -> list[RecommendationRow]:
    with service.factory() as session:
        stmt = (
            select(RecommendationRow).where(RecommendationRow.state == "open").order_by(RecommendationRow.id)
        )
        return list(session.execute(stmt).scalars())


def take_decision(
    service: GovernanceService, rec: RecommendationRow, kind: DecisionKind, **fields: Any
) -> int:
    """Decide on a recommendation the way the API does (same service function, its own transaction)."""
    request = DecisionRequest(recommendation_id=rec.id, revision=rec.revision, kind=kind, **fields)
    with transaction(service.factory) as session:
        row, _ = decide(session, service.notifications, request, OPERATOR, service.clock())
        return row.id


def logged(service: GovernanceService, *types: EventType) -> list[EventRow]:
    """The event log in seq order (of these types only, when given)."""
    with service.factory() as session:
        stmt = select(EventRow).order_by(EventRow.seq)
        if types:
            stmt = stmt.where(EventRow.type.in_([t.value for t in types]))
        return list(session.execute(stmt).scalars())


def event_count(service: GovernanceService) -> int:
    with service.factory() as session:
        return int(session.execute(select(func.count()).select_from(EventRow)).scalar_one())


def next_job_due(service: GovernanceService) -> datetime | None:
    with service.factory() as session:
        stmt = select(func.min(JobRow.run_after)).where(JobRow.status == JobStatus.QUEUED.value)
        return session.execute(stmt).scalar_one_or_none()


def drain(service: GovernanceService, clock: FakeClock, *, rounds: int = 60) -> None:
    """Run jobs, moving the clock to each next due job (backoff, Retry-After), until none is queued."""
    for _ in range(rounds):
        service.run_pending(limit=100_000)
        due = next_job_due(service)
        if due is None:
            return
        clock.advance(max((due - clock()).total_seconds(), 0.0) + 0.001)
    raise AssertionError(f"jobs still queued after {rounds} rounds")
