"""Persist scan findings as recommendations: set-based diff against what is stored.

Each (tenant, plugin) has one current recommendation with a revision number. A finding whose
content changed gets a new revision; one that disappeared is resolved; one that comes back is
reopened. Verdict documents are content-addressed and shared by every tenant that has them.

Every write also keeps each tenant's open findings summed up (`tenant_findings`, see digests.py):
a full scan compares a tenant's findings with its kept fingerprints and reads nothing of a tenant
that did not change, and a scan's report digest is made from the sums, not from the rows. Rows go
to the driver in bulk (COPY on PostgreSQL, `executemany` on SQLite) with their ids taken first.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple, cast

import msgspec
from sqlalchemy import Connection, String, Text, delete, func, select, type_coerce
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import CopiedApart, DriverRows, Spliced, bulk_insert, bulk_update, copy_field
from powerx_governance.db.chunks import READ_ALL_ABOVE, among, chunks, rows_for
from powerx_governance.db.session import before_driver_write
from powerx_governance.domain import Action, Channel, Severity
from powerx_governance.findings import Finding, verdict_document
from powerx_governance.inventory.models import Installation, TenantManifest
from powerx_governance.policy.verdict import Verdict
from powerx_governance.recommendations.digests import (
    FINGERPRINT_MOD,
    SUM_BYTES,
    FleetFindings,
    OpenFinding,
    OwnMembers,
    TenantFindings,
    VerdictParts,
    finding_bytes,
    finding_digest,
    fingerprint_term,
    msgspec_exact,
    report_finding,
    report_term,
)
from powerx_governance.recommendations.model import RecommendationChange, RecommendationState
from powerx_governance.recommendations.tables import (
    RecommendationRevisionRow,
    RecommendationRow,
    TenantFindingsRow,
    VerdictRow,
)
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
_WRITE_EVERY: Final = 20_000  # rows planned before they are written: bounds a first scan's memory
_SEND_EVERY: Final = 5_000  # PostgreSQL: rewrites planned before they are sent (`_Rewrites.send`)
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
    route: str | None = None  # the notification route of its verdict, when `routed` ...
    routed: bool = False  # ... (else announcing it reads the route from the store)


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
    priority: int
    policy_version: int | None
    first_seen_at: Any  # as the driver gives it; `_Moments` makes a datetime of it when needed
    report_digest: str | None

    def open_finding(self, plugin_id: str, terms: _Terms) -> OpenFinding:
        """What it adds to its tenant's sums while open."""
        if self.report_digest is None:
            raise DigestMissingError(self.id)
        term = terms(plugin_id, self.fingerprint, self.policy_version)
        return OpenFinding(term, self.report_digest, self.risk_level, self.action)


class _Terms:
    """`fingerprint_term` once per (plugin, fingerprint, policy version): a fleet shares a few."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str, int | None], int] = {}

    def __call__(self, plugin_id: str, fingerprint: str, policy_version: int | None) -> int:
        key = (plugin_id, fingerprint, policy_version)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = fingerprint_term(*key)
        return found


class DigestMissingError(RuntimeError):
    """An open recommendation without its digest: written around the store (migration 0012 fills
    them in); `rebuild_tenant_findings` repairs the store."""


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
        self._exact: dict[str, bool] = {}
        self._parts: dict[int, VerdictParts] = {}

    def parts(self, finding: Finding) -> VerdictParts:
        """The finding's verdict document in canonical JSON members (encoded once per verdict)."""
        key = id(finding.verdict)
        found = self._parts.get(key)
        if found is None:
            found = self._parts[key] = VerdictParts(self.verdict(finding)[1])
        return found

    def exact(self, verdict_fp: str, doc: dict[str, Any]) -> bool:
        """Whether msgspec writes the verdict document exactly as `json` does (once per verdict)."""
        found = self._exact.get(verdict_fp)
        if found is None:
            found = self._exact[verdict_fp] = msgspec_exact(doc)
        return found

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
    RecommendationRow.priority,
    RecommendationRow.policy_version,
    type_coerce(RecommendationRow.first_seen_at, String),  # as stored: converted only when used
    RecommendationRow.report_digest,
)


def _stored(
    session: Session, scope: Sequence[tuple[str, str]] | Sequence[str] | None
) -> dict[tuple[str, str], _Stored]:
    stmt = select(*_STORED_COLUMNS)
    if scope is not None and len(scope) > READ_ALL_ABOVE and not isinstance(scope[0], tuple):
        wanted = set(scope)  # a fleet-wide scan: one sequential read beats thousands of IN lookups
        return _read(session, [stmt], lambda key: key[0] in wanted)
    if scope is None:
        return _read(session, [stmt])
    if scope and isinstance(scope[0], tuple):
        # (tenant, plugin) pairs of a delta: read by plugin (indexed), keep the pairs asked for
        wanted_pairs = set(scope)
        plugins = sorted({p for _, p in wanted_pairs})
        by_plugin = [
            stmt.where(among(session, RecommendationRow.plugin_id, part)) for part in chunks(plugins)
        ]
        return _read(session, by_plugin, wanted_pairs.__contains__)
    queries = [
        stmt.where(among(session, RecommendationRow.tenant_uuid, part)) for part in chunks(list(scope))
    ]
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


# The counts by risk and action read as JSON text and decoded here: the driver's (or SQLAlchemy's)
# generic JSON decoding of two small documents cost more than the rest of a kept row.
_COUNTS: Final = msgspec.json.Decoder(dict[str, int])
_KEPT: Final = (
    TenantFindingsRow.tenant_uuid,
    TenantFindingsRow.findings,
    TenantFindingsRow.fingerprints,
    TenantFindingsRow.report_sum,
    sql_cast(TenantFindingsRow.by_risk, Text),
    sql_cast(TenantFindingsRow.by_action, Text),
)


def kept_tenant_findings(session: Session, tenants: Sequence[str] | None) -> dict[str, TenantFindings]:
    """The kept sums of `tenants` (None: every tenant with open findings)."""
    decoded: dict[str, dict[str, int]] = {}  # each distinct count document decoded once (`from_row` copies)

    def counts(document: str) -> dict[str, int]:
        found = decoded.get(document)
        if found is None:
            found = decoded[document] = _COUNTS.decode(document)
        return found

    return {
        uuid: TenantFindings.from_row(findings, fps, report_sum, counts(by_risk), counts(by_action))
        for uuid, findings, fps, report_sum, by_risk, by_action in rows_for(
            session, select(*_KEPT), TenantFindingsRow.tenant_uuid, tenants
        )
    }


def kept_fleet_findings(session: Session, tenants: Sequence[str] | None) -> FleetFindings:
    """The kept sums of `tenants` (None: every tenant) added up, equal to `FleetFindings.add` of each
    tenant's `kept_tenant_findings`, without making them: the sums are added as integers and reduced
    once, and each distinct count document is decoded once (after a push, finishing its scan read
    and decoded 20,000 tenants' sums one by one). Keys come out in the order `add` meets them."""
    t = TenantFindingsRow
    counted = (sql_cast(t.by_risk, Text), sql_cast(t.by_action, Text))
    stmt = select(t.tenant_uuid, t.findings, t.report_sum, *counted)
    findings = report_sum = 0
    risks: dict[str, int] = {}  # count document -> tenants keeping it, in first-seen order
    actions: dict[str, int] = {}
    from_bytes = int.from_bytes
    for _, count, kept_sum, by_risk, by_action in rows_for(session, stmt, t.tenant_uuid, tenants):
        findings += count
        report_sum += from_bytes(kept_sum, "big")
        risks[by_risk] = risks.get(by_risk, 0) + 1
        actions[by_action] = actions.get(by_action, 0) + 1
    fleet = FleetFindings()
    fleet.add_sums(findings, report_sum)
    for document, keeping in risks.items():
        fleet.add_counts(_COUNTS.decode(document), {}, keeping)
    for document, keeping in actions.items():
        fleet.add_counts({}, _COUNTS.decode(document), keeping)
    return fleet


