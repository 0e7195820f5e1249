"""Composing a delivery's message from its stored events and the recommendations as they are now."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from powerx_governance.catalog.queries import plugin_names
from powerx_governance.db.chunks import chunks
from powerx_governance.domain import Severity
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.notifications.channels.interface import OutboundMessage
from powerx_governance.notifications.model import MessageKind
from powerx_governance.notifications.routes_file import Recipient
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.notifications.tables import (
    NotificationDeliveryRow,
    NotificationEntryRow,
    NotificationEventRow,
)
from powerx_governance.notifications.templates import finding_context, message_context
from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.queries import recommendation_dicts
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.times import iso

_SILENCED: Final = frozenset({RecommendationState.RESOLVED.value, RecommendationState.IGNORED.value})
_ACTIVE: Final = (RecommendationState.OPEN.value, RecommendationState.DECIDED.value)


def _events_of(session: Session, delivery_ids: Sequence[str]) -> dict[str, list[NotificationEventRow]]:
    """Each delivery's events, oldest first."""
    found: dict[str, list[NotificationEventRow]] = {}
    for part in chunks(list(delivery_ids)):
        stmt = (
            select(NotificationEntryRow.delivery_id, NotificationEventRow)
            .join(NotificationEntryRow, NotificationEntryRow.event_id == NotificationEventRow.id)
            .where(NotificationEntryRow.delivery_id.in_(part))
            .order_by(NotificationEventRow.created_at, NotificationEventRow.id)
        )
        for delivery_id, event in session.execute(stmt):
            found.setdefault(str(delivery_id), []).append(event)
    return found


TenantImpact = dict[str, Any]  # who a message is about, and the impact: see `tenant_impacts`


@dataclass(frozen=True, slots=True)
class Sources:
    """What the messages of several deliveries are made of, read with a few statements for them all."""

    events: Mapping[str, list[NotificationEventRow]]  # by delivery, oldest first
    recommendations: Mapping[int, dict[str, Any]]  # as they are now
    plugin_names: Mapping[str, str | None]
    tenants: Mapping[str, TenantImpact]


def read_sources(session: Session, deliveries: Sequence[NotificationDeliveryRow]) -> Sources:
    """The sources of these deliveries' messages."""
    events = _events_of(session, [d.id for d in deliveries])
    rec_ids = [
        e.recommendation_id for found in events.values() for e in found if e.recommendation_id is not None
    ]
    recs = recommendation_dicts(session, rec_ids)
    names = plugin_names(session, (r["plugin_id"] for r in recs.values()))
    tenants = tenant_impacts(session, {d.tenant_uuid for d in deliveries if d.tenant_uuid is not None})
    return Sources(events, recs, names, tenants)


def tenant_impacts(session: Session, tenant_uuids: Collection[str]) -> dict[str, TenantImpact]:
    """Who each tenant is, and the impact: how many of its installations need action (a few
    statements for all the tenants of a batch of messages, not a few per message)."""
    names: dict[str, tuple[str | None, str | None]] = {}
    installations: dict[str, int] = {}
    needing: dict[str, tuple[int, int]] = {}
    # the tenants' rows come from the (tenant, priority, id) index; SQLite, without statistics, walked
    # the fleet's (state, priority, id) index instead (17 ms a batch at 500 tenants) unless the state
    # test hides it (as recommendations.queries does)
    active = RecommendationRow.state.concat("").in_(_ACTIVE)
    critical = func.count().filter(RecommendationRow.risk_level == Severity.CRITICAL.value)
    for part in chunks(sorted(tenant_uuids)):
        tenants = TenantRow.tenant_uuid.in_(part)
        names.update(
            (uuid, (key, name))
            for uuid, key, name in session.execute(
                select(TenantRow.tenant_uuid, TenantRow.tenant_key, TenantRow.name).where(tenants)
            )
        )
        of_installations = InstallationRow.tenant_uuid
        installations.update(
            (uuid, count)
            for uuid, count in session.execute(
                select(of_installations, func.count())
                .where(of_installations.in_(part))
                .group_by(of_installations)
            )
        )
        of_recs = RecommendationRow.tenant_uuid
        needing.update(
            (uuid, (count, crit))
            for uuid, count, crit in session.execute(
                select(of_recs, func.count(), critical).where(of_recs.in_(part), active).group_by(of_recs)
            )
        )
    return {uuid: _impact(uuid, names, installations, needing) for uuid in tenant_uuids}


