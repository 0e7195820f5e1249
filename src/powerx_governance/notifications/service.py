"""Notifications in the caller's transaction: outbox events, recipients, batches, digests, composition.

Everything here writes in the session it is given and never commits (the job or request owns
the transaction), so a notification exists exactly when the change that causes it does.

- `on_recommendation_changes` (the scan's change hook) announces opened, escalated and
  reopened findings. Dedupe keys make a re-scan without escalation announce nothing:
  `finding:{id}:opened`, `finding:{id}:escalated:{risk}:{action}`,
  `finding:{id}:reopened:{risk}:{action}:{target}` (what it says, never a revision number).
- `notify_reopened` announces a finding reopened by a decision's end (expired ignore,
  superseded decision), once per decision: `finding:{id}:reopened:decision:{decision_id}`.
- `notify_decision` (`notify_decisions` for several at once), `notify_sla_breach`,
  `notify_ignore_broken`, `notify_alert` announce the other events; each is deduped on its own
  key (an SLA breach on its recommendation, kind and deadline, or its decision) and returns
  whether it was new.
- Each recipient of the event's route gets it at once or in its next digest (its priority
  filter). Findings sent at once are batched per transaction, recipient and tenant: a scan
  that opens ten critical findings for a tenant sends that tenant's admins one message.
- `flush_digests` turns due digest entries into one delivery per (recipient, tenant).
- `prepare_deliveries`, `mark_delivered`, `mark_failed` are the delivery worker's steps.

The runtime (routes, templates, settings) is built once at start from the notifications'
settings section and passed explicitly to every function that needs it (`NotificationRuntime`).

The code is split by role: `runtime`, `outbox` (events, recipients, batches), `announce` (the
change hook and `notify_*`), `digests`, `compose`, `deliver` (the worker's steps) and `queries`
(reads). This module is the public face other components import.
"""

from powerx_governance.notifications.announce import (
    DecisionNotice,
    RecommendationAbout,
    notify_alert,
    notify_decision,
    notify_decisions,
    notify_ignore_broken,
    notify_reopened,
    notify_sla_breach,
    on_recommendation_changes,
)
from powerx_governance.notifications.deliver import (
    PreparedDelivery,
    mark_delivered,
    mark_failed,
    prepare_deliveries,
    retry_delay,
)
from powerx_governance.notifications.digests import DIGEST_TASK, digests_due, flush_digests
from powerx_governance.notifications.outbox import (
    BATCH_MOST,
    DELIVER_BATCH_TASK,
    DELIVER_TASK,
    NewEvent,
    enqueue_delivery,
    insert_events,
    next_digest,
    record_events,
)
from powerx_governance.notifications.queries import console_cards, dead_letters, delivery_counts
from powerx_governance.notifications.runtime import NotificationRuntime

__all__ = [
    "BATCH_MOST",
    "DELIVER_BATCH_TASK",
    "DELIVER_TASK",
    "DIGEST_TASK",
    "DecisionNotice",
    "NewEvent",
    "NotificationRuntime",
    "PreparedDelivery",
    "RecommendationAbout",
    "console_cards",
    "dead_letters",
    "delivery_counts",
    "digests_due",
    "enqueue_delivery",
    "flush_digests",
    "insert_events",
    "mark_delivered",
    "mark_failed",
    "next_digest",
    "notify_alert",
    "notify_decision",
    "notify_decisions",
    "notify_ignore_broken",
    "notify_reopened",
    "notify_sla_breach",
    "on_recommendation_changes",
    "prepare_deliveries",
    "record_events",
    "retry_delay",
]
