"""Decisions taken together (group commit) on SQLite and PostgreSQL: each keeps its own answer,
audit record, notification and console card; concurrent clients over HTTP get exactly one of each."""

from __future__ import annotations

import asyncio
import importlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, func, select

from powerx_governance.audit.service import verify
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import Principal, authenticate
from powerx_governance.db.session import transaction
from powerx_governance.decisions.group_commit import GroupCommit, decide_together
from powerx_governance.decisions.model import DecisionKind
from powerx_governance.decisions.service import DecisionRequest, StaleRevisionError
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.jobs.tables import JobRow
from powerx_governance.notifications.service import DELIVER_BATCH_TASK
from powerx_governance.notifications.tables import (
    ConsoleCardRow,
    NotificationDeliveryRow,
    NotificationEventRow,
)
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.service import GovernanceService
from tests.conftest import LiveServer, ServiceFactory, issue_token, scanned_service
from tests.functional.notifications.support import install, notification_env, routes_file

BASE = "/internal/version/governance"


def _upgradeable(service: GovernanceService) -> list[tuple[int, int, str]]:
    """(id, revision, tenant) of the open recommendations with a release to go to."""
    with service.factory() as session:
        rows = session.execute(
            select(RecommendationRow.id, RecommendationRow.revision, RecommendationRow.tenant_uuid)
            .where(
                RecommendationRow.state == "open",
                RecommendationRow.target_version.is_not(None) | RecommendationRow.latest_version.is_not(None),
            )
            .order_by(RecommendationRow.id)
        ).all()
    return [(rec_id, revision, tenant) for rec_id, revision, tenant in rows]


def _principal(service: GovernanceService, token: str) -> Principal:
    with transaction(service.factory) as session:
        found = authenticate(session, token, service.clock())
    assert found is not None
    return found


def _count(service: GovernanceService, stmt: object) -> int:
    with service.factory() as session:
        return int(session.execute(stmt).scalar_one())  # type: ignore[call-overload]


