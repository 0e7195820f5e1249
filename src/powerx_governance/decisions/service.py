"""Taking decisions: validation, stale-revision and enforcement checks, and their records.

A decision, the recommendation's new state and the audit event are written in the caller's
transaction; the route or CLI command commits them together.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session, make_transient_to_detached

from powerx_governance.audit.service import AuditEvent, record, record_many
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import Principal
from powerx_governance.db.chunks import chunks
from powerx_governance.db.locks import sqlite_writer_now
from powerx_governance.decisions.events import record_decisions
from powerx_governance.decisions.model import DecisionKind, DecisionState, IgnoreScope
from powerx_governance.decisions.queries import BulkSelection, select_for_bulk
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.domain import Enforcement, Severity
from powerx_governance.errors import ConflictError, DeniedError, InvalidError, NotFoundError
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.notifications.service import (
    DecisionNotice,
    NotificationRuntime,
    RecommendationAbout,
    notify_decisions,
)
from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.times import iso


class DecisionError(InvalidError):
    """A decision that cannot be taken; `field` names the field at fault (the API maps the kind
    of error to its answer in one place, api/problems.py)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownRecommendationError(DecisionError, NotFoundError):
    """No recommendation with this id for this caller."""

    title = "Not found"


class StaleRevisionError(DecisionError, ConflictError):
    """The recommendation has a newer revision: reload and decide again."""

    title = "Stale revision"


class RefusedError(DecisionError, DeniedError):
    """The policy refuses this decision (e.g. ignoring a critical patch without an approver)."""

    title = "Refused by policy"


class IdempotencyConflictError(DecisionError, ConflictError):
    """The caller used this idempotency key before for a different request."""

    title = "Idempotency key reused"


class NoTargetError(DecisionError):
    """An upgrade or schedule of a recommendation that names no version to go to."""

    title = "Nothing to upgrade to"


class NothingToReopenError(DecisionError, ConflictError):
    """Reopening a recommendation nobody has decided (it is open or resolved)."""

    title = "Nothing to reopen"


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    recommendation_id: int
    revision: int
    kind: DecisionKind
    reason: str | None = None
    scheduled_for: datetime | None = None
    scope: IgnoreScope | None = None
    until: datetime | None = None
    approver: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None


_STATE_AFTER = {
    DecisionKind.UPGRADE: RecommendationState.DECIDED,
    DecisionKind.SCHEDULE: RecommendationState.DECIDED,
    DecisionKind.IGNORE: RecommendationState.IGNORED,
}


def _validate(req: DecisionRequest, now: datetime) -> None:
    if req.kind is DecisionKind.SCHEDULE and (req.scheduled_for is None or req.scheduled_for <= now):
        raise DecisionError("a schedule decision needs scheduled_for in the future", field="scheduled_for")
    if req.kind is not DecisionKind.IGNORE:
        return
    if not (req.reason or "").strip():
        raise DecisionError("ignoring a recommendation needs a reason", field="reason")
    scope = req.scope or IgnoreScope.TARGET
    if scope is not IgnoreScope.TARGET and (req.until is None or req.until <= now):
        raise DecisionError(f"scope {scope} needs `until` in the future", field="until")


def _target_check(req: DecisionRequest, rec: RecommendationRow) -> None:
    """An upgrade needs a version to go to: a review or blocked finding has none."""
    if req.kind is not DecisionKind.IGNORE and rec.target_version is None and rec.latest_version is None:
        raise NoTargetError(
            f"{rec.plugin_id} {rec.current_version} has no release to upgrade to; review or ignore it",
            field="decision",
        )


def _enforcement_check(req: DecisionRequest, rec: RecommendationRow, verdict: dict[str, Any]) -> None:
    """`enforce` refuses ignoring a critical patch without an approver."""
    critical = rec.critical_patch or rec.risk_level == Severity.CRITICAL.value
    if (
        req.kind is DecisionKind.IGNORE
        and critical
        and verdict.get("enforcement") == Enforcement.ENFORCE.value
        and not (req.approver or "").strip()
    ):
        raise RefusedError(
            "policy enforcement 'enforce': ignoring a critical patch needs an approver", field="approver"
        )


def _load(session: Session, rec_id: int) -> tuple[RecommendationRow, dict[str, Any]]:
    sqlite_writer_now(session)  # as FOR UPDATE on PostgreSQL: no other writer until the commit
    stmt = (
        select(RecommendationRow, VerdictRow.document)
        .join(VerdictRow)
        .where(RecommendationRow.id == rec_id)
        .with_for_update(of=RecommendationRow)
    )
    found = session.execute(stmt).first()
    if found is None:
        raise UnknownRecommendationError(f"no recommendation {rec_id}", field="recommendation_id")
    return found


