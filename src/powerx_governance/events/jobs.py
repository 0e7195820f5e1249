"""Wiring events into the service: the alert change hook and the `events_deliver` task.

`events_deliver` (payload `{"subscription_id"}`) delivers rounds for one subscription until it
is caught up, an attempt fails (the next attempt is a job due later), or `MAX_ROUNDS` rounds ran
(a follow-up job continues, so one busy subscriber cannot hold a worker for long). Each round
claims the subscription's lease and next batch, POSTs it signed, and records the outcome; see
`delivery` for why two rounds of one subscription never run at once, whatever the workers.

Settings (environment): `POWERX_EVENTS_SOURCE`, the CloudEvents `source` attribute (default
`/powerx/version-governance`); `POWERX_EVENT_RETENTION`, how long events stay in the log for
replay and the pull feed (default 30d; pruned at most hourly by a scheduler follow-up).
Timeouts and the allow-list are the IM webhooks' own (the notification routes file's `delivery`
timeouts and `webhooks` section).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from powerx_governance.db.session import transaction
from powerx_governance.durations import parse_duration
from powerx_governance.events import delivery
from powerx_governance.events.cloudevents import DEFAULT_SOURCE, encode, signed_headers
from powerx_governance.events.outbox import DELIVER_TASK, on_recommendation_changes, prune, wake
from powerx_governance.events.service import Destinations
from powerx_governance.events.webhook import DeliveryError, EventPoster
from powerx_governance.kernel import ChangeStage, Contribution, InstallContext, Throttled
from powerx_governance.notifications.channels.interface import http_policy
from powerx_governance.notifications.routes_file import RoutesConfig
from powerx_governance.notifications.runtime import NotificationRuntime

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService
    from powerx_governance.settings import Settings

SOURCE_ENV: Final = "POWERX_EVENTS_SOURCE"
RETENTION_ENV: Final = "POWERX_EVENT_RETENTION"
DEFAULT_RETENTION: Final = "30d"
PRUNE_EVERY: Final = timedelta(hours=1)
MAX_ROUNDS: Final = 50
log = logging.getLogger("powerx.events")


@dataclass(frozen=True, slots=True)
class EventSettings:
    """The events' settings section."""

    source: str  # POWERX_EVENTS_SOURCE: the CloudEvents `source` attribute
    retention: timedelta  # POWERX_EVENT_RETENTION: how long events stay for replay and the pull feed


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """What the events' routes, CLI and delivery use: the source and where subscriptions may point."""

    source: str
    destinations: Destinations
    routes: RoutesConfig  # the notification routes file's delivery timeouts


@dataclass
class Deliverer:
    """The installed `events_deliver` task of one service."""

    service: GovernanceService
    config: EventsConfig
    poster_factory: Callable[[], EventPoster] = EventPoster  # built on the first delivery
    _poster: EventPoster | None = field(default=None, init=False, repr=False)
    wall_clock: Callable[[], float] = time.time  # webhook-timestamp is the real sending time

    def deliver(self, payload: dict[str, Any]) -> None:
        """The `events_deliver` task."""
        subscription_id = str(payload["subscription_id"])
        for _ in range(MAX_ROUNDS):
            with transaction(self.service.factory) as session:
                batch = delivery.claim(session, subscription_id, self.service.clock(), self.config.source)
            if batch is None or not self._attempt(batch):
                return
        with transaction(self.service.factory) as session:
            now = self.service.clock()
            wake(session, subscription_id, now, key=f"events:{subscription_id}:more:{uuid.uuid4().hex}")
        self.service.wake()

    @property
    def poster(self) -> EventPoster:
        if self._poster is None:  # one worker thread delivers: no race to build it twice
            self._poster = self.poster_factory()
        return self._poster

    def _attempt(self, batch: delivery.Batch) -> bool:
        try:
            self._send(batch)
        except DeliveryError as exc:
            self._failed(batch, exc)
            return False
        except Exception as exc:  # a bug here counts as an attempt instead of stranding the lease
            log.exception("event delivery failed", extra={"subscription_id": batch.subscription_id})
            self._failed(batch, DeliveryError(f"{type(exc).__name__}: {exc}"))
            return False
        with transaction(self.service.factory) as session:
            delivery.delivered(session, batch, self.service.clock())
        self.service.metrics.events_delivered_total.inc(len(batch.envelopes))
        return True

    def _send(self, batch: delivery.Batch) -> None:
        routes = self.config.routes
        self.poster.check(batch.url, routes.allow, require_https=routes.require_https)
        content_type, body = encode(batch.envelopes, batch=batch.batch_mode)
        message_id = str(batch.envelopes[0]["id"])
        headers = signed_headers(batch.secret, message_id, int(self.wall_clock()), body, content_type)
        self.poster.post(batch.url, body, headers, timeout=http_policy(routes.delivery).timeout())

    def _failed(self, batch: delivery.Batch, exc: DeliveryError) -> None:
        self.service.metrics.event_delivery_failures_total.inc()
        with transaction(self.service.factory) as session:
            status = delivery.failed(
                session,
                batch,
                exc.detail,
                self.service.clock(),
                permanent=exc.permanent,
                retry_after=exc.retry_after,
            )
        log.warning(
            "event delivery attempt failed",
            extra={"subscription_id": batch.subscription_id, "error": exc.detail, "status": str(status)},
        )


def _pruning(retention: timedelta) -> Callable[[GovernanceService, datetime], None]:
    """The periodic follow-up's work: drop events older than the retention."""

    def run(service: GovernanceService, now: datetime) -> None:
        with transaction(service.factory) as session:
            pruned = prune(session, now - retention)
        if pruned:
            log.info("event log pruned", extra={"events": pruned, "retention": str(retention)})

    return run


def retention_of(env: Mapping[str, str]) -> timedelta:
    """`POWERX_EVENT_RETENTION` (at least an hour); ValueError naming the variable otherwise."""
    text = env.get(RETENTION_ENV) or DEFAULT_RETENTION
    try:
        retention = parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{RETENTION_ENV}: {exc}") from exc
    if retention < timedelta(hours=1):
        raise ValueError(
            f"{RETENTION_ENV} must be at least 1h (subscribers need time to replay), not {text!r}"
        )
    return retention


def load_settings(env: Mapping[str, str]) -> EventSettings:
    """The events' settings section: `POWERX_EVENTS_SOURCE`, `POWERX_EVENT_RETENTION`."""
    return EventSettings(source=env.get(SOURCE_ENV) or DEFAULT_SOURCE, retention=retention_of(env))


def install(ctx: InstallContext) -> Contribution:
    """The delivery task, the pruning follow-up and the alert change hook; offers `EventsConfig`."""
    settings: EventSettings = ctx.settings
    routes = ctx.require(NotificationRuntime).routes  # the IM webhooks' allow-list and timeouts
    config = EventsConfig(settings.source, Destinations(routes.allow, routes.require_https), routes)
    deliverer = Deliverer(ctx.host, config)
    return Contribution(
        tasks={DELIVER_TASK: deliverer.deliver},
        periodic=(Throttled(PRUNE_EVERY, _pruning(settings.retention)),),
        change_hook=on_recommendation_changes,
        change_stage=ChangeStage.PUBLISH,
        provides=(config,),
    )


def read_settings(settings: Settings) -> EventSettings:
    return load_settings(settings.environ)