def test_a_batch_answers_each_decision_as_alone(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    who = _principal(service, issue_token(service, Role.OPERATOR))
    recs = _upgradeable(service)
    assert len(recs) >= 3
    (a, a_rev, a_tenant), (b, b_rev, _), (c, c_rev, _) = recs[:3]
    requests = [
        DecisionRequest(a, a_rev, DecisionKind.UPGRADE, idempotency_key="k-a"),
        DecisionRequest(a, a_rev, DecisionKind.UPGRADE, idempotency_key="k-a"),  # a replay: the first one
        DecisionRequest(b, b_rev + 1, DecisionKind.UPGRADE),  # stale: refused, the others go on
        DecisionRequest(c, c_rev, DecisionKind.UPGRADE),
        DecisionRequest(c, c_rev, DecisionKind.IGNORE, reason="frozen until the audit"),  # supersedes
    ]
    answers = decide_together(
        service.factory, service.notifications, service.clock(), [(r, who) for r in requests]
    )
    first, replay, stale, upgrade_c, ignore_c = answers
    assert not isinstance(first, Exception)
    assert not isinstance(replay, Exception)
    assert first[1]
    assert not replay[1]
    assert first[0]["id"] == replay[0]["id"]
    assert isinstance(stale, StaleRevisionError)
    assert not isinstance(upgrade_c, Exception)
    assert not isinstance(ignore_c, Exception)
    assert upgrade_c[0]["state"] == "active"  # the answer as of its own decision
    with service.factory() as session:
        states = dict(
            session.execute(
                select(DecisionRow.id, DecisionRow.state).where(DecisionRow.recommendation_id == c)
            ).all()
        )
        assert states == {upgrade_c[0]["id"]: "superseded", ignore_c[0]["id"]: "active"}
        assert session.get_one(RecommendationRow, c).state == "ignored"
        assert session.get_one(RecommendationRow, b).state == "open"
        events = list(
            session.execute(
                select(AuditEventRow)
                .where(AuditEventRow.operation.like("decision.%"))
                .order_by(AuditEventRow.seq)
            ).scalars()
        )
        # one record each, in the order taken, each with the state its own decision left
        assert [(e.resource_id, e.changes["after"]["state"]) for e in events] == [
            (str(a), "decided"),
            (str(c), "decided"),
            (str(c), "ignored"),
        ]
        assert [e.changes["after"]["decision_id"] for e in events] == [
            first[0]["id"],
            upgrade_c[0]["id"],
            ignore_c[0]["id"],
        ]
        assert verify(session).ok
    assert events[0].tenant_uuid == a_tenant


def test_concurrent_clients_each_get_one_record_and_card(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    token = issue_token(service, Role.OPERATOR)
    recs = _upgradeable(service)
    with LiveServer(service, background=False) as live:

        def post(rec: tuple[int, int, str]) -> int:
            with live.client(token) as client:
                body = {"recommendation_id": rec[0], "revision": rec[1], "decision": "upgrade"}
                answer: httpx.Response = client.post(f"{BASE}/decision", json=body)
                return answer.status_code

        with ThreadPoolExecutor(16) as pool:
            codes = Counter(pool.map(post, recs + recs[:4]))  # four decided twice: superseded
    assert codes == Counter({201: len(recs) + 4})
    decided = len(recs) + 4
    assert _count(service, select(func.count()).select_from(DecisionRow)) == decided
    operation = AuditEventRow.operation == "decision.upgrade"
    assert _count(service, select(func.count()).select_from(AuditEventRow).where(operation)) == decided
    with service.factory() as session:
        assert verify(session).ok
    kind = NotificationEventRow.kind == "decision"
    assert _count(service, select(func.count()).select_from(NotificationEventRow).where(kind)) == decided
    while service.run_pending(limit=10_000):  # the console deliveries: one card per decision
        pass
    cards = select(func.count()).select_from(ConsoleCardRow).where(ConsoleCardRow.kind == "decision")
    assert _count(service, cards) == decided
    pending = NotificationDeliveryRow.status == "pending"
    assert _count(service, select(func.count()).select_from(NotificationDeliveryRow).where(pending)) == 0


def test_decisions_on_one_tenant_share_a_console_delivery(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    who = _principal(service, issue_token(service, Role.OPERATOR))
    by_tenant: dict[str, list[tuple[int, int, str]]] = {}
    for rec in _upgradeable(service):
        by_tenant.setdefault(rec[2], []).append(rec)
    tenant, recs = max(by_tenant.items(), key=lambda item: len(item[1]))
    assert len(recs) >= 2
    requests = [(DecisionRequest(rec_id, rev, DecisionKind.UPGRADE), who) for rec_id, rev, _ in recs]
    before = _count(service, select(func.count()).select_from(NotificationDeliveryRow))
    decide_together(service.factory, service.notifications, service.clock(), requests)
    assert _count(service, select(func.count()).select_from(NotificationDeliveryRow)) == before + 1
    while service.run_pending(limit=10_000):
        pass
    with service.factory() as session:
        cards = session.execute(
            select(ConsoleCardRow.tenant_uuid, ConsoleCardRow.recommendation_id).where(
                ConsoleCardRow.kind == "decision"
            )
        ).all()
    assert sorted(cards) == sorted((tenant, rec_id) for rec_id, _, _ in recs)


def test_decisions_coming_back_a_few_at_a_time_are_gathered_into_one_batch(
    make_service: ServiceFactory,
) -> None:
    """After a shared batch, the next waits for as many decisions while they keep coming (each
    within the gap of the one before), and takes what came once none comes for a gap."""
    service = scanned_service(make_service)
    who = _principal(service, issue_token(service, Role.OPERATOR))
    recs = _upgradeable(service)
    assert len(recs) >= 10
    jobs = select(func.count()).select_from(JobRow).where(JobRow.task == DELIVER_BATCH_TASK)
    before = _count(service, jobs)  # a delivery job per commit (the worker is off)

    async def waves() -> list[int]:
        group = GroupCommit(service.factory, service.notifications, service.clock, gather=(0.5, 30.0))
        commits: list[int] = []

        async def decide(rec: tuple[int, int, str], after: float) -> None:
            await asyncio.sleep(after)
            await group.decide(DecisionRequest(rec[0], rec[1], DecisionKind.UPGRADE), who)

        for wave in (recs[:4], recs[4:8]):  # the second comes back one by one, 20 ms apart
            spread = 0.0 if not commits else 0.02
            await asyncio.gather(*(decide(rec, n * spread) for n, rec in enumerate(wave)))
            commits.append(_count(service, jobs) - before - sum(commits))
        await asyncio.gather(*(decide(rec, n * 0.02) for n, rec in enumerate(recs[8:10])))
        commits.append(_count(service, jobs) - before - sum(commits))  # 2 of 4, then none came
        return commits

    assert asyncio.run(waves()) == [1, 1, 1]
    decided = select(func.count()).select_from(DecisionRow)
    assert _count(service, decided) == 10


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_batch_of_as_many_decisions_reuses_the_drivers_statement_conversions(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its multi-row INSERTs (hundreds of parameters) are parsed by psycopg once, not at every batch."""
    service = scanned_service(make_service)
    who = _principal(service, issue_token(service, Role.OPERATOR))
    recs = _upgradeable(service)
    assert len(recs) >= 32
    queries = importlib.import_module("psycopg._queries")
    uncached: list[bytes] = []
    convert = queries._query2pg_nocache

    def counted(query: bytes, *args: object) -> object:
        uncached.append(query)
        return convert(query, *args)

    # what psycopg calls for a statement it does not keep (its kept ones go through an LRU of the same)
    monkeypatch.setattr(queries, "_query2pg_nocache", counted)

    def batch(part: list[tuple[int, int, str]]) -> None:
        requests = [(DecisionRequest(rec, rev, DecisionKind.UPGRADE), who) for rec, rev, _ in part]
        answers = decide_together(service.factory, service.notifications, service.clock(), requests)
        assert not any(isinstance(a, Exception) for a in answers)

    batch(recs[:16])
    assert uncached == []
    hits = queries._query2pg.cache_info().hits
    batch(recs[16:32])
    assert uncached == []
    assert queries._query2pg.cache_info().hits - hits >= 6  # the INSERTs of 16 rows among them


def test_a_batch_of_decisions_is_a_few_statements_whatever_its_size(
    make_service: ServiceFactory, backend: str
) -> None:
    """Its recommendations read and locked in one, its rows written in one each, nothing looked up
    per decision, and no lookup of notification keys its own new decision ids cannot have."""
    service = scanned_service(make_service)
    who = _principal(service, issue_token(service, Role.OPERATOR))
    recs = _upgradeable(service)
    assert len(recs) >= 24
    sent: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement)

    def batch(part: list[tuple[int, int, str]]) -> int:
        sent.clear()
        event.listen(service.engine, "before_cursor_execute", count)
        try:
            requests = [(DecisionRequest(rec, rev, DecisionKind.UPGRADE), who) for rec, rev, _ in part]
            answers = decide_together(service.factory, service.notifications, service.clock(), requests)
        finally:
            event.remove(service.engine, "before_cursor_execute", count)
        assert not any(isinstance(a, Exception) for a in answers)
        return len(sent)

    few, more = batch(recs[:4]), batch(recs[4:24])
    assert few == more
    assert not [s for s in sent if "notification_events.dedupe_key" in s and s.lstrip().startswith("SELECT")]
    assert more <= {"postgresql": 10, "sqlite": 11}[backend]


def test_a_batchs_decisions_reach_the_recipients_of_their_tenants_key(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """The tenants' keys a batch reads with its recommendations route their announcements: a
    recipient restricted to one tenant's key hears of that tenant's decisions only."""
    service = scanned_service(make_service)
    by_tenant: dict[str, list[tuple[int, int, str]]] = {}
    for rec in _upgradeable(service):
        by_tenant.setdefault(rec[2], []).append(rec)
    (mine, mine_recs), (other, other_recs) = list(by_tenant.items())[:2]
    with service.factory() as session:
        key = session.execute(select(TenantRow.tenant_key).where(TenantRow.tenant_uuid == mine)).scalar_one()
    assert key
    recipients = {"keyed": {"channel": "console", "tenants": [key], "events": ["decision"]}}
    routes = routes_file(tmp_path, recipients, {"default": ["keyed"]})
    routed = install(service, notification_env(routes))
    who = _principal(routed, issue_token(routed, Role.OPERATOR))
    requests = [
        (DecisionRequest(rec, rev, DecisionKind.UPGRADE), who)
        for rec, rev, _ in mine_recs[:2] + other_recs[:2]
    ]
    answers = decide_together(routed.factory, routed.notifications, routed.clock(), requests)
    assert not any(isinstance(a, Exception) for a in answers)
    with routed.factory() as session:
        heard = session.execute(
            select(NotificationDeliveryRow.recipient_id, NotificationDeliveryRow.tenant_uuid).where(
                NotificationDeliveryRow.kind == "decision"
            )
        ).all()
    assert heard == [("keyed", mine)]  # one message for the tenant's two decisions, none for the other
    assert other != mine