def _kept_fingerprints(session: Session, tenants: Sequence[str]) -> dict[str, tuple[int, str]]:
    t = TenantFindingsRow
    stmt = select(t.tenant_uuid, t.findings, t.fingerprints)
    return {uuid: (n, fps) for uuid, n, fps in rows_for(session, stmt, t.tenant_uuid, tenants)}


def _changed_tenants(
    session: Session,
    findings: Sequence[Finding],
    tenants: Sequence[str],
    prints: _Fingerprints,
    policy_version: int | None,
) -> tuple[list[Finding], list[str], int]:
    """The findings and tenants whose open recommendations may differ from the stored ones, and how
    many findings were left out: a tenant whose findings sum to the kept `fingerprints` (same
    plugins, fingerprints and policy version) has nothing to write, so its rows are not read."""
    # keyed as `_Fingerprints.finding` caches: one lookup per finding, a hash per distinct one
    terms: dict[tuple[int, tuple[str, ...], datetime | None], int] = {}
    counts: Counter[str] = Counter()
    totals: dict[str, int] = dict.fromkeys(tenants, 0)
    # a scan makes a tenant's findings one after another: summed in locals, added in per run of them
    current: str | None = None
    run_count = run_sum = 0
    for f in findings:
        verdict = f.verdict
        key = (id(verdict), f.dependency_notes, f.stale_since)
        term = terms.get(key)
        if term is None:
            term = terms[key] = fingerprint_term(verdict.plugin_id, prints.finding(f), policy_version)
        tenant = f.tenant.tenant_uuid
        if tenant != current:
            if current is not None:
                counts[current] += run_count
                totals[current] = totals.get(current, 0) + run_sum
            current, run_count, run_sum = tenant, 0, 0
        run_count += 1
        run_sum += term
    if current is not None:
        counts[current] += run_count
        totals[current] = totals.get(current, 0) + run_sum
    sums = {uuid: [counts[uuid], total] for uuid, total in totals.items()}
    kept = _kept_fingerprints(session, tenants)
    unchanged = {
        uuid for uuid in tenants if kept.get(uuid, (0, f"{0:064x}")) == _summed(sums.get(uuid, [0, 0]))
    }
    if not unchanged:
        return list(findings), list(tenants), 0
    left = [f for f in findings if f.tenant.tenant_uuid not in unchanged]
    return left, [uuid for uuid in tenants if uuid not in unchanged], len(findings) - len(left)


def _summed(count_and_sum: list[int]) -> tuple[int, str]:
    count, total = count_and_sum
    return count, f"{total % FINGERPRINT_MOD:064x}"


class _Sums:
    """The kept sums of the tenants a write touches: read once, adjusted, written back whole."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._kept: dict[str, TenantFindings] = {}
        self._stored: set[str] = set()
        self._touched: set[str] = set()
        self._driver = DriverRows(session, TenantFindingsRow, _SUMS_UPDATED)
        self._binary = self._driver.copies_text  # PostgreSQL: rows as binary COPY rows (`_binary_rows`)

    def load(self, tenants: Iterable[str]) -> None:
        wanted = sorted(set(tenants) - self._stored - self._kept.keys())
        found = kept_tenant_findings(self._session, wanted) if wanted else {}
        self._kept.update(found)
        self._stored.update(found)

    def add(self, tenant_uuid: str, finding: OpenFinding, sign: int = 1) -> None:
        self.of(tenant_uuid).add(finding, sign)

    def of(self, tenant_uuid: str) -> TenantFindings:
        """The tenant's sums, to be adjusted (and written back)."""
        self._touched.add(tenant_uuid)
        kept = self._kept.get(tenant_uuid)
        if kept is None:
            kept = self._kept[tenant_uuid] = TenantFindings()
        return kept

    def write(self, settle: Callable[[], None] = lambda: None) -> None:
        """Write the touched tenants' sums back: kept rows updated in place, emptied ones deleted, new
        ones inserted (each in bulk, through the driver). The rows are built first, then `settle` is
        called (other writes still being sent meanwhile), then they are written."""
        kept, stored = self._kept, self._stored
        touched = sorted(self._touched)
        emptied = [uuid for uuid in touched if not kept[uuid].findings]
        updated = self._updated([uuid for uuid in touched if kept[uuid].findings and uuid in stored])
        new = [uuid for uuid in touched if kept[uuid].findings and uuid not in stored]
        inserted = [kept[uuid].row(uuid) for uuid in new]
        settle()
        for part in chunks([uuid for uuid in emptied if uuid in stored]):
            self._session.execute(
                delete(TenantFindingsRow).where(among(self._session, TenantFindingsRow.tenant_uuid, part))
            )
        if updated and self._binary:
            _update_from_binary(self._session, TenantFindingsRow, _SUMS_UPDATED, updated)()
        else:
            self._driver.update(updated, _SUMS_UPDATED)
        bulk_insert(self._session, TenantFindingsRow, inserted)
        stored.update(new)
        stored.difference_update(emptied)
        self._touched.clear()

    def _updated(self, tenants: list[str]) -> list[Any]:
        """The kept rows of `tenants` with the values `TenantFindings.row` gives, as `bulk_update`
        writes them (PostgreSQL: as binary COPY rows), built straight from the sums: each distinct count
        of findings by risk or action sorted and converted once (a push's 20,000 tenants share a few
        thousand)."""
        if not tenants:
            return []
        value = self._driver.value
        by_risk = CountDocuments(lambda counts: value("by_risk", counts))
        by_action = CountDocuments(lambda counts: value("by_action", counts))
        kept = self._kept
        if self._binary:
            return self._binary_rows(tenants, by_risk, by_action)
        return [
            (
                sums.findings,
                f"{sums.fingerprints:064x}",
                value("report_sum", sums.report_sum.to_bytes(SUM_BYTES, "big")),
                by_risk(sums.by_risk),
                by_action(sums.by_action),
                uuid,
            )
            for uuid in tenants
            for sums in (kept[uuid],)
        ]

    def _binary_rows(
        self, tenants: list[str], by_risk: CountDocuments, by_action: CountDocuments
    ) -> list[bytes]:
        """PostgreSQL: the rows of `_SUMS_UPDATED` in COPY's binary format. A sum goes as its 512 bytes
        (as text, 1,026 characters of hex for the server to decode: 25 MB of COPY text per push of
        20,000 tenants, 15 MB so); the counts as `jsonb` of the JSON text the driver's conversion
        makes, each distinct one framed once."""
        encoding = self._driver.encoding()
        documents: dict[str, bytes] = {}

        def document(text: str) -> bytes:
            found = documents.get(text)
            if found is None:
                found = documents[text] = _binary_field(_JSONB_VERSION + text.encode(encoding))
            return found

        kept, head = self._kept, _SUMS_HEAD.pack
        return [
            b"".join(
                (
                    head(len(_SUMS_UPDATED), 4, sums.findings, 64),
                    f"{sums.fingerprints:064x}".encode(encoding),
                    _SUM_LENGTH,
                    sums.report_sum.to_bytes(SUM_BYTES, "big"),
                    document(by_risk(sums.by_risk)),
                    document(by_action(sums.by_action)),
                    _binary_field(uuid.encode(encoding)),
                )
            )
            for uuid in tenants
            for sums in (kept[uuid],)
        ]


# COPY binary rows of `_SUMS_UPDATED`: the number of fields, then `findings` (its length, 4, and
# value) and the length of `fingerprints` (64 hex digits); a sum's field length; `jsonb`'s version
_SUMS_HEAD: Final = struct.Struct(">hiii")
_SUM_LENGTH: Final = struct.pack(">i", SUM_BYTES)
_JSONB_VERSION: Final = b"\x01"


