"""The scan report (DESIGN §4) rebuilt from the store for a scan the service ran.

Findings are read as plain columns (no ORM objects), streamed in priority order, and each shared
verdict document is decoded once: the scan's audit record digests the fleet's whole report after
every scan, so this read is on the path of every push.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

import msgspec
from sqlalchemy import Select, String, Text, cast, select, type_coerce
from sqlalchemy.orm import Session

from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.scans.queries import tenant_coverage
from powerx_governance.scans.report import REPORT_SCHEMA, manifest_age_seconds
from powerx_governance.scans.tables import ScanRow
from powerx_governance.times import iso

_DROP: Final = frozenset(("id", "revision", "state", "updated_at", "resolved_at", "scan_id"))  # §5.8
_READ_BATCH: Final = 5000
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])
# Tenant facts never hold floats (store.py writes strings, lists of strings, bools and None): a
# typed decode is fast and refuses a float, which then goes through `json` like everything else.
_FACTS: Final = msgspec.json.Decoder(dict[str, str | int | bool | list[str] | None])
# msgspec writes the same canonical JSON as json.dumps(sort_keys=True, separators=(",", ":"),
# ensure_ascii=False) except for floats printed in exponent form (|x| < 1e-4 or ≥ 1e16, NaN, ∞).
_CANONICAL: Final = msgspec.json.Encoder(order="sorted")


def canonical_json(value: Any) -> str:
    """`value` as the report digest serialises it (keys sorted, no spaces, UTF-8 as is)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stored_report(session: Session, scan: ScanRow, *, tenant_uuid: str | None) -> dict[str, Any]:
    """Coverage of `scan` plus the open findings of the tenants it covered; scoped to one tenant,
    both are that tenant's (its part of the scan: scanned, stale or failed), never the fleet's."""
    report = _report_head(session, scan, tenant_uuid)
    report["findings"] = list(report_findings(session, scan, tenant_uuid=tenant_uuid))
    return report


@dataclass
class ReportDigest:
    """What the scan's audit record says about its stored report, computed in one streamed pass."""

    sha256: str
    by_risk: dict[str, int] = field(default_factory=dict)
    by_action: dict[str, int] = field(default_factory=dict)


def stored_report_digest(session: Session, scan: ScanRow) -> ReportDigest:
    """sha256 of the fleet report `stored_report(…, tenant_uuid=None)` serialised by `canonical_json`,
    and its counts by risk and action, without holding the report: findings are encoded as read."""
    head = _report_head(session, scan, None)
    digest, by_risk, by_action = hashlib.sha256(), Counter[str](), Counter[str]()
    keys = sorted([*head, "findings"])
    digest.update(b"{")
    for i, key in enumerate(keys):
        digest.update(f"{',' if i else ''}{canonical_json(key)}:".encode())
        if key != "findings":
            digest.update(canonical_json(head[key]).encode())
            continue
        digest.update(b"[")
        for n, (finding, exact) in enumerate(_findings(session, scan, None)):
            by_risk[str(finding.get("risk_level"))] += 1
            by_action[str(finding.get("action"))] += 1
            encoded = _CANONICAL.encode(finding) if exact else canonical_json(finding).encode()
            digest.update(b"," + encoded if n else encoded)
        digest.update(b"]")
    digest.update(b"}")
    return ReportDigest(digest.hexdigest(), dict(by_risk), dict(by_action))


def report_findings(session: Session, scan: ScanRow, *, tenant_uuid: str | None) -> Iterator[dict[str, Any]]:
    """The report's findings, highest priority first, streamed."""
    for finding, _ in _findings(session, scan, tenant_uuid):
        yield finding


def _report_head(session: Session, scan: ScanRow, tenant_uuid: str | None) -> dict[str, Any]:
    errors = (
        scan.errors
        if tenant_uuid is None
        else [e for e in scan.errors if e.get("tenant_uuid") == tenant_uuid]
    )
    return {
        "schema": REPORT_SCHEMA,
        "scan_id": scan.scan_id,
        "generated_at": iso(scan.finished_at or scan.requested_at),
        "policy_version": scan.policy_version,
        "status": scan.status,
        "coverage": _coverage(scan) if tenant_uuid is None else tenant_coverage(session, scan, tenant_uuid),
        "errors": errors,
    }