def _scope(who: Principal) -> str:
    """Whose keys a key is compared with: the calling token's only."""
    return f"token:{who.token_id}"


def _digest(req: DecisionRequest) -> str:
    """What was asked, to tell a replay from a different request under the same key."""
    asked = [req.recommendation_id, req.revision, req.kind.value, req.reason, iso(req.scheduled_for)]
    asked += [req.scope.value if req.scope else None, iso(req.until), req.approver]
    return hashlib.sha256(json.dumps(asked).encode()).hexdigest()


def _replayed(
    session: Session, req: DecisionRequest, who: Principal, batch: Batch | None = None
) -> DecisionRow | None:
    """The caller's earlier decision under this key; a different request under it is a conflict.

    In a `batch`, an earlier decision of the batch under this key is written first; nothing else
    is flushed for the look-up (the batch's other changes cannot match it)."""
    if req.idempotency_key is None:
        return None
    scope = _scope(who)
    if batch is not None and any(
        r.idempotency_key == req.idempotency_key and r.idempotency_scope == scope for r in batch.unwritten
    ):
        write_taken(session, batch)
    with session.no_autoflush:
        previous = session.execute(
            select(DecisionRow).where(
                DecisionRow.idempotency_scope == scope, DecisionRow.idempotency_key == req.idempotency_key
            )
        ).scalar_one_or_none()
    if previous is not None and previous.request_digest != _digest(req):
        raise IdempotencyConflictError(
            "this key was used for a different decision request; use a new key", field="idempotency_key"
        )
    return previous


@dataclass(frozen=True, slots=True)
class Taken:
    """A decision written, with what its audit record says as of that moment (see `announce`)."""

    row: DecisionRow
    rec: RecommendationRow
    verdict: dict[str, Any]
    before: dict[str, Any]
    after_state: str
    who: Principal

    def audit_event(self) -> AuditEvent:
        """Its audit record (once the row is flushed: the record names the decision's id)."""
        return _decision_event(self.row, self.rec, self.verdict, self.before, self.after_state, self.who)


@dataclass(slots=True)
class Batch:
    """What decisions taken in one transaction share: their recommendations, read (and locked) at
    once, and which of them have an active decision to supersede."""

    loaded: dict[int, tuple[RecommendationRow, dict[str, Any]]]
    standing: set[int]  # recommendations with an active decision, stored or taken in this batch
    decided: set[int] = field(default_factory=set)  # recommendations decided in this batch
    unwritten: list[DecisionRow] = field(default_factory=list)  # taken, not yet written (`write_taken`)
    tenant_keys: dict[str, str | None] = field(default_factory=dict)  # their tenants' keys, read with them


# A batch's decisions in one statement: the ORM's unit of work sends one INSERT per row on SQLite
# (it cannot tell which returned id is whose), so each row's id comes back with its recommendation
# id instead, unique among the rows of one write (a recommendation decided again in the same batch
# waits for the write of the decision it supersedes).
_DECISIONS: Final = cast("Table", DecisionRow.__table__)
_DECISION_COLUMNS: Final = tuple(c.key for c in _DECISIONS.columns if c.key != "id")
_INSERT_DECISIONS: Final = insert(_DECISIONS).returning(_DECISIONS.c.recommendation_id, _DECISIONS.c.id)


def write_taken(session: Session, batch: Batch) -> None:
    """Write the decisions of `batch` taken since its last write, and make them the session's rows
    (persistent, with their ids), as a flush would."""
    rows, batch.unwritten = batch.unwritten, []
    if not rows:
        return
    values = [{name: getattr(row, name) for name in _DECISION_COLUMNS} for row in rows]
    id_of: dict[int, int] = dict(session.execute(_INSERT_DECISIONS, values).all())
    for row in rows:
        row.id = id_of[row.recommendation_id]
        make_transient_to_detached(row)
        session.add(row)