def _impact(
    uuid: str,
    names: Mapping[str, tuple[str | None, str | None]],
    installations: Mapping[str, int],
    needing: Mapping[str, tuple[int, int]],
) -> TenantImpact:
    key, name = names.get(uuid, (None, None))
    count, critical = needing.get(uuid, (0, 0))
    return {
        "uuid": uuid,
        "key": key,
        "name": name or key or uuid,
        "installations": installations.get(uuid, 0),
        "needing_action": count,
        "critical": critical,
    }


def _finding_contexts(
    runtime: NotificationRuntime,
    events: Sequence[NotificationEventRow],
    recs: Mapping[int, dict[str, Any]],
    names: Mapping[str, str | None],
) -> list[dict[str, Any]]:
    findings = []
    for event in events:
        rec = recs.get(event.recommendation_id or 0)
        if rec is None or rec["state"] in _SILENCED:
            continue  # resolved or ignored since it was announced: nothing left to say
        findings.append(
            finding_context(
                rec,
                change=event.change,
                plugin_name=names.get(rec["plugin_id"]),
                console_url=runtime.settings.console_url,
                labels=runtime.templates.labels,
            )
        )
    findings.sort(key=lambda f: (-int(f["priority"]), f["plugin_id"]))
    return findings


def _event_context(
    runtime: NotificationRuntime,
    event: NotificationEventRow,
    recs: Mapping[int, dict[str, Any]],
    names: Mapping[str, str | None],
) -> dict[str, Any]:
    rec = recs.get(event.recommendation_id or 0)
    finding = None
    if rec is not None:
        finding = finding_context(
            rec,
            change=None,
            plugin_name=names.get(rec["plugin_id"]),
            console_url=runtime.settings.console_url,
            labels=runtime.templates.labels,
        )
    return {**event.data, "finding": finding, "occurred_at": iso(event.triggered_at)}


def _risk(findings: Sequence[Mapping[str, Any]], events: Sequence[NotificationEventRow]) -> str:
    levels = [Severity(f["risk_level"]) for f in findings] or [Severity(e.risk_level) for e in events]
    return max(levels, key=lambda s: s.rank, default=Severity.NONE).value


def compose(
    runtime: NotificationRuntime,
    delivery: NotificationDeliveryRow,
    recipient: Recipient,
    now: datetime,
    sources: Sources,
) -> OutboundMessage | None:
    """The message of a delivery, from the stored events and the recommendations as they are now
    (`sources`: `read_sources` of it, and of the other deliveries sent with it)."""
    events = sources.events.get(delivery.id, [])
    kind = MessageKind(delivery.kind)
    recs, names = sources.recommendations, sources.plugin_names
    is_findings = kind in (MessageKind.FINDING, MessageKind.DIGEST)
    findings = _finding_contexts(runtime, events, recs, names) if is_findings else []
    if not events or (is_findings and not findings):
        return None
    tenant = sources.tenants[delivery.tenant_uuid] if delivery.tenant_uuid is not None else None
    context = message_context(
        kind,
        tenant=tenant,
        findings=findings,
        events=[] if is_findings else [_event_context(runtime, e, recs, names) for e in events],
        console_url=runtime.settings.console_url,
        labels=runtime.templates.labels,
        generated_at=iso(now) or "",
        max_items=runtime.routes.delivery.max_items_per_message,
        period=recipient.digest.value if kind is MessageKind.DIGEST else None,
    )
    return OutboundMessage(
        idempotency_key=delivery.idempotency_key,
        kind=kind,
        recipient=recipient,
        tenant_uuid=delivery.tenant_uuid,
        tenant_key=tenant["key"] if tenant else None,
        risk_level=_risk(findings, events),
        context=context,
        templates=runtime.templates,
    )
