"""`verify` split over worker processes on SQLite and PostgreSQL: tampering in any range, at its
first, middle or last record, is found, and the first bad record of the whole chain is named
exactly as the single-process walk names it. Events of every shape go through `record`, so the
workers' bare-driver hashing is checked against the writer's.

Nothing is mocked: the workers are real processes reading the real database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pytest
from sqlalchemy import select, text

from powerx_governance.audit.chain import SCHEMA
from powerx_governance.audit.pages import HASH, SEQ, read_pages, row_hash
from powerx_governance.audit.service import AuditEvent, VerifyResult, record_many, verify
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.audit.verify import _start_worker, _worker_result, _worker_target
from powerx_governance.audit.walk import PAGE
from powerx_governance.db.session import transaction
from powerx_governance.service import GovernanceService
from tests.conftest import ServiceFactory

START: Final = datetime(2026, 11, 1, tzinfo=UTC)
COUNT: Final = 36  # three ranges of 12 with workers=3
SHAPES: Final[list[dict[str, Any]]] = [
    {"changes": {"before": None, "after": {"state": "ignored"}}, "meta": {}},
    {"meta": {"ünïcødé": "日本語 ✓ 😀", "quote": 'say "hi"\\n', "ctrl": "\x01\t\x1f", "bidi": "\u2028"}},
    {"meta": {"big": 2**70, "neg": -(2**63), "float": 0.1, "tiny": 5e-324, "exp": 1e20, "zero": -0.0}},
    {"meta": {"nested": {"b": [1, {"z": None, "a": [True, False]}], "a": {"é": 1, "e": 2, "E": 3}}}},
    {"meta": {"empty": {}, "list": [], "null": None, "long": "x" * 5000}},
    {
        "changes": {"before": {"v": "1.0.0"}, "after": {"v": "1.0.1"}},
        "meta": {"k" * 40: "a", "": "empty key"},
    },
]


def _event(i: int) -> AuditEvent:
    shape = SHAPES[i % len(SHAPES)]
    return AuditEvent(
        source="governance",
        operation="decision.upgrade",
        resource_type="recommendation",
        resource_id=str(i) if i % 5 else None,
        actor=f"admin-{i % 3}" if i % 7 else "Ωmega ådmin",
        tenant_uuid=None if i % 4 == 0 else f"tenant-{i % 2}",
        correlation_id=f"req-{i}" if i % 3 else None,
        changes=shape.get("changes", {}),
        meta=shape["meta"] | {"i": i},
        occurred_at=START + timedelta(seconds=i, microseconds=i),
        event_id=f"ev-{i:04d}",
    )


@pytest.fixture
def service(make_service: ServiceFactory) -> GovernanceService:
    made = make_service(POWERX_WORKER="0")
    for first in range(0, COUNT, 9):
        with transaction(made.factory) as session:
            record_many(session, [_event(i) for i in range(first, min(COUNT, first + 9))], made.clock())
    return made


def _check(service: GovernanceService, workers: int) -> VerifyResult:
    with service.factory() as session:
        return verify(session, workers=workers)


def _seqs(service: GovernanceService) -> list[int]:
    with service.factory() as session:
        return list(session.execute(select(AuditEventRow.seq).order_by(AuditEventRow.seq)).scalars())


def _sql(service: GovernanceService, statement: str, **params: Any) -> None:
    with service.engine.begin() as connection:
        connection.execute(text(statement), params)


def test_every_shape_hashes_alike_in_the_writer_and_the_bare_driver_walk(service: GovernanceService) -> None:
    with service.factory() as session:
        stored = session.execute(PAGE, {"after": 0, "upto": 10**9}).all()
        driver = session.connection().connection.dbapi_connection
        assert driver is not None
        cursor = driver.cursor()
        rows = [
            row for page in read_pages(cursor, session.get_bind().dialect.name, 7, 0, 10**9) for row in page
        ]
        cursor.close()
    assert [row[SEQ] for row in rows] == [row[SEQ] for row in stored]
    assert len(rows) == COUNT
    assert all(row_hash(row, SCHEMA) == row[HASH] for row in rows)
    for workers in (1, 3):
        result = _check(service, workers)
        assert (result.ok, result.checked) == (True, COUNT), result


Tamper = Callable[[GovernanceService, int], None]


def _modify(service: GovernanceService, seq: int) -> None:
    _sql(service, "UPDATE audit_events SET actor = 'mallory' WHERE seq = :s", s=seq)


def _modify_json(service: GovernanceService, seq: int) -> None:
    _sql(service, "UPDATE audit_events SET meta = :m WHERE seq = :s", m='{"i": -1}', s=seq)


def _delete(service: GovernanceService, seq: int) -> None:
    _sql(service, "DELETE FROM audit_events WHERE seq = :s", s=seq)


TAMPERING: Final[dict[str, tuple[Tamper, str]]] = {
    "modified": (_modify, "modified"),
    "modified-json": (_modify_json, "modified"),
    "deleted": (_delete, "deleted"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_tampering_in_any_range_names_the_first_bad_record_as_one_process_does(
    service: GovernanceService, kind: str
) -> None:
    """Positions: first, middle and last record of each of three ranges; then two at once."""
    seqs = _seqs(service)
    tamper, word = TAMPERING[kind]
    positions = [0, 5, 11, 12, 18, 23, 24, 30]  # the last record (35) is the head: tested apart
    left = list(seqs)
    for position in reversed(positions):  # newest first: each time a new first bad record
        tamper(service, seqs[position])
        if kind == "deleted":
            left.remove(seqs[position])
        parallel, single = _check(service, 3), _check(service, 1)
        assert parallel == single, (position, parallel, single)
        assert not parallel.ok
        assert word in (parallel.problem or ""), parallel
        named = seqs[position] if kind != "deleted" else next(seq for seq in left if seq > seqs[position])
        assert (parallel.first_bad_seq, parallel.checked) == (named, position), parallel


def test_a_rewritten_head_and_a_deleted_head_are_found_by_the_workers(service: GovernanceService) -> None:
    seqs = _seqs(service)
    _modify(service, seqs[-1])
    assert _check(service, 3) == _check(service, 1)
    assert _check(service, 3).first_bad_seq == seqs[-1]
    _delete(service, seqs[-1])
    parallel = _check(service, 3)
    assert parallel == _check(service, 1)
    assert (parallel.ok, parallel.first_bad_seq, parallel.checked) == (False, seqs[-1], COUNT - 1)
    assert "missing" in (parallel.problem or "")


def test_a_worker_process_checks_its_range_through_the_bare_driver(service: GovernanceService) -> None:
    """The worker itself answers (a failed worker's range would be walked again here, unseen)."""
    seqs = _seqs(service)
    with service.factory() as session:
        target = _worker_target(session)
    assert target is not None
    span, head = (seqs[11], seqs[23]), (seqs[-1], "")
    answer = _worker_result(_start_worker(target, span, 5, head))
    assert (answer.good, answer.checked, answer.last is not None) == (True, 12, True)
    assert answer.last is not None
    assert answer.last[0] == seqs[23]
    _modify(service, seqs[20])
    answer = _worker_result(_start_worker(target, span, 5, head))
    assert (answer.good, answer.checked) == (False, 8)
