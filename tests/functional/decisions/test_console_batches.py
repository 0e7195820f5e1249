"""The console deliveries of decisions committed together share one job on SQLite and PostgreSQL:
each card stored once, a transient failure retried for its own delivery only, a re-run a no-op."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from powerx_governance.auth.model import Role
from powerx_governance.db.session import transaction
from powerx_governance.decisions.group_commit import decide_together
from powerx_governance.decisions.model import DecisionKind
from powerx_governance.decisions.service import DecisionRequest
from powerx_governance.jobs import queue
from powerx_governance.jobs.local import LocalQueue
from powerx_governance.jobs.tables import JobRow
from powerx_governance.kernel import Task
from powerx_governance.notifications.channels.console import ConsoleChannel
from powerx_governance.notifications.channels.interface import (
    OutboundMessage,
    Receipt,
    TransientChannelError,
)
from powerx_governance.notifications.config import DEFAULT_TEMPLATES, ChannelType
from powerx_governance.notifications.deliver import mark_delivered, prepare_deliveries
from powerx_governance.notifications.jobs import BATCHES_MERGE, Notifier
from powerx_governance.notifications.service import DELIVER_BATCH_TASK, DELIVER_TASK
from powerx_governance.notifications.tables import ConsoleCardRow, NotificationDeliveryRow
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, ServiceFactory, issue_token, scanned_service
from tests.functional.decisions.test_group_commit import _principal, _upgradeable


class CountingConsole:
    """The real console channel, counting its sends per tenant; fails the first send to `failing`."""

    name = "console"

    def __init__(self, service: GovernanceService, failing: str | None = None) -> None:
        self._console = ConsoleChannel(service.factory, service.clock)
        self._failing = failing
        self.sent: Counter[str | None] = Counter()

    def send(self, message: OutboundMessage) -> Receipt:
        self.sent[message.tenant_uuid] += 1
        if message.tenant_uuid == self._failing and self.sent[message.tenant_uuid] == 1:
            raise TransientChannelError(self.name, "store busy", retry_after=30)
        return self._console.send(message)


def _decide_one_per_tenant(service: GovernanceService) -> dict[str, int]:
    """One decision on each tenant's first upgradeable recommendation, in one commit: {tenant: rec}."""
    who = _principal(service, issue_token(service, Role.OPERATOR))
    firsts: dict[str, tuple[int, int]] = {}
    for rec_id, revision, tenant in _upgradeable(service):
        firsts.setdefault(tenant, (rec_id, revision))
    assert len(firsts) >= 3
    requests = [(DecisionRequest(rec, rev, DecisionKind.UPGRADE), who) for rec, rev in firsts.values()]
    answers = decide_together(service.factory, service.notifications, service.clock(), requests)
    assert not any(isinstance(a, Exception) for a in answers)
    return {tenant: rec for tenant, (rec, _) in firsts.items()}


def _queued_deliveries(service: GovernanceService) -> list[tuple[str, dict[str, Any], str]]:
    with service.factory() as session:
        rows = session.execute(
            select(JobRow.task, JobRow.payload, JobRow.idempotency_key).where(
                JobRow.task.in_([DELIVER_TASK, DELIVER_BATCH_TASK]), JobRow.status == "queued"
            )
        ).all()
    return [(task, payload, key) for task, payload, key in rows]


def _decision_cards(service: GovernanceService) -> Counter[tuple[str | None, int | None]]:
    with service.factory() as session:
        rows = session.execute(
            select(ConsoleCardRow.tenant_uuid, ConsoleCardRow.recommendation_id).where(
                ConsoleCardRow.kind == "decision"
            )
        ).all()
    return Counter((tenant, rec) for tenant, rec in rows)


def _statuses(service: GovernanceService, ids: list[str]) -> dict[str, tuple[str, int]]:
    with service.factory() as session:
        rows = session.execute(
            select(
                NotificationDeliveryRow.id, NotificationDeliveryRow.status, NotificationDeliveryRow.attempts
            ).where(NotificationDeliveryRow.id.in_(ids))
        ).all()
    return {delivery: (status, attempts) for delivery, status, attempts in rows}