def open_batch(session: Session, rec_ids: Sequence[int]) -> Batch:
    """Read and lock the recommendations of decisions to take together (in id order, as every batch)."""
    ids = sorted(set(rec_ids))
    sqlite_writer_now(session)  # as FOR UPDATE on PostgreSQL: no other writer until the commit
    loaded: dict[int, tuple[RecommendationRow, dict[str, Any]]] = {}
    standing: set[int] = set()
    keys: dict[str, str | None] = {}
    for part in chunks(ids):
        stmt = (
            select(RecommendationRow, VerdictRow.document, _STANDING, TenantRow.tenant_key)
            .join(VerdictRow)
            .outerjoin(TenantRow, TenantRow.tenant_uuid == RecommendationRow.tenant_uuid)
            .where(RecommendationRow.id.in_(part))
            .order_by(RecommendationRow.id)
            .with_for_update(of=RecommendationRow)
        )
        for rec, document, active, tenant_key in session.execute(stmt):
            loaded[rec.id] = (rec, document)
            keys[rec.tenant_uuid] = tenant_key  # what their announcements are routed by
            if active:
                standing.add(rec.id)
    return Batch(loaded, standing, tenant_keys=keys)


# whether a recommendation has an active decision, read with it (one statement, not two)
_STANDING: Final = (
    select(DecisionRow.id)
    .where(
        DecisionRow.recommendation_id == RecommendationRow.id, DecisionRow.state == DecisionState.ACTIVE.value
    )
    .exists()
    .label("standing")
)


def decide(
    session: Session,
    runtime: NotificationRuntime,
    req: DecisionRequest,
    who: Principal,
    now: datetime,
    *,
    batch_id: str | None = None,
) -> tuple[DecisionRow, bool]:
    """Record a decision; (row, created). The caller repeating its idempotency key gets its first decision."""
    outcome = take(session, req, who, now, batch_id=batch_id)
    if isinstance(outcome, Taken):
        announce(session, runtime, [outcome], now)
        return outcome.row, True
    return outcome, False


def take(
    session: Session,
    req: DecisionRequest,
    who: Principal,
    now: datetime,
    *,
    batch_id: str | None = None,
    batch: Batch | None = None,
) -> Taken | DecisionRow:
    """Check and write one decision without announcing it (see `announce`); the earlier decision
    when the caller repeats its idempotency key. A DecisionError is raised before anything is written.

    In a `batch` the decision is written with the others, by `write_taken`, before `announce`."""
    found = batch.loaded.get(req.recommendation_id) if batch is not None else None
    rec, verdict = found if found is not None else _load(session, req.recommendation_id)
    if not who.may_read(rec.tenant_uuid):
        raise UnknownRecommendationError(
            f"no recommendation {req.recommendation_id}", field="recommendation_id"
        )
    if who.role is Role.VIEWER:
        raise RefusedError("a viewer may not decide")
    previous = _replayed(session, req, who, batch)  # only once the caller may decide here
    if previous is not None:
        return previous
    if req.revision != rec.revision:
        raise StaleRevisionError(
            f"recommendation {rec.id} is at revision {rec.revision}, not {req.revision}: reload it",
            field="revision",
        )
    if rec.state == RecommendationState.RESOLVED.value:
        raise DecisionError(
            f"recommendation {rec.id} is resolved: nothing to decide", field="recommendation_id"
        )
    _validate(req, now)
    _target_check(req, rec)
    _enforcement_check(req, rec, verdict)
    before = {"state": rec.state, "revision": rec.revision}
    if batch is None:
        _supersede(session, rec.id, now)
    elif rec.id in batch.standing:
        if rec.id in batch.decided:
            write_taken(session, batch)  # the decision this one supersedes
        _supersede(session, rec.id, now)
    row = _insert(session, req, rec, who, now, batch_id, add=batch is None)
    if batch is not None:
        batch.unwritten.append(row)
        batch.standing.add(rec.id)
        batch.decided.add(rec.id)
    rec.state = _STATE_AFTER[req.kind].value
    rec.updated_at = now
    return Taken(row, rec, verdict, before, rec.state, who)


def announce(
    session: Session,
    runtime: NotificationRuntime,
    taken: Sequence[Taken],
    now: datetime,
    *,
    tenant_keys: dict[str, str | None] | None = None,
) -> None:
    """The notifications, audit records and CloudEvents of decisions just taken, a few statements for
    all of them (one audit chain lock, one outbox write each); `tenant_keys`: their tenants' keys
    when read already (`Batch.tenant_keys`)."""
    if not taken:
        return
    session.flush()  # the decisions of a batch: their ids go into what is announced
    notices = [
        DecisionNotice(
            t.row.id,
            t.row.recommendation_id,
            t.row.kind,
            t.row.actor,
            t.row.reason,
            t.row.target_version,
            t.row.scheduled_for,
            t.row.until,
            RecommendationAbout(t.rec.tenant_uuid, Severity(t.rec.risk_level), t.verdict.get("notification")),
        )
        for t in taken
    ]
    notify_decisions(session, runtime, notices, now, written_now=True, tenant_keys=tenant_keys)
    # the audit chain lock is held from here to the commit, so keep that stretch short
    record_many(session, [t.audit_event() for t in taken], now, drawn_ids=True)  # made here: fresh ids
    record_decisions(session, [t.row for t in taken], now)  # after the audit: see events.outbox on lock order


