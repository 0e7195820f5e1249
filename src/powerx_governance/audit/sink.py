"""Shipping audit events to a remote PowerX audit service (`POST /internal/audit/version`).

The local store is the audit trail of record; a remote audit service, when configured, gets a
copy of every event (and is the outside witness a local hash chain cannot be on its own).

How shipping works:
- Each event is POSTed on its own with its event id as `Idempotency-Key` (and in the body), so
  a retried request never records an event twice at the remote. Requests are retried with
  backoff and jitter by `RetryingClient`; a few run concurrently.
- The `ship_audit` job (payload `{"from_seq": N}`) ships the records from seq N up to the newest
  one at its start, in seq order, chunk by chunk. After every chunk is acknowledged the watermark
  moves on: the `locks` row `audit-shipped` holds the last shipped seq, zero-padded so it only
  ever moves forward (`write_marker(..., only_if_greater=True)`), in its own small transaction.
  A crash re-ships at most one chunk, which the remote deduplicates by key.
- With POWERX_AUDIT_SINK_URL set, a periodic follow-up (each scheduler tick) queues a `ship_audit`
  job when records lie past the watermark and no shipping job is queued or running. Its key
  holds the first seq and the hour, so a job that died (its retries exhausted while the remote
  was down) is tried again the next hour, and progress makes a new key at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.audit.service import event_fields, read_marker, write_marker
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.db.session import transaction
from powerx_governance.http.client import ErrorCallback, HttpPolicy, RetryingClient, request_headers
from powerx_governance.jobs.model import JobStatus
from powerx_governance.jobs.queue import enqueue
from powerx_governance.jobs.tables import JobRow
from powerx_governance.kernel import Contribution, InstallContext

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService
    from powerx_governance.settings import Settings

SHIP_TASK: Final = "ship_audit"
SHIPPED_MARKER: Final = "audit-shipped"
SINK_URL_ENV: Final = "POWERX_AUDIT_SINK_URL"
SINK_TOKEN_ENV: Final = "POWERX_AUDIT_SINK_TOKEN"  # noqa: S105 - the name of a variable, not a secret
PATH: Final = "/internal/audit/version"
CHUNK: Final = 200
RESPONSE_LIMIT: Final = 1024 * 1024
_SEQ_DIGITS: Final = 20
_IDEMPOTENCY_KEY: ContextVar[str | None] = ContextVar("audit_sink_idempotency_key", default=None)


class SinkError(Exception):
    """Shipping cannot run (no sink configured, a bad job payload)."""


class AuditSink(Protocol):
    """Where copies of audit events go."""

    def send(self, event: Mapping[str, Any]) -> None:
        """Deliver one event (PowerX field names); raise when it was not accepted."""


def shipped_event(row: AuditEventRow) -> dict[str, Any]:
    """A stored record as the body of `POST /internal/audit/version` (the remote keeps its own chain)."""
    return {k: v for k, v in event_fields(row).items() if k not in ("schema", "recorded_at")}


class HttpAuditSink:
    """POSTs events to a remote PowerX audit service; thread-safe; close it (or use `with`)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        policy: HttpPolicy = HttpPolicy(),  # noqa: B008 - frozen, shared safely
        *,
        on_error: ErrorCallback | None = None,
        max_connections: int = 4,
    ) -> None:
        self.url = base_url.rstrip("/") + PATH
        self._client = RetryingClient(
            "audit-sink",
            policy,
            headers=request_headers(token),
            on_error=on_error,
            max_connections=max_connections,
        )
        # RetryingClient.request takes no per-request headers; the key rides on a context
        # variable read by an httpx request hook, so every retry of one event sends its own key.
        self._client._client.event_hooks = {"request": [_add_idempotency_key], "response": []}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def send(self, event: Mapping[str, Any]) -> None:
        """Deliver one event, retried as the policy says; HttpSourceError when it fails for good."""
        token = _IDEMPOTENCY_KEY.set(str(event["event_id"]))
        try:
            self._client.request("POST", self.url, limit=RESPONSE_LIMIT, json=dict(event))
        finally:
            _IDEMPOTENCY_KEY.reset(token)


def _add_idempotency_key(request: httpx.Request) -> None:
    key = _IDEMPOTENCY_KEY.get()
    if key is not None:
        request.headers["Idempotency-Key"] = key


# -- the shipping job --------------------------------------------------------------------------------


def shipped_through(session: Session) -> int:
    """The last seq the remote acknowledged (0: nothing shipped yet)."""
    value = read_marker(session, SHIPPED_MARKER)
    return int(value) if value and value.isdigit() else 0


def _mark_shipped(factory: sessionmaker[Session], seq: int) -> None:
    with transaction(factory) as session:
        write_marker(session, SHIPPED_MARKER, f"{seq:0{_SEQ_DIGITS}d}", only_if_greater=True)