_COLUMNS: Final = (
    RecommendationRow.id,
    RecommendationRow.tenant_uuid,
    RecommendationRow.plugin_id,
    RecommendationRow.verdict,
    type_coerce(RecommendationRow.sla_deadline, String),  # as stored: see _IsoTimes
    cast(RecommendationRow.tenant_facts, Text),
    RecommendationRow.state,
    type_coerce(RecommendationRow.first_seen_at, String),
    RecommendationRow.policy_version,
)


class _IsoTimes:
    """Stored timestamps as RFC 3339 text, each distinct stored value converted once: a fleet scan
    stamps a million rows with a few dozen moments, and converting costs more than the row."""

    def __init__(self, session: Session) -> None:
        stored = RecommendationRow.__table__.c.first_seen_at.type
        self._parse = stored._cached_result_processor(session.get_bind().dialect, None)
        self._seen: dict[Any, str | None] = {}

    def __call__(self, raw: Any) -> str | None:
        try:
            return self._seen[raw]
        except KeyError:
            text = self._seen[raw] = iso(raw if self._parse is None else self._parse(raw))
            return text


def _open(stmt: _Query, scan: ScanRow, tenant_uuid: str | None) -> _Query:
    stmt = stmt.where(RecommendationRow.state != RecommendationState.RESOLVED.value)
    if tenant_uuid is not None:
        stmt = stmt.where(RecommendationRow.tenant_uuid == tenant_uuid)
    if scan.tenant_filter:
        stmt = stmt.where(RecommendationRow.tenant_uuid.in_(scan.tenant_filter))
    return stmt


def _verdicts(
    session: Session, scan: ScanRow, tenant_uuid: str | None
) -> dict[str, tuple[dict[str, Any], bool]]:
    """fingerprint → (document, whether msgspec writes it exactly as `json` does) for the open findings."""
    used = _open(select(RecommendationRow.verdict).distinct(), scan, tenant_uuid).scalar_subquery()
    stmt = select(VerdictRow.fingerprint, VerdictRow.document).where(VerdictRow.fingerprint.in_(used))
    return {fp: (doc, _msgspec_exact(doc)) for fp, doc in session.connection().execute(stmt)}


def _findings(
    session: Session, scan: ScanRow, tenant_uuid: str | None
) -> Iterator[tuple[dict[str, Any], bool]]:
    """(finding, whether msgspec encodes it exactly as `json`), in report order."""
    verdicts = _verdicts(session, scan, tenant_uuid)
    generated_at = scan.finished_at or scan.requested_at
    stmt = _open(select(*_COLUMNS), scan, tenant_uuid).order_by(
        RecommendationRow.priority.desc(), RecommendationRow.id
    )
    rows = session.connection().execute(stmt.execution_options(yield_per=_READ_BATCH))
    iso_time = _IsoTimes(session)
    for rec_id, tenant, plugin, verdict, sla, facts_text, state, first_seen, policy_version in rows:
        doc, exact = verdicts[verdict]
        facts, facts_exact = _facts(facts_text)
        finding = {
            "tenant_uuid": tenant,
            "plugin_id": plugin,
            **doc,
            "sla_deadline": iso_time(sla),  # counted from first sight (DESIGN §5.8), not the shared verdict's
            **facts,
            "first_seen_at": iso_time(first_seen),
            "policy_version": policy_version,
        }
        for key in _DROP.intersection(finding):
            del finding[key]
        finding["recommendation_id"] = rec_id
        finding["state"] = state
        finding["manifest_age_seconds"] = manifest_age_seconds(_as_of(finding), generated_at)
        yield finding, exact and facts_exact


def _facts(text: str) -> tuple[dict[str, Any], bool]:
    try:
        return _FACTS.decode(text), True
    except msgspec.ValidationError:
        return json.loads(text), False


def _msgspec_exact(doc: dict[str, Any]) -> bool:
    """Whether msgspec's canonical JSON of `doc` equals `json`'s (only some floats print apart)."""
    return _CANONICAL.encode(doc) == canonical_json(doc).encode()


def _coverage(scan: ScanRow) -> dict[str, Any]:
    return {**scan.coverage(), "rate": scan.coverage_rate if scan.coverage_rate is not None else 0.0}


def _as_of(finding: dict[str, Any]) -> datetime | None:
    as_of = finding.get("manifest_as_of")
    return datetime.fromisoformat(as_of) if finding.get("manifest_stale") and as_of else None