def _insert(
    session: Session,
    req: DecisionRequest,
    rec: RecommendationRow,
    who: Principal,
    now: datetime,
    batch_id: str | None,
    *,
    add: bool = True,
) -> DecisionRow:
    scope = (req.scope or IgnoreScope.TARGET) if req.kind is DecisionKind.IGNORE else None
    row = DecisionRow(
        idempotency_key=req.idempotency_key,
        idempotency_scope=_scope(who) if req.idempotency_key is not None else None,
        request_digest=_digest(req) if req.idempotency_key is not None else None,
        recommendation_id=rec.id,
        revision=rec.revision,
        tenant_uuid=rec.tenant_uuid,
        plugin_id=rec.plugin_id,
        kind=req.kind.value,
        from_version=rec.current_version,
        target_version=rec.target_version,
        scheduled_for=req.scheduled_for,
        reason=req.reason,
        scope=scope.value if scope else None,
        until=req.until,
        approver=req.approver,
        actor=who.name,
        batch_id=batch_id,
        correlation_id=req.correlation_id or str(uuid.uuid4()),
        created_at=now,
        state=DecisionState.ACTIVE.value,
        ended_at=None,  # every column set: a row written apart (`write_taken`) has nothing to load
        end_reason=None,
        details={
            "risk_level": rec.risk_level,
            "priority": rec.priority,
            "action": rec.action,
            "critical_patch": rec.critical_patch,
            "sla_deadline": iso(rec.sla_deadline),
            "role": who.role.value,
        },
    )
    if add:
        session.add(row)
        session.flush()
    return row


def _supersede(session: Session, rec_id: int, now: datetime) -> None:
    session.execute(
        update(DecisionRow)
        .where(DecisionRow.recommendation_id == rec_id, DecisionRow.state == DecisionState.ACTIVE.value)
        .values(state=DecisionState.SUPERSEDED.value, ended_at=now, end_reason="a newer decision was taken")
    )


def _decision_event(
    row: DecisionRow,
    rec: RecommendationRow,
    verdict: dict[str, Any],
    before: dict[str, Any],
    state: str,
    who: Principal,
) -> AuditEvent:
    """The admin's decision with the recommendation it answers (recommender `system`)."""
    return AuditEvent(
        source="governance",
        operation=f"decision.{row.kind}",
        resource_type="recommendation",
        resource_id=str(rec.id),
        actor=who.name,
        tenant_uuid=rec.tenant_uuid,
        correlation_id=row.correlation_id,
        severity="warning" if row.kind == DecisionKind.IGNORE.value else "info",
        changes={
            "before": before,
            "after": {
                "state": state,
                "revision": rec.revision,
                "decision_id": row.id,
                "decision": row.kind,
                "reason": row.reason,
                "scheduled_for": iso(row.scheduled_for),
                "scope": row.scope,
                "until": iso(row.until),
                "approver": row.approver,
            },
        },
        meta={
            "recommender": "system",
            "recommendation": {
                "plugin_id": rec.plugin_id,
                "current_version": rec.current_version,
                "target_version": rec.target_version,
                "risk_level": rec.risk_level,
                "priority": rec.priority,
                "action": rec.action,
                "rule_ids": verdict.get("rule_ids", []),
                "advisories": [a.get("id") for a in verdict.get("advisories", [])],
            },
            "actor_role": who.role.value,
            "batch_id": row.batch_id,
        },
    )


def decide_many(
    session: Session,
    runtime: NotificationRuntime,
    selection: BulkSelection,
    template: DecisionRequest,
    who: Principal,
    now: datetime,
) -> tuple[str, list[DecisionRow]]:
    """One decision (and audit event) per selected tenant, sharing a batch id."""
    if not who.fleet_wide:
        raise RefusedError("only operators may decide for many tenants at once")
    batch_id = str(uuid.uuid4())
    made: list[DecisionRow] = []
    taken: list[Taken] = []
    for rec in select_for_bulk(session, selection):
        req = DecisionRequest(
            recommendation_id=rec.id,
            revision=rec.revision,
            kind=template.kind,
            reason=template.reason,
            scheduled_for=template.scheduled_for,
            scope=template.scope,
            until=template.until,
            approver=template.approver,
            idempotency_key=f"{template.idempotency_key}:{rec.id}" if template.idempotency_key else None,
            correlation_id=batch_id,
        )
        outcome = take(session, req, who, now, batch_id=batch_id)
        if isinstance(outcome, Taken):
            taken.append(outcome)
            made.append(outcome.row)
        else:
            made.append(outcome)
    announce(session, runtime, taken, now)
    return batch_id, made