def _binary_field(data: bytes) -> bytes:
    """A value's field in a COPY binary row: its length, then its bytes."""
    return struct.pack(">i", len(data)) + data


class CountDocuments:
    """A tenant's counts by risk or action as `TenantFindings.row` keeps them (sorted, no zeros) and as
    `convert` (the column's conversion for the driver) makes their JSON text, built from the text of
    each (name, count) member, each converted once: after a push, 20,000 tenants keep ~12,000
    distinct counts by risk, and converting each whole cost more than the rest of the tenant's row.

    The separator between members is learnt from `convert` on the first document of two members or
    more, and that document's text checked against `convert`'s whole; where anything differs (or
    `convert` makes no text), every document is converted whole."""

    def __init__(self, convert: Callable[[dict[str, int]], Any]) -> None:
        self._convert = convert
        self._members: dict[tuple[str, int], str] = {}
        self._between: str | None = None  # between members; None: not learnt yet; "": convert whole
        self._made: dict[tuple[tuple[str, int], ...], Any] = {}  # by the counts' items, as given

    def __call__(self, counts: dict[str, int]) -> Any:
        items = tuple(counts.items())
        found = self._made.get(items)
        if found is None:
            found = self._made[items] = self._document(items)
        return found

    def _document(self, items: tuple[tuple[str, int], ...]) -> Any:
        shown = {name: n for name, n in sorted(items) if n}
        if len(shown) < 2:  # a separator needs two members
            return self._convert(shown)
        if self._between is None:
            self._between = self._learnt(shown)
        if not self._between:
            return self._convert(shown)
        return "{" + self._between.join([self._member(name, n) for name, n in shown.items()]) + "}"

    def _member(self, name: str, n: int) -> str:
        found = self._members.get((name, n))
        if found is None:
            found = self._members[(name, n)] = self._convert({name: n})[1:-1]
        return found

    def _learnt(self, shown: dict[str, int]) -> str:
        whole = self._convert(shown)
        members = list(shown.items())
        one = self._convert(dict(members[:1]))
        two = self._convert(dict(members[:2]))
        if not all(isinstance(text, str) and text[:1] == "{" and text[-1:] == "}" for text in (one, two)):
            return ""
        first, second = self._member(*members[0]), self._member(*members[1])
        if not (two.startswith("{" + first) and two.endswith(second + "}")):
            return ""
        between = two[1 + len(first) : len(two) - len(second) - 1]
        built = "{" + between.join([self._member(name, n) for name, n in members]) + "}"
        return between if between and built == whole else ""


_SUMS_UPDATED: Final = ("findings", "fingerprints", "report_sum", "by_risk", "by_action", "tenant_uuid")


class _Ids:
    """Ids for new recommendations, taken before they are written so their digests can name them."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._next: int | None = None

    def take(self, count: int) -> list[int]:
        if count == 0:
            return []
        connection = self._session.connection()
        if connection.dialect.name == "postgresql":
            sequence = func.pg_get_serial_sequence(RecommendationRow.__tablename__, "id")
            stmt = select(func.nextval(sequence)).select_from(func.generate_series(1, count))
            return list(connection.execute(stmt).scalars())
        if self._next is None:
            before_driver_write(connection)  # SQLite: the single writer, so max(id) stays ours
            self._next = (connection.execute(select(func.max(RecommendationRow.id))).scalar() or 0) + 1
        taken = list(range(self._next, self._next + count))
        self._next += count
        return taken


def new_recommendation_ids(session: Session, count: int) -> list[int]:
    """`count` ids for new recommendations, taken as `persist_findings` takes them."""
    return _Ids(session).take(count)


@dataclass(eq=False, slots=True)
class FindingKind:
    """What every finding of one kind says, whichever tenant has it: its verdict, the installation's
    channel, the tenant's core version, co-upgrade notes and manifest age. A fleet's million findings
    are of a few thousand kinds; a first ingest keeps each as (tenant, kind) between its passes."""

    verdict: Verdict
    channel: Channel
    core_version: str
    dependency_notes: tuple[str, ...]
    stale_since: datetime | None


class FindingTenant(NamedTuple):
    """The facts of a finding's tenant that its kind leaves out."""

    tenant_uuid: str
    tenant_key: str | None


OpenedFinding = tuple[FindingTenant, FindingKind]


class OpenedFindings:
    """Findings as (tenant, kind), each tenant and kind one shared object."""

    def __init__(self) -> None:
        self._kinds: dict[tuple[int, Channel, str, tuple[str, ...], datetime | None], FindingKind] = {}
        self._tenants: dict[tuple[str, str | None], FindingTenant] = {}

    def of(self, f: Finding) -> OpenedFinding:
        tenant = (f.tenant.tenant_uuid, f.tenant.tenant_key)
        found = self._tenants.get(tenant)
        if found is None:
            found = self._tenants[tenant] = FindingTenant(*tenant)
        key = (
            id(f.verdict),
            f.installation.channel,
            f.tenant.core_version,
            f.dependency_notes,
            f.stale_since,
        )
        kind = self._kinds.get(key)  # verdicts live in the engine's cache: ids are never reused
        if kind is None:
            kind = self._kinds[key] = FindingKind(
                f.verdict, f.installation.channel, f.tenant.core_version, f.dependency_notes, f.stale_since
            )
        return found, kind


_OPENED_ROW: Final = (
    "id",
    "tenant_uuid",
    "plugin_id",
    "revision",
    "state",
    "fingerprint",
    "verdict",
    "current_version",
    "target_version",
    "latest_version",
    "risk_level",
    "priority",
    "action",
    "critical_patch",
    "sla_deadline",
    "tenant_facts",
    "first_seen_at",
    "updated_at",
    "resolved_at",
    "scan_id",
    "policy_version",
    "report_digest",
)
_OPENED_REVISION: Final = (
    "recommendation_id",
    "revision",
    "change",
    "state",
    "verdict",
    "target_version",
    "risk_level",
    "priority",
    "action",
    "scan_id",
    "policy_version",
    "created_at",
)
_VERDICT_COLUMNS: Final = _OPENED_ROW[6:15]  # verdict to sla_deadline: the same for every kind of a verdict
# A finding's own digest members that differ between findings of one kind (`_Opening.digested`)
_PER_FINDING: Final = ("tenant_uuid", "tenant_key", "recommendation_id")


@dataclass(slots=True)
class _VerdictOpening:
    """What every recommendation opened with one verdict has in common: its driver values from
    `verdict` to `sla_deadline` and its revision's, its digest's members but its own ones, which
    go at `own` (as `finding_bytes` orders them)."""

    values: dict[str, Any]
    columns: tuple[Any, ...]
    revision: tuple[Any, ...]
    digested: list[bytes]
    own: dict[str, int]
    columns_text: str  # PostgreSQL: `columns` and `revision` as COPY text fields (`DriverRows.field`)
    revision_text: str


@dataclass(slots=True)
class _Opening:
    """What every recommendation opened for findings of one kind has in common, worked out once:
    the driver values of its row but those of the tenant and id, its revision's, its tenant facts
    but the key, its digest's members but the tenant's and the id (empty at `slots`), and what it
    adds to its tenant's sums."""

    head: tuple[Any, ...]  # row values from plugin_id to sla_deadline
    facts: Spliced  # the driver value of its tenant facts, given the tenant key
    revision: tuple[Any, ...]  # revision values after recommendation_id
    digested: list[bytes]
    slots: tuple[int, int, int]  # where `_PER_FINDING` go in `digested`
    term: int
    values: dict[str, Any]
    head_text: str  # PostgreSQL: `head` and `revision` as COPY text fields (`DriverRows.field`)
    revision_text: str


