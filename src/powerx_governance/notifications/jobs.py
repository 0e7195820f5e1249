"""Wiring notifications into the service: the change hook, the delivery and digest tasks, the digest tick.

`notify_deliver` sends one attempt of one delivery. Each attempt is a job of its own
(`notify:{delivery}:{attempt}`): a transient failure queues the next attempt after the
queue's capped, jittered backoff, or after the receiver's `Retry-After` when that is longer;
a permanent failure, or the last of `delivery.max_attempts`, leaves the delivery `dead`
(see `service.dead_letters`). The outcome is recorded with a conditional update on
(delivery, attempt), and every attempt carries the delivery's idempotency key downstream, so
a job run twice (a worker dying after sending) never produces a second message.

`notify_deliver_batch` sends the first attempts of the console deliveries one transaction wrote
(`notify:batch:{first delivery}`, up to 200): a batch of decisions, or a scan's findings, gives one
job instead of one per tenant. It prepares them in one transaction (each tenant's impact read
once), stores the cards of all their messages in one (each message alone when that fails, so a
failure is its own delivery's), and records the outcomes in one, with the same conditional update
per (delivery, attempt). A delivery that failed there gets its next attempt as a `notify_deliver`
job of its own. Only console deliveries are batched: the other channels leave the process, and
one slow receiver must not hold up other tenants' cards.

Each delivery sent at once observes `version_recommendation_push_latency_seconds`: from the arrival
of the data that triggered it (the scan's request time) to its delivery. Digests do not: they
wait for their hour or day on purpose.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jinja2
from sqlalchemy.orm import Session

from powerx_governance.db.session import transaction
from powerx_governance.jobs import queue
from powerx_governance.kernel import ChangeStage, Contribution, InstallContext, Mergeable
from powerx_governance.notifications.channels.console import ConsoleChannel
from powerx_governance.notifications.channels.interface import (
    Channel,
    ChannelError,
    PermanentChannelError,
    Receipt,
    TransientChannelError,
    http_policy,
)
from powerx_governance.notifications.channels.notify_service import NotifyServiceChannel
from powerx_governance.notifications.channels.smtp import SmtpChannel
from powerx_governance.notifications.channels.webhook import WebhookChannel
from powerx_governance.notifications.config import (
    WEBHOOK_CHANNELS,
    ChannelType,
    load_notification_settings,
    load_templates_file,
)
from powerx_governance.notifications.model import MessageKind
from powerx_governance.notifications.routes_file import load_routes
from powerx_governance.notifications.service import (
    BATCH_MOST,
    DELIVER_BATCH_TASK,
    DELIVER_TASK,
    DIGEST_TASK,
    NotificationRuntime,
    PreparedDelivery,
    digests_due,
    flush_digests,
    mark_delivered,
    mark_failed,
    on_recommendation_changes,
    prepare_deliveries,
)
from powerx_governance.notifications.templates import TemplateSet

log = logging.getLogger("powerx.notifications")

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService
    from powerx_governance.settings import Settings


def load_runtime(env: Mapping[str, str]) -> NotificationRuntime:
    """The settings section: settings, routes and compiled templates; InputError/ValueError when invalid."""
    settings = load_notification_settings(env)
    routes = load_routes(settings, env)
    path = settings.templates_path
    stat = path.stat() if path.is_file() else None
    if stat is None:  # missing: load_templates_file names it
        templates = TemplateSet.from_file(
            load_templates_file(path), str(path), console_url=settings.console_url
        )
    else:
        templates = _compiled(str(path), stat.st_mtime_ns, stat.st_size, settings.console_url)
    return NotificationRuntime(settings, routes, templates)


@lru_cache(maxsize=16)
def _compiled(path: str, mtime_ns: int, size: int, console_url: str) -> TemplateSet:
    """A templates file compiled once per content version (compiled templates are only read)."""
    del mtime_ns, size  # part of the cache key: an edited file is compiled again
    return TemplateSet.from_file(load_templates_file(Path(path)), path, console_url=console_url)


class LazyChannels(Mapping[ChannelType, Channel]):
    """The usable channels, each built on its first message: HTTP clients and their TLS contexts
    are not free, and most instances never use most channels."""

    def __init__(self, makers: Mapping[ChannelType, Callable[[], Channel]]) -> None:
        self._makers = dict(makers)
        self._built: dict[ChannelType, Channel] = {}
        self._lock = threading.Lock()

    def __getitem__(self, kind: ChannelType) -> Channel:
        with self._lock:
            if kind not in self._built:
                self._built[kind] = self._makers[kind]()
            return self._built[kind]

    def __iter__(self) -> Iterator[ChannelType]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


def build_channels(runtime: NotificationRuntime, service: GovernanceService) -> LazyChannels:
    """Every channel the configuration makes usable (console always; the others when configured)."""
    settings, routes = runtime.settings, runtime.routes
    policy = http_policy(routes.delivery)
    makers: dict[ChannelType, Callable[[], Channel]] = {
        ChannelType.CONSOLE: lambda: ConsoleChannel(service.factory, service.clock)
    }
    if settings.notify_url:
        url, token = settings.notify_url, settings.notify_token
        makers[ChannelType.NOTIFY_SERVICE] = lambda: NotifyServiceChannel(url, token=token, policy=policy)
    if settings.smtp:
        smtp = settings.smtp
        makers[ChannelType.EMAIL] = lambda: SmtpChannel(smtp, timeout=routes.delivery.read_timeout)
    for kind in WEBHOOK_CHANNELS:
        makers[kind] = partial(
            WebhookChannel, kind, allow=routes.allow, require_https=routes.require_https, policy=policy
        )
    return LazyChannels(makers)


@dataclass
class Notifier:
    """The installed notification tasks of one service."""

    service: GovernanceService
    runtime: NotificationRuntime
    channels: Mapping[ChannelType, Channel]

    def deliver(self, payload: dict[str, Any]) -> None:
        """The `notify_deliver` task: one attempt of one delivery."""
        self._deliver([str(payload["delivery_id"])], int(payload["attempt"]))

    def deliver_batch(self, payload: dict[str, Any]) -> None:
        """The `notify_deliver_batch` task: the first attempts of console deliveries written together."""
        self._deliver([str(i) for i in payload["delivery_ids"]], 1)

    def _deliver(self, delivery_ids: Sequence[str], attempt: int) -> None:
        """Prepare the attempts in one transaction, send each, record their outcomes in another."""
        with transaction(self.service.factory) as session:
            prepared = prepare_deliveries(session, self.runtime, delivery_ids, attempt, self.service.clock())
        if not prepared:
            return
        outcomes = list(zip(prepared, self._attempts(prepared), strict=True))
        now = self.service.clock()
        with transaction(self.service.factory) as session:
            delivered = self._record(session, outcomes, now)
        for p in delivered:
            if p.message.kind is not MessageKind.DIGEST:  # digests wait on purpose
                latency = (now - p.triggered_at).total_seconds()
                self.service.metrics.recommendation_push_latency_seconds.observe(max(0.0, latency))

    def _attempts(self, prepared: Sequence[PreparedDelivery]) -> Sequence[Receipt | ChannelError]:
        """Console cards of several messages are stored in one transaction; when that fails, each
        message is sent alone, so a failure is its own message's only."""
        console = self.channels.get(ChannelType.CONSOLE)
        local = all(p.message.recipient.channel is ChannelType.CONSOLE for p in prepared)
        if len(prepared) > 1 and local and isinstance(console, ConsoleChannel):
            try:
                return console.send_many([p.message for p in prepared])
            except Exception:  # whichever message it was, it is told apart by sending each alone
                log.info("console cards stored one message at a time", exc_info=True)
        return [self._attempt(p) for p in prepared]

    def _attempt(self, prepared: PreparedDelivery) -> Receipt | ChannelError:
        try:
            return self._send(prepared)
        except (TransientChannelError, PermanentChannelError) as exc:
            return exc

    def _send(self, prepared: PreparedDelivery) -> Receipt:
        kind = prepared.message.recipient.channel
        channel = self.channels.get(kind)
        if channel is None:
            raise PermanentChannelError(kind.value, "channel is not configured on this instance")
        try:
            return channel.send(prepared.message)
        except ChannelError:
            raise
        except jinja2.TemplateError as exc:  # a template that fails on this data will fail every time
            raise PermanentChannelError(kind.value, f"template error: {exc}") from exc
        except Exception as exc:  # a channel bug counts as an attempt instead of stranding the delivery
            raise TransientChannelError(kind.value, f"{type(exc).__name__}: {exc}") from exc

    def _record(
        self,
        session: Session,
        outcomes: Sequence[tuple[PreparedDelivery, Receipt | ChannelError]],
        now: datetime,
    ) -> list[PreparedDelivery]:
        """Record the attempts' outcomes: the successes together, each failure alone (it queues the
        next attempt, a job of its own, or leaves the delivery dead); those recorded as delivered now."""
        receipts = [(p, outcome.reference) for p, outcome in outcomes if isinstance(outcome, Receipt)]
        recorded = mark_delivered(session, receipts, now) if receipts else set()
        for prepared, outcome in outcomes:
            if isinstance(outcome, Receipt):
                continue
            retry_after = outcome.retry_after if isinstance(outcome, TransientChannelError) else None
            permanent = isinstance(outcome, PermanentChannelError)
            mark_failed(
                session,
                self.runtime,
                prepared,
                str(outcome),
                now,
                permanent=permanent,
                retry_after=retry_after,
            )
        return [p for p, _ in receipts if p.delivery_id in recorded]

    def digest(self, payload: dict[str, Any]) -> None:
        """The `notify_digest` task: turn due digest entries into deliveries."""
        with transaction(self.service.factory) as session:
            created = flush_digests(session, self.runtime, self.service.clock())
        if created:
            self.service.wake()

    def tick(self, service: GovernanceService) -> None:
        """Periodic follow-up: queue a digest flush when one is due (once per minute across instances)."""
        now = service.clock()
        with transaction(service.factory) as session:
            if digests_due(session, now):
                slot = datetime.fromtimestamp(now.timestamp() // 60 * 60, UTC).isoformat()
                queue.enqueue(session, DIGEST_TASK, {"slot": slot}, key=f"notify:digest:{slot}", now=now)


def _merged_batches(payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"delivery_ids": [i for payload in payloads for i in payload["delivery_ids"]]}


# Batch jobs waiting together run as one, up to a batch's most deliveries: a burst of decisions
# queues a job of a card or two per commit, and each job's reads and transactions cost more than
# its cards.
BATCHES_MERGE: Final = Mergeable(
    merge=_merged_batches, size=lambda payload: len(payload["delivery_ids"]), most=BATCH_MOST
)


def install(ctx: InstallContext) -> Contribution:
    """The delivery and digest tasks, the digest tick, the change hook; offers the runtime to others."""
    runtime: NotificationRuntime = ctx.settings
    notifier = Notifier(ctx.host, runtime, build_channels(runtime, ctx.host))
    return Contribution(
        tasks={
            DELIVER_TASK: notifier.deliver,
            DELIVER_BATCH_TASK: notifier.deliver_batch,
            DIGEST_TASK: notifier.digest,
        },
        mergeable={DELIVER_BATCH_TASK: BATCHES_MERGE},
        periodic=(notifier.tick,),
        change_hook=partial(on_recommendation_changes, runtime),
        change_stage=ChangeStage.ANNOUNCE,
        provides=(runtime,),
    )


def read_settings(settings: Settings) -> NotificationRuntime:
    """The section: POWERX_NOTIFICATION_*, POWERX_SMTP_*, POWERX_NOTIFY_*, POWERX_CONSOLE_URL."""
    return load_runtime(settings.environ)
