"""`bulk_update` writes through the driver (SQLite `executemany`, PostgreSQL `COPY` + `UPDATE ... FROM`)
exactly what SQLAlchemy's executemany `UPDATE` (what it used before) writes, on both stores: every
column as stored and as read back, the rows not named left alone, chunks included."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Column, ColumnElement, LargeBinary, Table, Text, bindparam, cast, func, select, update
from sqlalchemy.orm import DeclarativeBase, Session

from powerx_governance.db import bulk
from powerx_governance.db.bulk import bulk_insert, bulk_update
from powerx_governance.db.session import transaction
from powerx_governance.recommendations.tables import RecommendationRow, TenantFindingsRow, VerdictRow
from powerx_governance.service import GovernanceService
from tests.conftest import NOW, ServiceFactory

COUNT = 12
LATER = NOW + timedelta(days=3, microseconds=5)


def _recommendation(i: int) -> dict[str, Any]:
    return {
        "id": i + 1,
        "tenant_uuid": f"t-{i:03d}",
        "plugin_id": "com.powerx.plugins.crm",
        "revision": 1,
        "state": "open",
        "fingerprint": f"{i:064d}",
        "verdict": "v" * 64,
        "current_version": "1.0.0",
        "target_version": "1.1.0",
        "latest_version": "1.1.0",
        "risk_level": "low",
        "priority": 10,
        "action": "schedule",
        "critical_patch": False,
        "sla_deadline": NOW,
        "tenant_facts": {"tenant_key": f"k-{i}"},
        "first_seen_at": NOW,
        "updated_at": NOW,
        "resolved_at": None,
        "scan_id": None,
        "policy_version": 1,
        "report_digest": "d" * 64,
    }


def _changed_recommendation(i: int) -> dict[str, Any]:
    """What a delta writes over a recommendation: every column it sets, of every kind of value."""
    return {
        "id": i + 1,
        "revision": 2,
        "state": "decided" if i % 3 == 0 else "open",
        "resolved_at": None if i % 2 else LATER,
        "fingerprint": f"{i + 1:064d}",
        "verdict": "v" * 64,
        "current_version": "1.0.0",
        "target_version": None if i % 4 == 0 else "2.0.0",
        "latest_version": "2.0.0",
        "risk_level": "critical",
        "priority": 97,
        "action": "upgrade_now",
        "critical_patch": i % 2 == 0,
        "sla_deadline": None if i % 5 == 0 else LATER,
        "tenant_facts": {
            "tenant_key": f"k-{i}",
            "core_version": "1.24.0",
            "channel": "stable",
            "compatibility": ["needs core ≥ 1.24", 'quoted "x"'],
            "co_upgrades": [],
            "manifest_stale": i % 2 == 1,
            "manifest_as_of": None,
        },
        "updated_at": LATER,
        "scan_id": f"scan-{i}",
        "policy_version": 2,
        "report_digest": f"{i:x}" * 64 if i < 10 else "e" * 64,
    }


def _sums(i: int, step: int) -> dict[str, Any]:
    return {
        "tenant_uuid": f"t-{i:03d}",
        "findings": i + step,
        "fingerprints": f"{i * step:064x}",
        "report_sum": bytes([(i + step) % 256]) * 512,
        "by_risk": ({"critical": step, "low": [i]} if i % 5 == 2 else {"critical": step, "low": i})
        if step
        else {"low": i},
        # documents repeat across rows: True and 1 (False and 0) are equal keys, not the same JSON
        "by_action": {"upgrade_now": step, "schedule": i % 2 == 1 if i % 4 < 2 else i % 2} if step else {},
    }


def _seed(service: GovernanceService) -> None:
    with transaction(service.factory) as session:
        bulk_insert(session, VerdictRow, [{"fingerprint": "v" * 64, "created_at": NOW, "document": {}}])
        bulk_insert(session, RecommendationRow, [_recommendation(i) for i in range(COUNT)])
        bulk_insert(session, TenantFindingsRow, [_sums(i, 0) for i in range(COUNT)])


def _reference_update(
    session: Session, model: type[DeclarativeBase], rows: list[dict[str, Any]], key: str
) -> None:
    """SQLAlchemy's own executemany `UPDATE`: `bulk_update` as it was written before."""
    table = model.__table__
    assert isinstance(table, Table)
    columns = [c for c in rows[0] if c != key]
    stmt = (
        update(table)
        .where(table.c[key] == bindparam(f"match_{key}"))
        .values({c: bindparam(f"set_{c}") for c in columns})
    )
    session.connection().execute(
        stmt, [{f"match_{key}": r[key], **{f"set_{c}": r[c] for c in columns}} for r in rows]
    )