class FirstIngestWriter:
    """Opens a recommendation per finding of a store holding none (a first ingest): the rows,
    revisions, verdicts, tenant sums and changes `persist_findings` writes for them, built as driver
    rows from what each kind of finding has in common, without reading anything back.

    `write` takes findings with their ids, in any order, chunk by chunk (a first ingest gives them
    in id order); `finish` writes the tenants' sums once every finding is written."""

    def __init__(
        self, session: Session, *, scan_id: str | None, now: datetime, policy_version: int | None
    ) -> None:
        self.session, self.scan_id, self.now, self.policy_version = session, scan_id, now, policy_version
        self.prints, self.members, self.terms = _Fingerprints(), OwnMembers(), _Terms()
        self.rows = DriverRows(session, RecommendationRow, _OPENED_ROW)
        self.revisions = DriverRows(session, RecommendationRevisionRow, _OPENED_REVISION)
        self.sums: dict[str, TenantFindings] = {}
        self._verdicts: dict[int, _VerdictOpening] = {}
        self._openings: dict[int, _Opening] = {}
        self._tenants: dict[str, tuple[bytes, bytes]] = {}  # digest members of each tenant's uuid, key
        self._id_member = self.members("recommendation_id", 0).removesuffix(b"0")
        moments = {"first_seen_at": now, "updated_at": now, "resolved_at": None}
        constant = {**moments, "scan_id": scan_id, "policy_version": policy_version}
        self._tail = tuple(self.rows.value(c, constant[c]) for c in _OPENED_ROW[16:21])
        self._text = self.rows.copies_text  # rows as COPY text lines: no per-value work for the driver
        self._tail_text = "\t".join(map(self.rows.field, self._tail)) if self._text else ""
        self._copying = CopiedApart()

    def write(self, findings: Sequence[tuple[int, FindingTenant, FindingKind]]) -> list[Change]:
        """Open a recommendation for each (id, tenant, kind); the changes, in the order given."""
        rows: list[Any] = []
        revisions: list[Any] = []
        changes = []
        opened, tail, text, tail_text = RecommendationChange.OPENED, self._tail, self._text, self._tail_text
        for rec_id, tenant, kind in findings:
            opening = self._openings.get(id(kind))
            if opening is None:
                opening = self._openings[id(kind)] = self._opening(kind)
            uuid, key = tenant
            raw = hashlib.sha256(self._digested(opening, uuid, key, rec_id)).digest()
            digest = raw.hex()
            if text:
                facts = opening.facts(key)
                rows.append(
                    f"{rec_id}\t{copy_field(uuid)}\t{opening.head_text}"
                    f"\t{_NULL if facts is None else copy_field(facts)}\t{tail_text}\t{digest}\n"
                )
                revisions.append(f"{rec_id}\t{opening.revision_text}\n")
            else:
                rows.append((rec_id, uuid, *opening.head, opening.facts(key), *tail, digest))
                revisions.append((rec_id, *opening.revision))
            v = opening.values
            sums = self.sums.get(uuid)
            if sums is None:
                sums = self.sums[uuid] = TenantFindings()
            sums.count(opening.term, report_term(raw), v["risk_level"], v["action"])
            changes.append(
                Change(
                    rec_id,
                    uuid,
                    kind.verdict.plugin_id,
                    1,
                    opened,
                    v["risk_level"],
                    v["action"],
                    v["critical_patch"],
                    target_version=v["target_version"],
                    current_version=v["current_version"],
                    route=kind.verdict.notification,
                    routed=True,
                )
            )
        _store_verdicts(self.session, self.prints.fresh(), self.now)  # PostgreSQL: apart, meanwhile
        self._copying.wait()  # the previous chunk's rows are in before anything else is written
        if text:
            self._copying.start(self.rows.copy_of(rows), self.revisions.copy_of(revisions))
        else:
            self.rows.insert(rows)
            self.revisions.insert(revisions)
        return changes

    def finish(self) -> None:
        """Write the sums of every tenant with findings (once the last chunk's rows are in)."""
        self._copying.wait()
        rows = [self.sums[uuid].row(uuid) for uuid in sorted(self.sums)]
        bulk_insert(self.session, TenantFindingsRow, rows)
        self.sums = {}

    def settle(self) -> None:
        """Wait for a chunk still being copied, without raising: before the transaction is rolled back
        after an error, nothing else may use its connection."""
        self._copying.settle()

    def _digested(self, opening: _Opening, uuid: str, key: str | None, rec_id: int) -> bytes:
        """The canonical JSON of the finding as the report serves it (`finding_bytes`)."""
        members = self._tenants.get(uuid)
        if members is None:
            members = self._tenants[uuid] = (
                self.members("tenant_uuid", uuid),
                self.members("tenant_key", key),
            )
        parts = opening.digested.copy()
        at_uuid, at_key, at_id = opening.slots
        parts[at_uuid], parts[at_key] = members
        parts[at_id] = self._id_member + b"%d" % rec_id
        return b"{" + b",".join(parts) + b"}"

    def _opening(self, kind: FindingKind) -> _Opening:
        """What findings of `kind` share, from the finding a tenant without uuid or key would have
        (through the functions `persist_findings` uses, so the rows come out the same)."""
        v = kind.verdict
        manifest = TenantManifest(tenant_uuid="", core_version=kind.core_version)
        installation = Installation(plugin_id=v.plugin_id, version=v.current_version, channel=kind.channel)
        f = Finding(manifest, installation, v, kind.dependency_notes, kind.stale_since)
        fingerprint = self.prints.finding(f)
        shared = self._verdicts.get(id(v))
        if shared is None:
            shared = self._verdicts[id(v)] = self._verdict_opening(f)
        facts = _tenant_facts(f)
        digested = shared.digested.copy()
        for key, at in shared.own.items():
            if key in facts and key not in _PER_FINDING:
                digested[at] = self.members(key, facts[key])
        own = shared.own
        value = self.rows.value
        head = (
            value("plugin_id", v.plugin_id),
            value("revision", 1),
            value("state", _OPEN),
            value("fingerprint", fingerprint),
            *shared.columns,
        )
        texts = self._text
        return _Opening(
            head,
            self.rows.with_member("tenant_facts", facts, "tenant_key"),
            shared.revision,
            digested,
            (own["tenant_uuid"], own["tenant_key"], own["recommendation_id"]),
            self.terms(v.plugin_id, fingerprint, self.policy_version),
            shared.values,
            "\t".join((*map(self.rows.field, head[:4]), shared.columns_text)) if texts else "",
            shared.revision_text,
        )

    def _verdict_opening(self, f: Finding) -> _VerdictOpening:
        """What findings with `f`'s verdict share, whatever their kind."""
        verdict_fp, _ = self.prints.verdict(f)
        values = _row_values(f, "", verdict_fp, self.scan_id, self.now, self.policy_version, self.now)
        revision = _revision(values, 1, RecommendationChange.OPENED, _OPEN, self.now)
        own = {
            "tenant_uuid": "",
            "plugin_id": f.verdict.plugin_id,
            "sla_deadline": iso(values["sla_deadline"]),
            **values["tenant_facts"],
            "first_seen_at": iso(self.now),
            "policy_version": self.policy_version,
            "recommendation_id": 0,
        }
        parts = self.prints.parts(f)
        order = parts.order(tuple(own))
        columns = tuple(self.rows.value(c, values[c]) for c in _VERDICT_COLUMNS)
        revised = tuple(self.revisions.value(c, revision[c]) for c in _OPENED_REVISION[1:])
        texts = self._text
        return _VerdictOpening(
            values,
            columns,
            revised,
            [self.members(key, own[key]) if key in own else parts.members[key] for key in order],
            {key: at for at, key in enumerate(order) if key in own},
            "\t".join(map(self.rows.field, columns)) if texts else "",
            "\t".join(map(self.revisions.field, revised)) if texts else "",
        )


_OPEN: Final = RecommendationState.OPEN.value
_NULL: Final = r"\N"  # SQL NULL in COPY text


