"""Persist scan findings as recommendations: set-based diff against what is stored.

Each (tenant, plugin) has one current recommendation with a revision number. A finding whose
content changed gets a new revision; one that disappeared is resolved; one that comes back is
reopened. Verdict documents are content-addressed and shared by every tenant that has them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, cast

import msgspec
from sqlalchemy import String, select, type_coerce, update
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import bulk_insert, bulk_update
from powerx_governance.db.chunks import chunks
from powerx_governance.domain import Action, Severity
from powerx_governance.findings import Finding, verdict_document
from powerx_governance.recommendations.model import RecommendationChange, RecommendationState
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow, VerdictRow
from powerx_governance.times import iso

_ENCODER: Final = msgspec.json.Encoder(order="deterministic")
_URGENCY: Final = {
    Action.NONE: 0,
    Action.REVIEW: 1,
    Action.BLOCKED: 2,
    Action.SCHEDULE: 3,
    Action.UPGRADE_NOW: 4,
}
_CLOSED: Final = (RecommendationState.RESOLVED.value,)
_READ_ALL_ABOVE: Final = 2000
_WRITE_EVERY: Final = 50_000
_DECIDED: Final = (RecommendationState.DECIDED.value, RecommendationState.IGNORED.value)


@dataclass(slots=True)
class Change:
    """One recommendation that was opened, escalated, changed, resolved or reopened."""

    recommendation_id: int
    tenant_uuid: str
    plugin_id: str
    revision: int
    change: RecommendationChange
    risk_level: str
    action: str
    critical_patch: bool
    previous_state: str | None = None  # None for a recommendation opened by this change
    target_version: str | None = None
    current_version: str | None = None  # the installed version (None for a resolution)
    policy_version: int | None = None  # the rules version that produced it ...
    previous_policy_version: int | None = None  # ... and the one that produced what it replaces


@dataclass
class ChangeSet:
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0

    def count(self, kind: RecommendationChange) -> int:
        return sum(1 for c in self.changes if c.change is kind)


class _Stored(NamedTuple):
    """A stored recommendation as the diff needs it (a tuple: a fleet scan reads a million)."""

    id: int
    fingerprint: str
    revision: int
    state: str
    risk_level: str
    action: str
    policy_version: int | None
    first_seen_at: Any  # as the driver gives it; `_Moments` makes a datetime of it when needed


class _Moments:
    """Stored `first_seen_at` values as aware datetimes, each distinct stored value converted once:
    only changed recommendations need theirs, and a fleet scan stamps them all with a few moments."""

    def __init__(self, session: Session) -> None:
        stored = RecommendationRow.__table__.c.first_seen_at.type
        self._parse = stored._cached_result_processor(session.get_bind().dialect, None)
        self._seen: dict[Any, datetime] = {}

    def __call__(self, raw: Any) -> datetime:
        found = self._seen.get(raw)
        if found is None:
            moment = raw if self._parse is None else self._parse(raw)
            found = self._seen[raw] = _aware(cast(datetime, moment))
        return found


class _Fingerprints:
    """Verdict documents and their hashes, computed once per distinct verdict.

    A recommendation's fingerprint is what the admin saw: the verdict plus the co-upgrades its
    target needs in this tenant; cosmetic tenant facts (key, name) do not count as a change.
    """

    def __init__(self) -> None:
        self.documents: dict[int, tuple[str, dict[str, Any]]] = {}
        self._findings: dict[tuple[int, tuple[str, ...], datetime | None], str] = {}
        self._stored: set[str] = set()

    def fresh(self) -> list[tuple[str, dict[str, Any]]]:
        """Verdict documents not handed out by an earlier call (each is stored once)."""
        new = [(fp, doc) for fp, doc in self.documents.values() if fp not in self._stored]
        self._stored.update(fp for fp, _ in new)
        return new

    def finding(self, f: Finding) -> str:
        key = (id(f.verdict), f.dependency_notes, f.stale_since)
        found = self._findings.get(key)
        if found is None:
            verdict_fp, _ = self.verdict(f)
            stale = () if f.stale_since is None else (f"stale:{f.stale_since.isoformat()}",)
            found = self._findings[key] = hashlib.sha256(
                "\x1f".join((verdict_fp, *f.dependency_notes, *stale)).encode()
            ).hexdigest()
        return found

    def verdict(self, finding: Finding) -> tuple[str, dict[str, Any]]:
        key = id(finding.verdict)
        found = self.documents.get(key)
        if found is None:
            doc = verdict_document(finding.verdict)
            found = (hashlib.sha256(_ENCODER.encode(doc)).hexdigest(), doc)
            self.documents[key] = found
        return found


def _tenant_facts(finding: Finding) -> dict[str, Any]:
    return {
        "tenant_key": finding.tenant.tenant_key,
        "core_version": finding.tenant.core_version,
        "channel": str(finding.installation.channel),
        "compatibility": list(finding.verdict.compatibility),
        "co_upgrades": list(finding.dependency_notes),
        "manifest_stale": finding.stale_since is not None,
        "manifest_as_of": iso(finding.stale_since),
    }


def _escalated(old_risk: str, old_action: str, new_risk: Severity, new_action: Action) -> bool:
    return new_risk.rank > Severity(old_risk).rank or _URGENCY[new_action] > _URGENCY[Action(old_action)]


_STORED_COLUMNS: Final = (
    RecommendationRow.tenant_uuid,
    RecommendationRow.plugin_id,
    RecommendationRow.id,
    RecommendationRow.fingerprint,
    RecommendationRow.revision,
    RecommendationRow.state,
    RecommendationRow.risk_level,
    RecommendationRow.action,
    RecommendationRow.policy_version,
    type_coerce(RecommendationRow.first_seen_at, String),  # as stored: converted only when used
)


def _stored(
    session: Session, scope: Sequence[tuple[str, str]] | Sequence[str] | None
) -> dict[tuple[str, str], _Stored]:
    stmt = select(*_STORED_COLUMNS)
    if scope is not None and len(scope) > _READ_ALL_ABOVE and not isinstance(scope[0], tuple):
        wanted = set(scope)  # a fleet-wide scan: one sequential read beats thousands of IN lookups
        return _read(session, [stmt], lambda key: key[0] in wanted)
    if scope is None:
        return _read(session, [stmt])
    if scope and isinstance(scope[0], tuple):
        # (tenant, plugin) pairs of a delta: read by plugin (indexed), keep the pairs asked for
        wanted_pairs = set(scope)
        plugins = sorted({p for _, p in wanted_pairs})
        by_plugin = [stmt.where(RecommendationRow.plugin_id.in_(part)) for part in chunks(plugins)]
        return _read(session, by_plugin, wanted_pairs.__contains__)
    queries = [stmt.where(RecommendationRow.tenant_uuid.in_(part)) for part in chunks(list(scope))]
    return _read(session, queries)


def _read(
    session: Session, queries: Sequence[Any], keep: Callable[[tuple[str, str]], bool] | None = None
) -> dict[tuple[str, str], _Stored]:
    found: dict[tuple[str, str], _Stored] = {}
    make = _Stored._make
    for query in queries:
        for row in session.connection().execute(query):
            key = (row[0], row[1])
            if keep is None or keep(key):
                found[key] = make(row[2:])
    return found


def _store_verdicts(session: Session, documents: Iterable[tuple[str, dict[str, Any]]], now: datetime) -> None:
    wanted = dict(documents)
    present: set[str] = set()
    for part in chunks(list(wanted)):
        present.update(
            session.execute(select(VerdictRow.fingerprint).where(VerdictRow.fingerprint.in_(part))).scalars()
        )
    rows = [
        {"fingerprint": fp, "document": doc, "created_at": now}
        for fp, doc in wanted.items()
        if fp not in present
    ]
    bulk_insert(session, VerdictRow, rows)


@dataclass
class _Plan:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    revisions: list[dict[str, Any]] = field(default_factory=list)
    pending_revisions: list[tuple[tuple[str, str], dict[str, Any]]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    restamped: list[int] = field(default_factory=list)  # unchanged, but produced by another policy version


def _aware(moment: datetime) -> datetime:
    """A timestamp read through the raw connection (SQLite keeps no zone; the store writes UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _row_values(
    f: Finding,
    fingerprint: str,
    verdict_fp: str,
    scan_id: str | None,
    now: datetime,
    policy_version: int | None,
    first_seen: datetime,
) -> dict[str, Any]:
    v = f.verdict
    return {
        "fingerprint": fingerprint,
        "verdict": verdict_fp,
        "current_version": v.current_version,
        "target_version": v.target_version,
        "latest_version": v.latest_version,
        "risk_level": str(v.risk_level),
        "priority": v.priority,
        "action": str(v.action),
        "critical_patch": v.critical_patch,
        "sla_deadline": v.sla_deadline_for(first_seen),  # DESIGN §5.8: the one deadline every count uses
        "tenant_facts": _tenant_facts(f),
        "updated_at": now,
        "scan_id": scan_id,
        "policy_version": policy_version,
    }


def _revision(
    values: dict[str, Any], revision: int, change: RecommendationChange, state: str, now: datetime
) -> dict[str, Any]:
    return {
        "revision": revision,
        "change": change.value,
        "state": state,
        "verdict": values["verdict"],
        "target_version": values["target_version"],
        "risk_level": values["risk_level"],
        "priority": values["priority"],
        "action": values["action"],
        "scan_id": values["scan_id"],
        "policy_version": values["policy_version"],
        "created_at": now,
    }


def _plan_finding(
    plan: _Plan, f: Finding, old: _Stored | None, values: dict[str, Any], now: datetime
) -> None:
    key = (f.tenant.tenant_uuid, f.verdict.plugin_id)
    state = RecommendationState.OPEN.value
    if old is None:
        plan.inserts.append(
            {
                "tenant_uuid": key[0],
                "plugin_id": key[1],
                "revision": 1,
                "state": state,
                "first_seen_at": now,
                "resolved_at": None,
                **values,
            }
        )
        plan.pending_revisions.append((key, _revision(values, 1, RecommendationChange.OPENED, state, now)))
        plan.changes.append(
            Change(
                0,
                *key,
                1,
                RecommendationChange.OPENED,
                values["risk_level"],
                values["action"],
                values["critical_patch"],
                target_version=values["target_version"],
                current_version=values["current_version"],
            )
        )
        return
    if old.state in _CLOSED:
        change = RecommendationChange.REOPENED
        values = {**values, "first_seen_at": now}  # seen again with a finding: its SLA clock starts anew
    elif _escalated(old.risk_level, old.action, f.verdict.risk_level, f.verdict.action):
        change = RecommendationChange.ESCALATED
    else:
        change = RecommendationChange.CHANGED
    revision = old.revision + 1
    if old.state in _DECIDED:
        state = old.state  # the decision's owner (decisions) judges whether the change ends it
    plan.updates.append({"id": old.id, "revision": revision, "state": state, "resolved_at": None, **values})
    plan.revisions.append({"recommendation_id": old.id, **_revision(values, revision, change, state, now)})
    plan.changes.append(
        Change(
            old.id,
            *key,
            revision,
            change,
            values["risk_level"],
            values["action"],
            values["critical_patch"],
            previous_state=old.state,
            target_version=values["target_version"],
            current_version=values["current_version"],
            policy_version=values["policy_version"],
            previous_policy_version=old.policy_version,
        )
    )


def _plan_resolution(
    plan: _Plan, key: tuple[str, str], old: _Stored, scan_id: str | None, now: datetime
) -> None:
    revision = old.revision + 1
    state = RecommendationState.RESOLVED.value
    plan.updates.append(
        {
            "id": old.id,
            "revision": revision,
            "state": state,
            "resolved_at": now,
            "updated_at": now,
            "scan_id": scan_id,
        }
    )
    plan.revisions.append(
        {
            "recommendation_id": old.id,
            "revision": revision,
            "change": RecommendationChange.RESOLVED.value,
            "state": state,
            "verdict": "",
            "target_version": None,
            "risk_level": old.risk_level,
            "priority": 0,
            "action": old.action,
            "scan_id": scan_id,
            "policy_version": old.policy_version,
            "created_at": now,
        }
    )
    plan.changes.append(
        Change(
            old.id,
            *key,
            revision,
            RecommendationChange.RESOLVED,
            old.risk_level,
            old.action,
            False,
            previous_state=old.state,
        )
    )


def persist_findings(
    session: Session,
    findings: Sequence[Finding],
    *,
    scope: Sequence[tuple[str, str]] | Sequence[str] | None,
    scan_id: str | None,
    now: datetime,
    policy_version: int | None = None,
) -> ChangeSet:
    """Apply findings for `scope` (None: everything; tenant ids; or (tenant, plugin) pairs).

    Stored recommendations inside the scope without a finding are resolved. Every open one
    in scope names `policy_version` afterwards, changed or not (no new revision for that alone).
    """
    prints, moments = _Fingerprints(), _Moments(session)
    stored = _stored(session, scope)
    plan, done = _Plan(), ChangeSet()
    seen: set[tuple[str, str]] = set()
    for f in findings:
        key = (f.tenant.tenant_uuid, f.verdict.plugin_id)
        seen.add(key)
        fingerprint, old = prints.finding(f), stored.get(key)
        if old is not None and old.fingerprint == fingerprint and old.state not in _CLOSED:
            done.unchanged += 1  # the common case of a steady fleet: nothing to build or write
            if old.policy_version != policy_version:
                plan.restamped.append(old.id)
            continue
        verdict_fp, _ = prints.verdict(f)
        first_seen = now if old is None or old.state in _CLOSED else moments(old.first_seen_at)
        values = _row_values(f, fingerprint, verdict_fp, scan_id, now, policy_version, first_seen)
        _plan_finding(plan, f, old, values, now)
        if (
            len(plan.inserts) + len(plan.updates) >= _WRITE_EVERY
        ):  # bounded memory on a first, fleet-wide scan
            _flush(session, plan, prints, done, now, policy_version)
            plan = _Plan()
    for key, old in stored.items():
        if key not in seen and old.state not in _CLOSED:
            _plan_resolution(plan, key, old, scan_id, now)
    _flush(session, plan, prints, done, now, policy_version)
    return done


def _flush(
    session: Session,
    plan: _Plan,
    prints: _Fingerprints,
    done: ChangeSet,
    now: datetime,
    policy_version: int | None,
) -> None:
    _store_verdicts(session, prints.fresh(), now)
    _write(session, plan, policy_version)
    done.changes += plan.changes


def _write(session: Session, plan: _Plan, policy_version: int | None) -> None:
    bulk_insert(session, RecommendationRow, plan.inserts)
    for part in chunks(plan.restamped):
        session.execute(
            update(RecommendationRow)
            .where(RecommendationRow.id.in_(part))
            .values(policy_version=policy_version)
        )
    by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in plan.updates:
        by_columns.setdefault(frozenset(row), []).append(row)
    for rows in by_columns.values():
        bulk_update(session, RecommendationRow, rows, key="id")
    if plan.pending_revisions:
        ids = _ids_for(session, [key for key, _ in plan.pending_revisions])
        plan.revisions += [{"recommendation_id": ids[key], **rev} for key, rev in plan.pending_revisions]
        for change in plan.changes:
            if change.recommendation_id == 0:  # opened in this scan: its id exists only now
                change.recommendation_id = ids[(change.tenant_uuid, change.plugin_id)]
    bulk_insert(session, RecommendationRevisionRow, plan.revisions)


def _ids_for(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ids of freshly inserted recommendations (bulk inserts do not return them portably)."""
    wanted = set(keys)
    ids: dict[tuple[str, str], int] = {}
    for part in chunks(sorted({t for t, _ in keys})):
        stmt = select(RecommendationRow.tenant_uuid, RecommendationRow.plugin_id, RecommendationRow.id).where(
            RecommendationRow.tenant_uuid.in_(part)
        )
        for tenant, plugin, rec_id in session.connection().execute(stmt):
            if (tenant, plugin) in wanted:
                ids[(tenant, plugin)] = rec_id
    return ids