def _shown(column: Column[Any], *, postgresql: bool) -> ColumnElement[Any]:
    if not isinstance(column.type, LargeBinary):
        return cast(column, Text)
    return func.encode(column, "hex") if postgresql else func.hex(column)


def _as_stored(session: Session, model: type[DeclarativeBase]) -> list[tuple[Any, ...]]:
    """Every row, every column as the database holds it (as text; bytes as hex) and as read back."""
    table = model.__table__
    assert isinstance(table, Table)
    postgresql = session.get_bind().dialect.name == "postgresql"
    shown = [_shown(c, postgresql=postgresql) for c in table.c]
    order = list(table.primary_key)
    stored = [tuple(row) for row in session.execute(select(*shown).order_by(*order))]
    read = [tuple(row) for row in session.execute(select(*table.c).order_by(*order))]
    return [*stored, *read]


def _written(service: GovernanceService, write: Any) -> list[list[tuple[Any, ...]]]:
    """What `write` leaves in both tables, rolled back afterwards (the next writer starts alike)."""
    changed = [_changed_recommendation(i) for i in range(COUNT) if i != 4]  # one left alone
    sums = [_sums(i, 3) for i in range(COUNT) if i != 7]
    with service.factory() as session:
        write(session, RecommendationRow, changed, "id")
        write(session, TenantFindingsRow, sums, "tenant_uuid")
        found = [_as_stored(session, RecommendationRow), _as_stored(session, TenantFindingsRow)]
        session.rollback()
    return found


@pytest.mark.parametrize(
    ("chunk", "sample"), [(bulk.CHUNK, bulk._SAMPLE), (5, bulk._SAMPLE), (bulk.CHUNK, 2)]
)
def test_bulk_update_through_the_driver_writes_what_sqlalchemy_writes(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch, chunk: int, sample: int
) -> None:
    """Sample 2: a documents column whose keys stop repeating is given up on after two documents."""
    service = make_service(POWERX_WORKER="0")
    _seed(service)
    monkeypatch.setattr(bulk, "CHUNK", chunk)
    monkeypatch.setattr(bulk, "_SAMPLE", sample)
    before = _written(service, lambda *_: None)
    reference = _written(service, _reference_update)
    driver = _written(service, lambda session, model, rows, key: bulk_update(session, model, rows, key=key))
    assert driver == reference
    assert driver != before
    unchanged = [row for row in driver[0] if row[0] in ("5", 5)]  # id 5 (i = 4) was not named
    assert unchanged == [row for row in before[0] if row[0] in ("5", 5)]


@pytest.mark.parametrize("sample", [2, 4, 256])
def test_documents_converted_alike_whether_their_keys_repeat_or_not(
    monkeypatch: pytest.MonkeyPatch, sample: int
) -> None:
    """Flat documents all distinct (given up on after `sample`), repeating (kept), mixed with nested
    ones and with True/1 twins: each converted exactly as converting every one alone."""
    monkeypatch.setattr(bulk, "_SAMPLE", sample)
    distinct = tuple({"tenant_key": f"k-{i}", "stale": i % 2 == 0} for i in range(40))
    repeating = tuple({"critical": i % 2, "low": True if i % 3 else 1} for i in range(40))
    mixed = tuple({"a": [i]} if i % 7 == 0 else {"a": i % 3 == 0, "b": None} for i in range(1, 40))
    for column in (distinct, repeating, mixed, distinct[:1], ()):
        assert bulk._converted_documents(column, bulk._json) == [bulk._json(d) for d in column]