_STAGED: Final = "_lines_update"
_LINES_SENT: Final = 1_000  # COPY text lines sent at a time


def _update_from_lines(
    session: Session,
    model: type[RecommendationRow] | type[TenantFindingsRow],
    columns: Sequence[str],
    lines: Sequence[str],
) -> Callable[[], None]:
    """PostgreSQL: a call that updates rows of `model` from COPY text lines of `columns` (fields as
    `DriverRows.field` makes them), matched on the last column, as `bulk_update` writes: the lines
    copied into a temporary table of those columns, then one `UPDATE … FROM` it, without per-value
    work for the driver. The driver connection is resolved here, so the call may run on another
    thread while this one leaves the session alone (`CopiedApart`)."""
    if not lines:
        return _no_update
    raw = _driver_connection(session)
    encoding = str(raw.info.encoding)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(lines), _LINES_SENT):
            yield "".join(lines[start : start + _LINES_SENT]).encode(encoding)

    return _staged_update(raw, model, columns, "", pieces)


def _update_from_binary(
    session: Session,
    model: type[RecommendationRow] | type[TenantFindingsRow],
    columns: Sequence[str],
    rows: Sequence[bytes],
) -> Callable[[], None]:
    """PostgreSQL: `_update_from_lines` of rows in COPY's binary format (each its field count, then
    each field's length and bytes as the column's type receives them)."""
    if not rows:
        return _no_update
    raw = _driver_connection(session)

    def pieces() -> Iterator[bytes]:
        yield _BINARY_SIGNATURE
        for start in range(0, len(rows), _LINES_SENT):
            yield b"".join(rows[start : start + _LINES_SENT])
        yield _BINARY_TRAILER

    return _staged_update(raw, model, columns, " (FORMAT BINARY)", pieces)


def _no_update() -> None:
    """An update of no rows."""


# COPY's binary format: the signature, flags and header extension length before the rows; then the
# end marker (a field count of -1)
_BINARY_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER: Final = b"\xff\xff"


def _driver_connection(session: Session) -> Any:
    """The session's psycopg connection (PostgreSQL only), ready for a write through the driver."""
    connection = session.connection()
    raw: Any = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("no driver connection inside the transaction")
    before_driver_write(connection)
    return raw


def _staged_update(
    raw: Any,
    model: type[RecommendationRow] | type[TenantFindingsRow],
    columns: Sequence[str],
    options: str,
    pieces: Callable[[], Iterator[bytes]],
) -> Callable[[], None]:
    """The call `_update_from_lines` and `_update_from_binary` return: the COPY data `pieces` makes
    (in COPY's format `options` names) copied into a temporary table, then one `UPDATE … FROM` it."""
    table = model.__tablename__
    *assigned, key = columns
    names = ", ".join(f'"{c}"' for c in columns)
    assignments = ", ".join(f'"{c}" = changed."{c}"' for c in assigned)
    shaped = f'CREATE TEMPORARY TABLE "{_STAGED}" AS SELECT {names} FROM "{table}" WITH NO DATA'  # noqa: S608 - our own names
    updated = (
        f'UPDATE "{table}" SET {assignments} FROM "{_STAGED}" AS changed'  # noqa: S608 - our own names
        f' WHERE "{table}"."{key}" = changed."{key}"'
    )

    def update() -> None:
        with raw.cursor() as cursor:
            cursor.execute(shaped)
            with cursor.copy(f'COPY "{_STAGED}" ({names}) FROM STDIN{options}') as copying:
                for piece in pieces():
                    copying.write(piece)
            cursor.execute(updated)
            cursor.execute(f'DROP TABLE "{_STAGED}"')

    return update


def _store_verdicts(session: Session, documents: Iterable[tuple[str, dict[str, Any]]], now: datetime) -> None:
    """The verdicts of `documents` not stored yet, stored (PostgreSQL: apart, `_commit_verdicts_apart`)."""
    wanted = dict(documents)
    if session.get_bind().dialect.name == "postgresql":
        _commit_verdicts_apart(session, wanted, now)
        return
    bulk_insert(session, VerdictRow, _unstored_verdicts(session, session, wanted, now))