@dataclass(frozen=True, slots=True)
class ReopenRequest:
    recommendation_id: int
    revision: int  # the revision the admin saw: a newer one is a StaleRevisionError
    reason: str | None = None


def reopen(
    session: Session, req: ReopenRequest, who: Principal, now: datetime
) -> tuple[RecommendationRow, DecisionRow | None]:
    """Withdraw the standing decision of a decided or ignored recommendation and open it again.

    The decision ends as superseded (so the accept rate leaves it out, like a changed decision)
    and the reopening gets its own audit record.
    """
    rec, verdict = _load(session, req.recommendation_id)
    if not who.may_read(rec.tenant_uuid):
        raise UnknownRecommendationError(f"no recommendation {rec.id}", field="recommendation_id")
    if who.role is Role.VIEWER:
        raise RefusedError("a viewer may not reopen a decision")
    if req.revision != rec.revision:
        raise StaleRevisionError(
            f"recommendation {rec.id} is at revision {rec.revision}, not {req.revision}: reload it",
            field="revision",
        )
    if rec.state not in (RecommendationState.DECIDED.value, RecommendationState.IGNORED.value):
        raise NothingToReopenError(
            f"recommendation {rec.id} is {rec.state}: there is no decision to reopen",
            field="recommendation_id",
        )
    standing = session.execute(
        select(DecisionRow).where(
            DecisionRow.recommendation_id == rec.id, DecisionRow.state == DecisionState.ACTIVE.value
        )
    ).scalar_one_or_none()
    before = {"state": rec.state, "revision": rec.revision, "decision_id": standing.id if standing else None}
    why = f"reopened by {who.name}" + (f": {req.reason}" if req.reason else "")
    if standing is not None:
        standing.state, standing.ended_at, standing.end_reason = (
            DecisionState.SUPERSEDED.value,
            now,
            why[:500],
        )
    rec.state, rec.updated_at = RecommendationState.OPEN.value, now
    record(session, _reopen_event(rec, verdict, standing, before, who, req.reason), now)
    return rec, standing


def _reopen_event(
    rec: RecommendationRow,
    verdict: dict[str, Any],
    standing: DecisionRow | None,
    before: dict[str, Any],
    who: Principal,
    reason: str | None,
) -> AuditEvent:
    return AuditEvent(
        source="governance",
        operation="decision.reopen",
        resource_type="recommendation",
        resource_id=str(rec.id),
        actor=who.name,
        tenant_uuid=rec.tenant_uuid,
        correlation_id=standing.correlation_id if standing else None,
        severity="warning",
        changes={"before": before, "after": {"state": rec.state, "revision": rec.revision, "reason": reason}},
        meta={
            "recommender": "system",
            "withdrawn": {"decision": standing.kind, "decided_by": standing.actor} if standing else None,
            "recommendation": {
                "plugin_id": rec.plugin_id,
                "current_version": rec.current_version,
                "target_version": rec.target_version,
                "advisories": [a.get("id") for a in verdict.get("advisories", [])],
            },
            "actor_role": who.role.value,
        },
    )


def decision_dict(row: DecisionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "recommendation_id": row.recommendation_id,
        "revision": row.revision,
        "tenant_uuid": row.tenant_uuid,
        "plugin_id": row.plugin_id,
        "decision": row.kind,
        "from_version": row.from_version,
        "target_version": row.target_version,
        "scheduled_for": iso(row.scheduled_for),
        "reason": row.reason,
        "scope": row.scope,
        "until": iso(row.until),
        "approver": row.approver,
        "actor": row.actor,
        "batch_id": row.batch_id,
        "correlation_id": row.correlation_id,
        "created_at": iso(row.created_at),
        "state": row.state,
        "ended_at": iso(row.ended_at),
        "end_reason": row.end_reason,
    }


def decisions_for(
    session: Session, *, tenant_uuid: str | None, recommendation_id: int | None, limit: int
) -> Sequence[DecisionRow]:
    stmt = select(DecisionRow).order_by(DecisionRow.id.desc()).limit(limit)
    if tenant_uuid is not None:
        stmt = stmt.where(DecisionRow.tenant_uuid == tenant_uuid)
    if recommendation_id is not None:
        stmt = stmt.where(DecisionRow.recommendation_id == recommendation_id)
    return list(session.execute(stmt).scalars())