def test_one_commit_of_several_tenants_queues_one_job_and_stores_each_card_once(
    make_service: ServiceFactory,
) -> None:
    service = scanned_service(make_service)
    decided = _decide_one_per_tenant(service)
    ((task, payload, key),) = _queued_deliveries(service)
    assert task == DELIVER_BATCH_TASK
    assert len(payload["delivery_ids"]) == len(decided)  # a console delivery per tenant
    assert key == f"notify:batch:{payload['delivery_ids'][0]}"
    assert service.run_pending(limit=10_000) == 1
    assert _decision_cards(service) == Counter((tenant, rec) for tenant, rec in decided.items())
    assert set(_statuses(service, payload["delivery_ids"]).values()) == {("delivered", 1)}


def test_a_transient_failure_retries_only_its_own_delivery(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    decided = _decide_one_per_tenant(service)
    failing = sorted(decided)[1]
    ((_, payload, batch_key),) = _queued_deliveries(service)
    console = CountingConsole(service, failing=failing)
    Notifier(service, service.notifications, {ChannelType.CONSOLE: console}).deliver_batch(payload)

    statuses = _statuses(service, payload["delivery_ids"])
    assert Counter(statuses.values()) == Counter({("delivered", 1): len(decided) - 1, ("pending", 1): 1})
    (retried,) = [d for d, (status, _) in statuses.items() if status == "pending"]
    ((task, retry, key),) = [job for job in _queued_deliveries(service) if job[2] != batch_key]
    assert (task, retry, key) == (DELIVER_TASK, {"delivery_id": retried, "attempt": 2}, f"notify:{retried}:2")
    with service.factory() as session:
        run_after = session.execute(
            select(JobRow.run_after).where(JobRow.idempotency_key == key)
        ).scalar_one()
    clock = service.clock
    assert isinstance(clock, FakeClock)
    assert (
        run_after.replace(tzinfo=None) - clock().replace(tzinfo=None)
    ).total_seconds() >= 30  # Retry-After

    clock.advance(31)
    assert service.run_pending(limit=10_000) == 2  # the batch's own job now finds nothing to send
    assert set(_statuses(service, payload["delivery_ids"]).values()) == {("delivered", 1), ("delivered", 2)}
    assert _decision_cards(service) == Counter((tenant, rec) for tenant, rec in decided.items())
    assert console.sent == Counter(dict.fromkeys(decided, 1))  # the retry went through the service's own


def test_a_batch_job_run_twice_sends_nothing_twice(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    decided = _decide_one_per_tenant(service)
    ((_, payload, _),) = _queued_deliveries(service)
    console = CountingConsole(service)
    notifier = Notifier(service, service.notifications, {ChannelType.CONSOLE: console})
    notifier.deliver_batch(payload)
    notifier.deliver_batch(payload)  # a worker died after its work, before the job was marked done
    assert console.sent == Counter(dict.fromkeys(decided, 1))
    assert _decision_cards(service) == Counter((tenant, rec) for tenant, rec in decided.items())
    with transaction(service.factory) as session:
        pending = NotificationDeliveryRow.status == "pending"
        assert session.execute(select(func.count()).where(pending)).scalar_one() == 0


def test_a_card_that_fails_to_render_fails_only_its_own_delivery(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service = scanned_service(make_service)
    decided = _decide_one_per_tenant(service)
    failing = sorted(decided)[0]
    ((_, payload, _),) = _queued_deliveries(service)
    title = '  decision:\n    card_title: "'  # the decision card's title
    broken = f"{title}{{{{ tenant.no_such_field if tenant.uuid == '{failing}' else '' }}}}"
    templates = DEFAULT_TEMPLATES.read_text(encoding="utf-8")
    assert templates.count(title) == 1
    path = tmp_path / "templates.yaml"
    path.write_text(templates.replace(title, broken), encoding="utf-8")
    clock = service.clock
    assert isinstance(clock, FakeClock)
    worker = make_service(clock=clock, POWERX_WORKER="0", POWERX_NOTIFICATION_TEMPLATES=str(path))
    worker.tasks[DELIVER_BATCH_TASK](payload)  # the console's shared transaction fails on that card
    statuses = _statuses(service, payload["delivery_ids"])
    assert Counter(statuses.values()) == Counter({("delivered", 1): len(decided) - 1, ("dead", 1): 1})
    expected = Counter((tenant, rec) for tenant, rec in decided.items() if tenant != failing)
    assert _decision_cards(service) == expected


def test_successes_are_recorded_together_each_once_with_its_reference(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    _decide_one_per_tenant(service)
    ((_, payload, _),) = _queued_deliveries(service)
    now = service.clock()
    with transaction(service.factory) as session:
        prepared = prepare_deliveries(session, service.notifications, payload["delivery_ids"], 1, now)
    receipts = [(p, f"ref-{i % 2}") for i, p in enumerate(prepared)]
    assert len(receipts) >= 3
    with transaction(service.factory) as session:
        assert mark_delivered(session, receipts[:-1], now) == {p.delivery_id for p, _ in receipts[:-1]}
    with transaction(service.factory) as session:  # the others were recorded already: only the last now
        assert mark_delivered(session, receipts, now) == {receipts[-1][0].delivery_id}
    with service.factory() as session:
        rows = session.execute(
            select(
                NotificationDeliveryRow.id,
                NotificationDeliveryRow.status,
                NotificationDeliveryRow.attempts,
                NotificationDeliveryRow.provider_ref,
            ).where(NotificationDeliveryRow.id.in_(payload["delivery_ids"]))
        ).all()
    assert {row[0]: tuple(row[1:]) for row in rows} == {
        p.delivery_id: ("delivered", 1, ref) for p, ref in receipts
    }


def _decide_in_commits(service: GovernanceService, tenants: int = 5) -> dict[str, int]:
    """One decision on the first upgradeable recommendation of each of a few tenants, each in its
    own commit (a batch job each, as a burst of lone decisions leaves): {tenant: rec}."""
    who = _principal(service, issue_token(service, Role.OPERATOR))
    firsts: dict[str, tuple[int, int]] = {}
    for rec_id, revision, tenant in _upgradeable(service):
        firsts.setdefault(tenant, (rec_id, revision))
    assert len(firsts) >= tenants
    firsts = dict(list(firsts.items())[:tenants])
    for rec, rev in firsts.values():
        request = (DecisionRequest(rec, rev, DecisionKind.UPGRADE), who)
        (answer,) = decide_together(service.factory, service.notifications, service.clock(), [request])
        assert not isinstance(answer, Exception)
    return {tenant: rec for tenant, (rec, _) in firsts.items()}


class CountedTask:
    """A task as installed, counting its runs and the payloads it got; fails its first `failing` runs."""

    def __init__(self, task: Task, failing: int = 0) -> None:
        self.task, self.failing, self.payloads = task, failing, list[dict[str, Any]]()

    def __call__(self, payload: dict[str, Any]) -> None:
        self.payloads.append(payload)
        if len(self.payloads) <= self.failing:
            raise RuntimeError("store unreachable")
        self.task(payload)


def _counting_batches(service: GovernanceService, failing: int = 0) -> CountedTask:
    """The service's worker runs its batch task through a counter (the same task, counted)."""
    local = service.queue
    assert isinstance(local, LocalQueue)
    counted = CountedTask(local.handlers.tasks[DELIVER_BATCH_TASK], failing)
    local.handlers = replace(local.handlers, tasks={**local.handlers.tasks, DELIVER_BATCH_TASK: counted})
    return counted


def test_batch_jobs_waiting_together_run_as_one(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    decided = _decide_in_commits(service)
    queued = _queued_deliveries(service)
    assert [task for task, _, _ in queued] == [DELIVER_BATCH_TASK] * len(decided)  # a job per commit
    counted = _counting_batches(service)
    assert service.run_pending(limit=10_000) == len(decided)  # every job ran, done
    (payload,) = counted.payloads  # in one run of the task
    assert payload == {"delivery_ids": [i for _, job, _ in queued for i in job["delivery_ids"]]}
    assert _decision_cards(service) == Counter((tenant, rec) for tenant, rec in decided.items())
    assert set(_statuses(service, payload["delivery_ids"]).values()) == {("delivered", 1)}
    with service.factory() as session:
        ours = JobRow.idempotency_key.in_([key for _, _, key in queued])
        jobs = session.execute(select(JobRow.status, JobRow.attempts).where(ours)).all()
    assert Counter(jobs) == Counter({("done", 1): len(decided)})


def test_a_merged_run_that_fails_retries_each_job_and_sends_each_card_once(
    make_service: ServiceFactory,
) -> None:
    service = scanned_service(make_service)
    decided = _decide_in_commits(service)
    ours = JobRow.idempotency_key.in_([key for _, _, key in _queued_deliveries(service)])
    counted = _counting_batches(service, failing=1)
    assert service.run_pending(limit=10_000) == len(decided)  # they ran together, and failed
    with service.factory() as session:
        jobs = session.execute(select(JobRow.status, JobRow.attempts, JobRow.last_error).where(ours)).all()
    assert Counter(jobs) == Counter({("queued", 1, "RuntimeError: store unreachable"): len(decided)})
    assert not _decision_cards(service)
    clock = service.clock
    assert isinstance(clock, FakeClock)
    clock.advance(600)  # past every job's backoff
    assert service.run_pending(limit=10_000) == len(decided)
    assert len(counted.payloads) == 2  # the retries ran together again
    assert _decision_cards(service) == Counter((tenant, rec) for tenant, rec in decided.items())


def test_jobs_run_together_weigh_at_most_the_merge_limit(make_service: ServiceFactory) -> None:
    service = make_service(clock=FakeClock(), POWERX_WORKER="0")
    now = service.clock()
    sizes = [2, 1, 1, 2, 1]  # deliveries per job, oldest first
    with transaction(service.factory) as session:
        for n, size in enumerate(sizes):
            payload = {"delivery_ids": [f"d{n}-{i}" for i in range(size)]}
            queue.enqueue(session, DELIVER_BATCH_TASK, payload, key=f"batch-{n}", now=now)
    merge = replace(BATCHES_MERGE, most=4)
    with transaction(service.factory) as session:
        first = queue.claim(session, "w1", now, frozenset({DELIVER_BATCH_TASK}))
        assert first is not None
        assert first.payload == {"delivery_ids": ["d0-0", "d0-1"]}
        alike = queue.claim_alike(session, "w1", now, first, merge)
    # 2 + 1 + 1 fits in 4; the next (2) does not, and the one after it waits its turn too
    assert [job.payload["delivery_ids"] for job in alike] == [["d1-0"], ["d2-0"]]
    with transaction(service.factory) as session:
        rest = queue.claim(session, "w2", now, frozenset({DELIVER_BATCH_TASK}))
        assert rest is not None
        assert rest.payload == {"delivery_ids": ["d3-0", "d3-1"]}
        assert queue.claim_alike(session, "w2", now, rest, replace(merge, most=2)) == []  # full alone
        (last,) = queue.claim_alike(session, "w2", now, rest, merge)
        assert last.payload == {"delivery_ids": ["d4-0"]}
        assert queue.claim(session, "w2", now, frozenset({DELIVER_BATCH_TASK})) is None


def test_a_job_another_worker_took_is_not_run_again_with_others(make_service: ServiceFactory) -> None:
    service = make_service(clock=FakeClock(), POWERX_WORKER="0")
    now = service.clock()
    with transaction(service.factory) as session:
        for n in range(3):
            payload = {"delivery_ids": [f"d{n}"]}
            queue.enqueue(session, DELIVER_BATCH_TASK, payload, key=f"batch-{n}", now=now)
    with transaction(service.factory) as session:
        mine = queue.claim(session, "w1", now, frozenset({DELIVER_BATCH_TASK}))
    with transaction(service.factory) as session:
        theirs = queue.claim(session, "w2", now, frozenset({DELIVER_BATCH_TASK}))
    assert mine is not None
    assert theirs is not None
    with transaction(service.factory) as session:
        alike = queue.claim_alike(session, "w1", now, mine, BATCHES_MERGE)
    assert [job.payload for job in alike] == [{"delivery_ids": ["d2"]}]
    with service.factory() as session:
        owners = session.execute(select(JobRow.idempotency_key, JobRow.locked_by, JobRow.attempts)).all()
    assert sorted(owners) == [("batch-0", "w1", 1), ("batch-1", "w2", 1), ("batch-2", "w1", 1)]