def _unstored_verdicts(
    session: Session, reader: Session | Connection, wanted: dict[str, dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Rows of the verdicts of `wanted` that `reader` does not find stored."""
    present: set[str] = set()
    for part in chunks(list(wanted)):
        present.update(
            reader.execute(
                select(VerdictRow.fingerprint).where(among(session, VerdictRow.fingerprint, part))
            ).scalars()
        )
    return [
        {"fingerprint": fp, "document": doc, "created_at": now}
        for fp, doc in wanted.items()
        if fp not in present
    ]


def _commit_verdicts_apart(session: Session, wanted: dict[str, dict[str, Any]], now: datetime) -> None:
    """PostgreSQL: new verdicts committed at once in their own short transaction, a verdict another
    writer stored meanwhile skipped. Shards of a scan running at once meet the same new verdicts;
    written in the shard's own long transaction, the second writer of one failed on the key (or
    waited for the first shard's commit) and its whole shard ran again alone. A verdict is
    content-addressed and immutable: stored without the findings that use it (their transaction
    rolled back), it is an unused row, and the next writer of that verdict finds it there.

    Looked up and written on a connection of its own, so this may run while the session's connection
    sends a piece of rows on another thread (`CopiedApart`): a push's writer stores the next piece's
    verdicts while the piece before is being written, not after."""
    if not wanted:
        return
    statement = postgresql.insert(VerdictRow).on_conflict_do_nothing(index_elements=["fingerprint"])
    with session.get_bind().engine.begin() as apart:
        for part in chunks(_unstored_verdicts(session, apart, wanted, now)):
            apart.execute(statement, part)


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


@dataclass
class _Plan:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    opened: list[tuple[Finding, str, datetime]] = field(default_factory=list)  # each insert's finding ...
    updates: list[dict[str, Any]] = field(default_factory=list)
    revisions: list[dict[str, Any]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    restamped: list[tuple[str, str, _Stored]] = field(default_factory=list)  # unchanged, other policy version
    # stored recommendations rewritten (`_Rewrites`): driver rows by the columns they set, and revisions
    # (PostgreSQL: COPY text lines)
    rewritten: dict[tuple[bool, bool, bool], list[Any]] = field(default_factory=dict)
    rewritten_revisions: list[Any] = field(default_factory=list)

    def size(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.rewritten_revisions)


def _plan_opening(plan: _Plan, f: Finding, values: dict[str, Any], now: datetime) -> None:
    """A new recommendation for `f` (its id is taken when the plan is written)."""
    key = (f.tenant.tenant_uuid, f.verdict.plugin_id)
    state = RecommendationState.OPEN.value
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
    plan.revisions.append(_revision(values, 1, RecommendationChange.OPENED, state, now))
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
    Each tenant's kept sums (`tenant_findings`) follow what is written; a tenant whose findings
    match its kept fingerprints is not read at all.
    """
    prints, done = _Fingerprints(), ChangeSet()
    if scope and not isinstance(scope[0], tuple):
        findings, scope, done.unchanged = _changed_tenants(
            session, findings, cast(Sequence[str], scope), prints, policy_version
        )
        if not scope:
            return done
    writer = _Writer(session, prints, done, now, scan_id, policy_version)
    stored = _stored(session, scope)
    writer.sums.load({t for t, _ in stored} | {f.tenant.tenant_uuid for f in findings})
    seen: set[tuple[str, str]] = set()
    try:
        for f in findings:
            key = (f.tenant.tenant_uuid, f.verdict.plugin_id)
            seen.add(key)
            writer.plan(f, stored.get(key))
        for key, old in stored.items():
            if key not in seen and old.state not in _CLOSED:
                writer.sums.add(key[0], old.open_finding(key[1], writer.terms), -1)
                _plan_resolution(writer.current, key, old, scan_id, now)
        writer.flush()
        writer.sums.write(writer.rewrites.wait)  # the sums are built while the last rewrites are sent
    finally:
        writer.rewrites.settle()  # nothing else uses the connection (nor rolls it back) meanwhile
    return done


class _Writer:
    """Plans the writes of one `persist_findings` call and writes them every `_WRITE_EVERY` rows."""

    def __init__(
        self,
        session: Session,
        prints: _Fingerprints,
        done: ChangeSet,
        now: datetime,
        scan_id: str | None,
        policy_version: int | None,
    ) -> None:
        self.session, self.prints, self.done, self.now = session, prints, done, now
        self.scan_id, self.policy_version = scan_id, policy_version
        self.moments, self.ids, self.sums, self.current = (
            _Moments(session),
            _Ids(session),
            _Sums(session),
            _Plan(),
        )
        self.terms = _Terms()
        self.members = OwnMembers()
        self._isos: dict[datetime | None, str | None] = {}
        self.rewrites = _Rewrites(self)

    def plan(self, f: Finding, old: _Stored | None) -> None:
        fingerprint = self.prints.finding(f)
        if old is not None and old.fingerprint == fingerprint and old.state not in _CLOSED:
            self.done.unchanged += 1  # the common case of a steady fleet: nothing to build or write
            if old.policy_version != self.policy_version:
                self.current.restamped.append((f.tenant.tenant_uuid, f.verdict.plugin_id, old))
            return
        if old is None:
            verdict_fp, _ = self.prints.verdict(f)
            values = _row_values(
                f, fingerprint, verdict_fp, self.scan_id, self.now, self.policy_version, self.now
            )
            self.current.opened.append((f, fingerprint, self.now))
            _plan_opening(self.current, f, values, self.now)
        else:
            self.rewrites.plan(self, f, old, fingerprint)
            if self.rewrites.due(self.current):
                self.rewrites.send(self)
        if self.current.size() >= _WRITE_EVERY:
            self.flush()  # bounded memory on a first, fleet-wide scan

    def _digest(
        self, values: dict[str, Any], f: Finding, fingerprint: str, first_seen: datetime, rec_id: int
    ) -> None:
        """Name the row's finding digest in `values` and count the finding in its tenant's sums."""
        tenant, plugin = f.tenant.tenant_uuid, f.verdict.plugin_id
        own = {
            "tenant_uuid": tenant,
            "plugin_id": plugin,
            "sla_deadline": self.iso(values["sla_deadline"]),
            **values["tenant_facts"],
            "first_seen_at": self.iso(first_seen),
            "policy_version": self.policy_version,
            "recommendation_id": rec_id,
        }
        encoded = finding_bytes(self.prints.parts(f), own, self.members)
        digest = values["report_digest"] = hashlib.sha256(encoded).hexdigest()
        term = self.terms(plugin, fingerprint, self.policy_version)
        self.sums.add(tenant, OpenFinding(term, digest, values["risk_level"], values["action"]))

    def iso(self, moment: datetime | None) -> str | None:
        found = self._isos.get(moment)
        if found is None:
            found = self._isos[moment] = iso(moment)
        return found

    def flush(self) -> None:
        plan = self.current
        _store_verdicts(self.session, self.prints.fresh(), self.now)  # PostgreSQL: apart, meanwhile
        self.rewrites.wait()  # rewrites sent earlier are in before anything else uses the session
        ids = self.ids.take(len(plan.inserts))
        opened = [c for c in plan.changes if c.recommendation_id == 0]
        for rec_id, row, (f, fingerprint, first_seen), change in zip(
            ids, plan.inserts, plan.opened, opened, strict=True
        ):
            row["id"] = change.recommendation_id = rec_id
            self._digest(row, f, fingerprint, first_seen, rec_id)
        new_ids = iter(ids)  # the inserts' revisions were planned in the same order as the inserts
        for revision in plan.revisions:
            if "recommendation_id" not in revision:
                revision["recommendation_id"] = next(new_ids)
        _write(self.session, plan)
        self._restamp(plan.restamped)
        self.rewrites.write(plan)  # last: on PostgreSQL, written while the caller goes on (`wait`)
        self.done.changes += plan.changes
        self.current = _Plan()

    def _restamp(self, restamped: list[tuple[str, str, _Stored]]) -> None:
        """Unchanged findings now naming another policy version: restamped, their digests made afresh
        from their stored columns (a new policy version comes with a full scan, not with a push)."""
        if not restamped:
            return
        fresh = {
            rec_id: found
            for _, _, rec_id, found in stored_open_findings(
                self.session, ids=[o.id for *_, o in restamped], policy_version=self.policy_version
            )
        }
        for tenant, plugin, old in restamped:
            self.sums.add(tenant, old.open_finding(plugin, self.terms), -1)
            self.sums.add(tenant, fresh[old.id])
        rows = [
            {"id": i, "policy_version": self.policy_version, "report_digest": f.digest}
            for i, f in fresh.items()
        ]
        bulk_update(self.session, RecommendationRow, rows, key="id")


# The columns every rewrite sets, after its revision and before its tenant facts, digest and id (see
# `_rewritten`).
_REWRITTEN: Final = (
    "resolved_at",
    "fingerprint",
    "verdict",
    "current_version",
    "target_version",
    "latest_version",
    "risk_level",
    "action",
    "critical_patch",
    "sla_deadline",
    "updated_at",
    "scan_id",
    "policy_version",
)
_REWRITTEN_TAIL: Final = ("tenant_facts", "report_digest", "id")


@dataclass(slots=True)
class _Rewrite:
    """What every stored recommendation rewritten with findings of one kind (`FindingKind`) and one
    first-seen moment has in common, worked out once: its driver values but the tenant's, the id and
    the digest, its revision's after the change and state, its digest's members but the tenant's and
    the id (empty at `slots`), and what its finding adds to its tenant's sums."""

    values: dict[str, Any]  # `_row_values` of the kind's finding
    row: tuple[Any, ...]  # driver values of `_REWRITTEN` (and `first_seen_at` when it reopens)
    facts: Spliced  # the driver value of its tenant facts, given the tenant key
    revision: tuple[Any, ...]  # driver values of the revision from `verdict` on
    # the digest: sha256 fed with the members before the first of `_PER_FINDING` (the verdict's large
    # ones sort first: advisories, changelog), copied for each finding, which feeds it the rest
    prefix: Any  # a hashlib sha256 object
    digested: list[bytes]  # the members from the first of `_PER_FINDING` on
    slots: tuple[int, int, int]  # where `_PER_FINDING` go in `digested`
    term: int
    priority: Any  # driver value of its priority
    # PostgreSQL: `row`, `revision` and `priority` as COPY text fields (`DriverRows.field`), else ""
    row_text: str = ""
    revision_text: str = ""
    priority_text: str = ""
    changes: dict[tuple[str, str], RecommendationChange] = field(default_factory=dict)  # by old risk, action


class _Rewrites:
    """Plans the rewrite of stored recommendations whose finding changed (a new revision, escalated,
    changed or reopened), as driver rows built from what each kind of finding shares (`_Rewrite`): a
    push rewrites the same few fields of thousands of rows, and the per-row work is the tenant's and
    the id's members, the digest and the sums. A reopened one's SLA clock starts anew (first seen
    now); a decided or ignored one keeps its state (the decision's owner judges whether the change
    ends it).

    It keeps no reference to its writer (each call is given it): the two made a reference cycle,
    which kept everything a write planned (after a push, 20,000 tenants' sums, rows and caches,
    ~50 MiB) alive until Python's next full collection, rare in a service's large heap: the process
    grew by that much with every push whose scan did not happen to set one off."""

    def __init__(self, writer: _Writer) -> None:
        session = self._session = writer.session
        self._members = writer.members
        columns = _rewritten(with_state=True, with_priority=True, reopens=True)
        self.rows = DriverRows(session, RecommendationRow, columns)
        self.revisions = DriverRows(session, RecommendationRevisionRow, _OPENED_REVISION)
        self._kinds = OpenedFindings()
        self._shapes: dict[tuple[int, bool, Any], _Rewrite] = {}
        self._tenants: dict[tuple[str, str | None], tuple[bytes, bytes]] = {}
        self._id_member = writer.members("recommendation_id", 0).removesuffix(b"0")
        self._text = self.rows.copies_text  # rows as COPY text lines, sent while the next are planned
        if self._text:  # the driver's dumpers resolved now: later, another thread may be using it
            self.rows.field(0)
            self.revisions.field(0)
        self._copying = CopiedApart()

    def plan(self, w: _Writer, f: Finding, old: _Stored, fingerprint: str) -> None:
        """Plan `old`'s rewrite with finding `f` (whose fingerprint differs, or `old` is resolved)
        into `w`'s current plan."""
        plan = w.current
        tenant, kind = self._kinds.of(f)
        uuid, key = tenant
        reopens = old.state in _CLOSED
        shape_key = (id(kind), reopens, None if reopens else old.first_seen_at)
        shape = self._shapes.get(shape_key)
        if shape is None:
            first_seen = w.now if reopens else w.moments(old.first_seen_at)
            shape = self._shapes[shape_key] = self._rewrite(w, f, fingerprint, first_seen, reopens=reopens)
        digest = shape.prefix.copy()
        digest.update(self._digested(shape, uuid, key, old.id))
        raw = digest.digest()
        sums = w.sums.of(uuid)
        v = shape.values
        if reopens:
            sums.count(shape.term, report_term(raw), v["risk_level"], v["action"])
        elif old.report_digest is None:
            raise DigestMissingError(old.id)
        else:
            sums.replace(
                w.terms(v["plugin_id"], old.fingerprint, old.policy_version),
                report_term(bytes.fromhex(old.report_digest)),
                (old.risk_level, old.action),
                shape.term,
                report_term(raw),
                (v["risk_level"], v["action"]),
            )
        change = shape.changes.get((old.risk_level, old.action))
        if change is None:
            change = shape.changes[(old.risk_level, old.action)] = _rewrite_change(old, f.verdict)
        state = old.state if old.state in _DECIDED else _OPEN
        revision = old.revision + 1
        with_state, with_priority = state != old.state, bool(v["priority"] != old.priority)
        own = (state,) if with_state else ()
        if with_priority:
            own = (*own, shape.priority)
        columns = (with_state, with_priority, reopens)
        if self._text:  # as `_rewritten` and `_OPENED_REVISION` name them
            facts = shape.facts(key)
            field_of = self.rows.field
            own_text = f"{field_of(state)}\t" if with_state else ""
            if with_priority:
                own_text += f"{shape.priority_text}\t"
            plan.rewritten.setdefault(columns, []).append(
                f"{own_text}{field_of(revision)}\t{shape.row_text}"
                f"\t{_NULL if facts is None else copy_field(facts)}\t{raw.hex()}\t{old.id}\n"
            )
            plan.rewritten_revisions.append(
                f"{old.id}\t{field_of(revision)}\t{field_of(change.value)}\t{field_of(state)}"
                f"\t{shape.revision_text}\n"
            )
        else:
            plan.rewritten.setdefault(columns, []).append(
                (
                    *own,
                    revision,
                    *shape.row,
                    shape.facts(key),
                    raw.hex(),
                    old.id,
                )  # as `_rewritten` names them
            )
            plan.rewritten_revisions.append((old.id, revision, change.value, state, *shape.revision))
        plan.changes.append(
            Change(
                old.id,
                uuid,
                v["plugin_id"],
                revision,
                change,
                v["risk_level"],
                v["action"],
                v["critical_patch"],
                previous_state=old.state,
                target_version=v["target_version"],
                current_version=v["current_version"],
                policy_version=v["policy_version"],
                previous_policy_version=old.policy_version,
            )
        )

    def due(self, plan: _Plan) -> bool:
        """Whether the rewrites planned so far are to be sent now (`send`)."""
        return self._text and len(plan.rewritten_revisions) >= _SEND_EVERY

    def send(self, w: _Writer) -> None:
        """PostgreSQL: the rewrites `w` planned so far written by a thread of their own while `w` plans
        the next ones (the server stores a piece while Python builds the next, instead of each waiting
        for the other), once the piece before is in and the verdicts they name are stored."""
        plan = w.current
        _store_verdicts(w.session, w.prints.fresh(), w.now)  # apart, while the piece before is sent
        self._copying.wait()
        self.write(plan)
        plan.rewritten, plan.rewritten_revisions = {}, []

    def write(self, plan: _Plan) -> None:
        """Write the planned rewrites (each set of columns in one bulk update) and their revisions; on
        PostgreSQL by a thread of their own (`wait` for them before anything else uses the session)."""
        if self._text:
            if not plan.rewritten_revisions:  # every rewrite has its revision: nothing planned
                return
            updates = [
                _update_from_lines(
                    self._session,
                    RecommendationRow,
                    _rewritten(with_state=state, with_priority=priority, reopens=reopens),
                    rows,
                )
                for (state, priority, reopens), rows in plan.rewritten.items()
            ]
            self._copying.start(*updates, self.revisions.copy_of(plan.rewritten_revisions))
            return
        for (state, priority, reopens), rows in plan.rewritten.items():
            self.rows.update(rows, _rewritten(with_state=state, with_priority=priority, reopens=reopens))
        self.revisions.insert(plan.rewritten_revisions)

    def wait(self) -> None:
        """Return once the rewrites being written are in; raise what their write raised."""
        self._copying.wait()

    def settle(self) -> None:
        """Wait for rewrites being written, without raising (the caller is raising already)."""
        self._copying.settle()

    def _digested(self, shape: _Rewrite, uuid: str, key: str | None, rec_id: int) -> bytes:
        """The rest of the canonical JSON of the finding as the report serves it (`finding_bytes`)
        after `shape.prefix`."""
        members = self._tenants.get((uuid, key))
        if members is None:
            members = self._tenants[(uuid, key)] = (
                self._members("tenant_uuid", uuid),
                self._members("tenant_key", key),
            )
        parts = shape.digested.copy()
        at_uuid, at_key, at_id = shape.slots
        parts[at_uuid], parts[at_key] = members
        parts[at_id] = self._id_member + b"%d" % rec_id
        return b",".join(parts) + b"}"

    def _rewrite(
        self, w: _Writer, f: Finding, fingerprint: str, first_seen: datetime, *, reopens: bool
    ) -> _Rewrite:
        """What rewrites with findings of `f`'s kind first seen at `first_seen` share (through the
        functions the generic path uses, so the rows come out the same)."""
        verdict_fp, _ = w.prints.verdict(f)
        values = _row_values(f, fingerprint, verdict_fp, w.scan_id, w.now, w.policy_version, first_seen)
        values["plugin_id"] = f.verdict.plugin_id
        own = {
            "tenant_uuid": "",
            "plugin_id": f.verdict.plugin_id,
            "sla_deadline": w.iso(values["sla_deadline"]),
            **values["tenant_facts"],
            "first_seen_at": w.iso(first_seen),
            "policy_version": w.policy_version,
            "recommendation_id": 0,
        }
        parts = w.prints.parts(f)
        order = parts.order(tuple(own))
        digested = [w.members(k, own[k]) if k in own else parts.members[k] for k in order]
        start = min(order.index(k) for k in _PER_FINDING)
        prefix = hashlib.sha256(b"{" + b"".join(member + b"," for member in digested[:start]))
        at = {k: i - start for i, k in enumerate(order)}
        value = self.rows.value
        row = {**values, "resolved_at": None, "first_seen_at": first_seen}
        names = (*_REWRITTEN, "first_seen_at") if reopens else _REWRITTEN
        revision = _revision(values, 0, RecommendationChange.CHANGED, _OPEN, w.now)
        driven = tuple(value(c, row[c]) for c in names)
        revised = tuple(self.revisions.value(c, revision[c]) for c in _OPENED_REVISION[4:])
        priority = value("priority", values["priority"])
        texts = self._text
        return _Rewrite(
            values,
            driven,
            self.rows.with_member("tenant_facts", values["tenant_facts"], "tenant_key"),
            revised,
            prefix,
            digested[start:],
            (at["tenant_uuid"], at["tenant_key"], at["recommendation_id"]),
            w.terms(f.verdict.plugin_id, fingerprint, w.policy_version),
            priority,
            "\t".join(map(self.rows.field, driven)) if texts else "",
            "\t".join(map(self.revisions.field, revised)) if texts else "",
            self.rows.field(priority) if texts else "",
        )


def _rewritten(*, with_state: bool, with_priority: bool, reopens: bool) -> tuple[str, ...]:
    """The columns of a rewrite's driver row, in order: `state` and `priority` only when their value
    changes (a store maintains an index whose column is assigned even to its own value: SQLite
    rewrote both priority indexes' entries of every row), `first_seen_at` only when it reopens."""
    return (
        *(("state",) if with_state else ()),
        *(("priority",) if with_priority else ()),
        "revision",
        *_REWRITTEN,
        *(("first_seen_at",) if reopens else ()),
        *_REWRITTEN_TAIL,
    )


def _rewrite_change(old: _Stored, verdict: Verdict) -> RecommendationChange:
    if old.state in _CLOSED:
        return RecommendationChange.REOPENED
    if _escalated(old.risk_level, old.action, verdict.risk_level, verdict.action):
        return RecommendationChange.ESCALATED
    return RecommendationChange.CHANGED


def _write(session: Session, plan: _Plan) -> None:
    bulk_insert(session, RecommendationRow, plan.inserts)
    by_columns: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in plan.updates:
        by_columns.setdefault(frozenset(row), []).append(row)
    for rows in by_columns.values():
        bulk_update(session, RecommendationRow, rows, key="id")
    bulk_insert(session, RecommendationRevisionRow, plan.revisions)


# Tenant facts never hold floats (this module writes strings, lists of strings, bools and None): a
# typed decode is fast and refuses a float, which then goes through `json` like everything else.
_FACTS: Final = msgspec.json.Decoder(dict[str, str | int | bool | list[str] | None])


def decode_facts(text: str) -> tuple[dict[str, Any], bool]:
    """Stored tenant facts, and whether msgspec writes them exactly as `json` does."""
    try:
        return _FACTS.decode(text), True
    except msgspec.ValidationError:
        return json.loads(text), False


class IsoTimes:
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


_DIGESTED: Final = (
    RecommendationRow.tenant_uuid,
    RecommendationRow.plugin_id,
    RecommendationRow.id,
    RecommendationRow.verdict,
    type_coerce(RecommendationRow.sla_deadline, String),  # as stored: see IsoTimes
    sql_cast(RecommendationRow.tenant_facts, Text),
    type_coerce(RecommendationRow.first_seen_at, String),
    RecommendationRow.policy_version,
    RecommendationRow.fingerprint,
    RecommendationRow.risk_level,
    RecommendationRow.action,
)


def stored_open_findings(
    session: Session,
    *,
    ids: Sequence[int] | None = None,
    tenants: Sequence[str] | None = None,
    policy_version: int | Literal[False] | None = False,
) -> Iterator[tuple[str, str, int, OpenFinding]]:
    """(tenant, plugin, id, what it adds to its tenant's sums) of open recommendations, computed from
    their stored columns alone (those with `ids`, of `tenants`, or all); with `policy_version`, as
    they will be once restamped with it."""
    stmt = select(*_DIGESTED).where(RecommendationRow.state != RecommendationState.RESOLVED.value)
    if ids is not None:
        queries = [stmt.where(among(session, RecommendationRow.id, part)) for part in chunks(list(ids))]
    elif tenants is not None:
        queries = [
            stmt.where(among(session, RecommendationRow.tenant_uuid, part)) for part in chunks(list(tenants))
        ]
    else:
        queries = [stmt]
    verdicts: dict[str, tuple[dict[str, Any], bool]] = {}
    iso_time = IsoTimes(session)
    for query in queries:
        _read_verdicts(session, query, verdicts)
        for (
            tenant,
            plugin,
            rec_id,
            verdict,
            sla,
            facts_text,
            first_seen,
            stored_version,
            fp,
            risk,
            action,
        ) in session.connection().execute(query):
            doc, doc_exact = verdicts[verdict]
            facts, facts_exact = decode_facts(facts_text)
            version = stored_version if policy_version is False else policy_version
            finding = report_finding(
                tenant,
                plugin,
                doc,
                facts,
                sla_deadline=iso_time(sla),
                first_seen_at=iso_time(first_seen),
                policy_version=version,
                recommendation_id=rec_id,
            )
            digest = finding_digest(finding, exact=doc_exact and facts_exact)
            yield (
                tenant,
                plugin,
                rec_id,
                OpenFinding(fingerprint_term(plugin, fp, version), digest, risk, action),
            )


def _read_verdicts(session: Session, query: Any, found: dict[str, tuple[dict[str, Any], bool]]) -> None:
    used = query.with_only_columns(RecommendationRow.verdict).distinct().scalar_subquery()
    stmt = select(VerdictRow.fingerprint, VerdictRow.document).where(VerdictRow.fingerprint.in_(used))
    for fp, doc in session.connection().execute(stmt):
        if fp not in found:
            found[fp] = (doc, msgspec_exact(doc))


def tenant_findings_from_rows(
    session: Session, tenants: Sequence[str] | None = None
) -> dict[str, TenantFindings]:
    """The sums `tenant_findings` keeps, computed from scratch from the stored recommendations."""
    found: dict[str, TenantFindings] = {}
    for tenant, _, _, finding in stored_open_findings(session, tenants=tenants):
        found.setdefault(tenant, TenantFindings()).add(finding)
    return found


def rebuild_tenant_findings(session: Session) -> None:
    """Recompute every open recommendation's digest and every tenant's sums from the stored rows
    (migration 0012 fills them in this way; it also repairs rows written around the store)."""
    found: dict[str, TenantFindings] = {}
    digests: list[dict[str, Any]] = []
    for tenant, _, rec_id, finding in stored_open_findings(session):
        found.setdefault(tenant, TenantFindings()).add(finding)
        digests.append({"id": rec_id, "report_digest": finding.digest})
        if len(digests) >= _WRITE_EVERY:
            bulk_update(session, RecommendationRow, digests, key="id")
            digests = []
    bulk_update(session, RecommendationRow, digests, key="id")
    session.execute(delete(TenantFindingsRow))
    bulk_insert(session, TenantFindingsRow, [sums.row(uuid) for uuid, sums in sorted(found.items())])


def non_open_states(session: Session, tenants: Sequence[str] | None) -> list[tuple[int, str]]:
    """(id, state) of the findings a decision answered (decided, ignored): the report shows their
    state, which the kept digests leave out. Read through the state index: decisions are few."""
    shown = [
        s.value
        for s in RecommendationState
        if s not in (RecommendationState.OPEN, RecommendationState.RESOLVED)
    ]
    stmt = select(RecommendationRow.id, RecommendationRow.state).where(RecommendationRow.state.in_(shown))
    if tenants is None:
        return [(rec_id, state) for rec_id, state in session.connection().execute(stmt)]
    found: list[tuple[int, str]] = []
    for part in chunks(list(tenants)):
        found += [
            (rec_id, state)
            for rec_id, state in session.connection().execute(
                stmt.where(among(session, RecommendationRow.tenant_uuid, part))
            )
        ]
    return found