def _window(factory: sessionmaker[Session], after: int, upto: int) -> tuple[list[AuditEventRow], int | None]:
    """The records with after < seq <= upto, and (when there are none) the next seq after the window.

    A window of seq numbers rather than a LIMIT: each read stays small whatever plan the database
    picks (see `audit.walk._pages`).
    """
    with factory() as session:
        stmt = (
            select(AuditEventRow)
            .where(AuditEventRow.seq > after, AuditEventRow.seq <= upto)
            .order_by(AuditEventRow.seq)
        )
        rows = list(session.execute(stmt).scalars())
        if rows:
            return rows, None
        following = select(func.min(AuditEventRow.seq)).where(AuditEventRow.seq > upto)
        return rows, session.execute(following).scalar_one_or_none()


def ship(factory: sessionmaker[Session], sink: AuditSink, *, from_seq: int, concurrency: int = 4) -> int:
    """Ship the records from `from_seq` on (up to the newest one now); how many were sent."""
    with factory() as session:
        after = max(from_seq - 1, shipped_through(session))
        until = session.execute(select(func.max(AuditEventRow.seq))).scalar_one_or_none() or 0
    sent = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="audit-sink") as pool:
        while after < until:
            rows, following = _window(factory, after, min(until, after + CHUNK))
            if not rows:
                if following is None:
                    break
                after = following - 1
                continue
            for _ in pool.map(sink.send, [shipped_event(row) for row in rows]):
                pass  # re-raises the first failure; the watermark stays before this window
            after = rows[-1].seq
            _mark_shipped(factory, after)
            sent += len(rows)
    return sent


# -- wiring into the service --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SinkSettings:
    """The remote audit service: POWERX_AUDIT_SINK_URL (off when unset), POWERX_AUDIT_SINK_TOKEN."""

    url: str | None = None
    token: str | None = field(default=None, repr=False)
    policy: HttpPolicy = field(default_factory=HttpPolicy)


def sink_settings(env: Mapping[str, str], *, policy: HttpPolicy | None = None) -> SinkSettings:
    """The audit's settings section: `POWERX_AUDIT_SINK_URL` (no shipping when unset) and its token."""
    url = env.get(SINK_URL_ENV, "").strip() or None
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"{SINK_URL_ENV} must be an http(s) URL, not {url!r}")
    return SinkSettings(url, env.get(SINK_TOKEN_ENV) or None, policy or HttpPolicy())


def install(ctx: InstallContext) -> Contribution:
    """`ship_audit` (it runs while governance is off: decisions and flag changes are audited then too);
    with a sink URL configured, also the periodic follow-up that queues it."""
    settings: SinkSettings = ctx.settings
    host = ctx.host
    return Contribution(
        tasks={SHIP_TASK: lambda payload: run_ship_job(host, settings, payload)},
        always_on_tasks=frozenset({SHIP_TASK}),
        always_on_periodic=(queue_shipping,) if settings.url is not None else (),
    )


def run_ship_job(service: GovernanceService, settings: SinkSettings, payload: Mapping[str, Any]) -> None:
    """The `ship_audit` task."""
    if settings.url is None:
        raise SinkError(f"a ship_audit job ran without an audit sink: set {SINK_URL_ENV}")
    from_seq = payload.get("from_seq")
    if not isinstance(from_seq, int) or from_seq < 1:
        raise SinkError(f"ship_audit payload needs a positive integer from_seq, not {from_seq!r}")
    on_error = service.metrics.source_error
    with HttpAuditSink(settings.url, settings.token, settings.policy, on_error=on_error) as sink:
        ship(service.factory, sink, from_seq=from_seq)


def queue_shipping(service: GovernanceService) -> None:
    """The periodic follow-up: queue a `ship_audit` job when records wait to be shipped."""
    now = service.clock()
    with transaction(service.factory) as session:
        start = shipped_through(session) + 1
        newest = session.execute(select(func.max(AuditEventRow.seq))).scalar_one_or_none()
        if newest is None or newest < start or _shipping(session):
            return
        key = f"{SHIP_TASK}:{start}:{now:%Y%m%dT%H}"
        queued = enqueue(session, SHIP_TASK, {"from_seq": start}, key=key, now=now)
    if queued:
        service.wake()


def _shipping(session: Session) -> bool:
    """Whether a shipping job is already queued or running."""
    active = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
    stmt = select(JobRow.id).where(JobRow.task == SHIP_TASK, JobRow.status.in_(active)).limit(1)
    return session.execute(stmt).first() is not None


def read_settings(settings: Settings) -> SinkSettings:
    return sink_settings(settings.environ)
