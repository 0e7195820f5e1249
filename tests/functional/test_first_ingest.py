"""A first ingest streamed in tenant batches stores exactly what the fleet-wide full scan stores.

The same synthetic fleet goes into two empty stores of one backend, at the same (fake) time and with
the same sequence of random ids: once through the batched first ingest (small batches, so the fleet
spans many), once through the fleet-wide path. Every row of every table the scan writes must match.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from bench.synthetic import SyntheticSet, generate
from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from powerx_governance.db import ordered_ids
from powerx_governance.db.bulk import CopiedApart
from powerx_governance.db.session import (
    indexes_built_after,
    make_engine,
    postgresql_foreign_keys_checked_after,
    session_factory,
    sqlite_page_cache,
    sqlite_url,
    transaction,
)
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.notifications import announce
from powerx_governance.notifications.model import EventKind
from powerx_governance.notifications.tables import NotificationEventRow
from powerx_governance.scans import first_ingest
from powerx_governance.scans.model import ScanKind, ScanStatus, ScanTrigger
from powerx_governance.scans.request import SCAN_TASK
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import Backend, FakeClock, built_services, postgres_getter, provisioned_database

WRITTEN = (
    "tenants",
    "installations",
    "verdicts",
    "recommendations",
    "recommendation_revisions",
    "tenant_findings",
    "notification_events",
    "notification_deliveries",
    "notification_entries",
    "jobs",
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSet:
    out = tmp_path_factory.mktemp("fleet")
    return generate(
        out, tenants=45, installations_per_tenant=20, plugins=40, releases_per_plugin=8, advisories=60, seed=5
    )


@contextmanager
def _same_random_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """uuid4 and the time-ordered ids from a seeded generator and a still clock: both runs draw the
    same ids in the same order."""
    draws = random.Random(11)  # noqa: S311 - reproducible ids for a comparison, nothing secret
    with monkeypatch.context() as patched:
        patched.setattr(uuid, "uuid4", lambda: uuid.UUID(int=draws.getrandbits(128), version=4))
        patched.setattr(ordered_ids, "_entropy", draws.randbytes)
        patched.setattr(ordered_ids, "_milliseconds", lambda: 1_764_000_000_000)
        yield


# Notifications by what they are, their random ids left out: each entry with its event's dedupe key
# and its delivery's recipient and tenant, each delivery with the events it carries.
ANNOUNCED = {
    "entries": """SELECT e.dedupe_key, n.recipient_id, n.tenant_uuid, n.mode, n.due_at, d.recipient_id,
        d.tenant_uuid FROM notification_entries n JOIN notification_events e ON e.id = n.event_id
        LEFT JOIN notification_deliveries d ON d.id = n.delivery_id ORDER BY 1, 2""",
    "events": """SELECT dedupe_key, kind, tenant_uuid, recommendation_id, change, risk_level, route, data,
        triggered_at, created_at FROM notification_events ORDER BY 1""",
    "deliveries": """SELECT recipient_id, tenant_uuid, kind, channel, status, attempts, next_attempt_at,
        triggered_at, created_at FROM notification_deliveries ORDER BY 1, 2, 3""",
    "delivery jobs": "SELECT task, status, attempts, run_after, payload FROM jobs ORDER BY id",
}
_DELIVERY = "SELECT id, recipient_id, tenant_uuid, kind FROM notification_deliveries"


def _announced(service: GovernanceService) -> dict[str, list[tuple[Any, ...]]]:
    with service.factory.kw["bind"].connect() as connection:
        found = {name: [tuple(r) for r in connection.execute(text(q))] for name, q in ANNOUNCED.items()}
        deliveries = {r[0]: tuple(r[1:]) for r in connection.execute(text(_DELIVERY))}
    found["delivery jobs"] = _jobs_by_delivery(found["delivery jobs"], deliveries)
    return found


def _jobs_by_delivery(
    jobs: list[tuple[Any, ...]], deliveries: dict[str, tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """Each job once per delivery it sends (by the delivery's recipient, tenant and kind, its random id
    left out), other jobs as they are: how deliveries share a job (`notify_deliver_batch`, per
    `record_events` call) is not what is compared, that each is queued once is."""
    found: list[tuple[Any, ...]] = []
    for task, status, attempts, run_after, payload in jobs:
        data = json.loads(payload) if isinstance(payload, str) else payload
        ids = data.get("delivery_ids") or ([data["delivery_id"]] if "delivery_id" in data else [])
        sent = [(task, status, attempts, run_after, *deliveries[i]) for i in ids]
        found += sent or [(task, status, attempts, run_after)]
    return sorted(found, key=repr)


def _rows(service: GovernanceService) -> dict[str, list[tuple[Any, ...]]]:
    engine = service.factory.kw["bind"]
    found = {}
    with engine.connect() as connection:
        for table in WRITTEN:
            key = inspect(connection).get_pk_constraint(table)["constrained_columns"]
            order = ", ".join(f'"{c}"' for c in key)
            query = text(f'SELECT * FROM "{table}" ORDER BY {order}')  # noqa: S608 - our own table names
            found[table] = [tuple(row) for row in connection.execute(query)]
    return found | _announced(service)


def _first_ingest(
    backend: Backend,
    directory: Path,
    request: pytest.FixtureRequest,
    fleet: SyntheticSet,
    before: Callable[[GovernanceService], None] = lambda _: None,
) -> tuple[dict[str, list[tuple[Any, ...]]], ScanRow]:
    """The fleet's first ingest into a new store (`before`: what the store holds first)."""
    directory.mkdir()
    with (
        provisioned_database(backend, directory, postgres_getter(request)) as url,
        built_services(url, directory) as build,
    ):
        service = build(
            clock=FakeClock(),
            POWERX_WORKER="0",
            POWERX_TENANT_SOURCE=str(fleet.manifests),
            POWERX_CATALOG_SOURCE=str(fleet.catalog),
        )
        before(service)
        scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
        service.run_pending(tasks=frozenset({SCAN_TASK}))
        with service.factory() as session:
            scan = session.get_one(ScanRow, scan_id)
            session.expunge(scan)
        return _rows(service), scan


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ran: list[str] = []
    real: Callable[..., Any] = first_ingest.run_first_ingest

    def counted(*args: Any, **kwargs: Any) -> Any:
        ran.append("first ingest")
        return real(*args, **kwargs)

    monkeypatch.setattr(first_ingest, "run_first_ingest", counted)
    return ran


def test_a_batched_first_ingest_stores_every_row_the_fleet_wide_scan_stores(
    backend: Backend,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    fleet: SyntheticSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = _counting(monkeypatch)
    monkeypatch.setattr(announce, "_ANNOUNCE_EVERY", 50)  # both runs announce in the same pieces
    monkeypatch.setattr(first_ingest, "BATCH", 7)  # 45 tenants: seven batches, the last one short
    monkeypatch.setattr(first_ingest, "WRITE_EVERY", 40)  # and the findings written in many chunks
    with _same_random_ids(monkeypatch):
        batched, batched_scan = _first_ingest(backend, tmp_path / "batched", request, fleet)
    assert ran == ["first ingest"]

    monkeypatch.setattr(first_ingest, "is_first_ingest", lambda *_: False)
    with _same_random_ids(monkeypatch):
        whole, whole_scan = _first_ingest(backend, tmp_path / "whole", request, fleet)
    assert ran == ["first ingest"]  # the fleet-wide path this time

    assert len(whole["recommendations"]) > 100
    assert len(whole["notification_events"]) > 100
    for table in WRITTEN:
        assert batched[table] == whole[table], table
    assert batched_scan.status == whole_scan.status == ScanStatus.SUCCEEDED.value
    for column in ("findings", "changes", "installations", "tenants_total", "tenants_scanned", "errors"):
        assert getattr(batched_scan, column) == getattr(whole_scan, column), column


def test_findings_announced_in_pieces_are_announced_as_at_once(
    backend: Backend,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    fleet: SyntheticSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(announce, "_ANNOUNCE_EVERY", 1_000_000)
    at_once = _first_ingest(backend, tmp_path / "at-once", request, fleet)[0]
    monkeypatch.setattr(announce, "_ANNOUNCE_EVERY", 9)
    in_pieces = _first_ingest(backend, tmp_path / "in-pieces", request, fleet)[0]
    assert len(at_once["events"]) > 100
    for name in ANNOUNCED:
        assert in_pieces[name] == at_once[name], name


@contextmanager
def _dedupe_lookups() -> Iterator[list[str]]:
    """The statements (of any engine) that look dedupe keys up among stored events, while it runs."""
    found: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("SELECT notification_events.dedupe_key"):
            found.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        yield found
    finally:
        event.remove(Engine, "before_cursor_execute", seen)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # PostgreSQL orders keys by its collation
def test_findings_announced_in_pieces_are_looked_up_once_for_all_pieces(
    backend: Backend,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    fleet: SyntheticSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decimal ids interleave as text (`finding:1:opened` sorts after `finding:100:opened`): the range
    of a later piece's keys takes in keys earlier pieces wrote, so each piece looked its keys up."""
    monkeypatch.setattr(announce, "_ANNOUNCE_EVERY", 9)
    with _dedupe_lookups() as lookups:
        announced = _first_ingest(backend, tmp_path / "store", request, fleet)[0]
    assert len(announced["events"]) > 100
    assert len(lookups) == 1  # the range of all the keys, before the first piece


HELD = "finding:20:opened"  # say, left by a tenant deleted since (its recommendations with it)


def _holding_an_event(service: GovernanceService) -> None:
    with transaction(service.factory) as session:
        session.add(
            NotificationEventRow(
                id=str(uuid.uuid4()),
                dedupe_key=HELD,
                kind=EventKind.FINDING.value,
                risk_level="high",
                data={},
                triggered_at=FakeClock()(),
                created_at=FakeClock()(),
            )
        )


def test_a_first_ingest_in_pieces_never_announces_a_key_the_store_holds(
    backend: Backend,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    fleet: SyntheticSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(announce, "_ANNOUNCE_EVERY", 9)
    clean = _first_ingest(backend, tmp_path / "clean", request, fleet)[0]["events"]
    held = _first_ingest(backend, tmp_path / "held", request, fleet, _holding_an_event)[0]["events"]
    assert [e for e in held if e[0] != HELD] == [e for e in clean if e[0] != HELD]
    assert [e[3] for e in held if e[0] == HELD] == [None]  # the one held, no recommendation's
    assert [e[3] for e in clean if e[0] == HELD] == [20]


def test_a_scan_of_a_store_holding_tenants_is_not_a_first_ingest(
    backend: Backend,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    fleet: SyntheticSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran = _counting(monkeypatch)
    directory = tmp_path / "store"
    directory.mkdir()
    with (
        provisioned_database(backend, directory, postgres_getter(request)) as url,
        built_services(url, directory) as build,
    ):
        service = build(
            POWERX_WORKER="0",
            POWERX_TENANT_SOURCE=str(fleet.manifests),
            POWERX_CATALOG_SOURCE=str(fleet.catalog),
        )
        for _ in range(2):
            service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
            service.run_pending(tasks=frozenset({SCAN_TASK}))
    assert ran == ["first ingest"]  # the second scan diffs against what the first stored


def test_the_larger_sqlite_page_cache_lasts_for_the_block_only(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "cache.db"))
    try:
        with transaction(session_factory(engine)) as session:
            usual = session.execute(text("PRAGMA cache_size")).scalar_one()
            with sqlite_page_cache(session, 64):
                assert session.execute(text("PRAGMA cache_size")).scalar_one() == -64 * 1024
            assert session.execute(text("PRAGMA cache_size")).scalar_one() == usual
    finally:
        engine.dispose()


def test_a_failure_inside_the_larger_page_cache_is_the_error_raised_and_the_cache_comes_back(
    tmp_path: Path,
) -> None:
    engine = make_engine(sqlite_url(tmp_path / "cache.db"), pool_size=1, max_overflow=0)  # one connection
    factory = session_factory(engine)

    def failing_ingest() -> None:
        with transaction(factory) as session, sqlite_page_cache(session, 64):
            session.execute(text("SELECT * FROM no_such_table"))

    try:
        with transaction(factory) as session:
            usual = session.execute(text("PRAGMA cache_size")).scalar_one()
        with pytest.raises(OperationalError, match="no such table: no_such_table"):
            failing_ingest()
        with transaction(factory) as session:
            assert session.execute(text("PRAGMA cache_size")).scalar_one() == usual
    finally:
        engine.dispose()


def _indexes(session: Any) -> list[tuple[str, str]]:
    found = session.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"))
    return [tuple(row) for row in found]


def _indexed_table(factory: Any) -> list[tuple[str, str]]:
    with transaction(factory) as session:
        session.execute(
            text("CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT UNIQUE, kind TEXT, n INT)")
        )
        session.execute(text("CREATE INDEX ix_items_kind ON items (kind, n)"))
        session.execute(text("CREATE UNIQUE INDEX ix_items_n ON items (n)"))
        session.execute(text("CREATE TABLE others (id INTEGER PRIMARY KEY, kind TEXT)"))
        session.execute(text("CREATE INDEX ix_others_kind ON others (kind)"))
        return _indexes(session)


def test_the_secondary_indexes_are_built_after_the_block_that_fills_their_table(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "indexes.db"))
    factory = session_factory(engine)
    try:
        before = _indexes_and_fill(factory)
        with transaction(factory) as session:
            assert _indexes(session) == before
            assert session.execute(text("SELECT count(*) FROM items WHERE kind = 'b'")).scalar_one() == 50
    finally:
        engine.dispose()


def _indexes_and_fill(factory: Any) -> list[tuple[str, str]]:
    before = _indexed_table(factory)
    with transaction(factory) as session, indexes_built_after(session, ["items"]):
        during = {name for name, _ in _indexes(session)}
        assert during == {name for name, _ in before} - {"ix_items_kind"}  # unique and others' stay
        session.execute(
            text("INSERT INTO items (code, kind, n) VALUES (:code, :kind, :n)"),
            [{"code": f"c{n}", "kind": "ab"[n % 2], "n": n} for n in range(100)],
        )
    return before


def test_a_failure_inside_the_block_leaves_the_indexes_as_they_were(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "indexes.db"))
    factory = session_factory(engine)
    try:
        before = _indexed_table(factory)
        with (
            pytest.raises(OperationalError, match="no such table: no_such_table"),
            transaction(factory) as session,
            indexes_built_after(session, ["items"]),
        ):
            session.execute(text("SELECT * FROM no_such_table"))
        with transaction(factory) as session:
            assert _indexes(session) == before
    finally:
        engine.dispose()


def _schema(service: GovernanceService) -> list[tuple[Any, ...]]:
    """Indexes (SQLite), or constraints and indexes (PostgreSQL, the current schema's)."""
    with service.factory() as session:
        if session.get_bind().dialect.name == "sqlite":
            return _indexes(session)
        constraints = session.execute(
            text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2"
            )
        )
        indexes = session.execute(
            text(
                "SELECT indexname, replace(indexdef, current_schema() || '.', '') FROM pg_indexes"
                " WHERE schemaname = current_schema() ORDER BY 1"
            )
        )
        return [tuple(row) for row in constraints] + [tuple(row) for row in indexes]


def test_a_first_ingest_leaves_the_schema_a_migrated_store_has(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest, fleet: SyntheticSet
) -> None:
    found = {}
    for name in ("migrated", "ingested"):
        directory = tmp_path / name
        directory.mkdir()
        with (
            provisioned_database(backend, directory, postgres_getter(request)) as url,
            built_services(url, directory) as build,
        ):
            service = build(
                POWERX_WORKER="0",
                POWERX_TENANT_SOURCE=str(fleet.manifests),
                POWERX_CATALOG_SOURCE=str(fleet.catalog),
            )
            if name == "ingested":
                service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
                service.run_pending(tasks=frozenset({SCAN_TASK}))
                assert len(_rows(service)["notification_entries"]) > 100
            found[name] = _schema(service)
    assert any("FOREIGN KEY" in str(row) for row in found["migrated"]) or backend == "sqlite"
    assert found["ingested"] == found["migrated"]


def _parent_and_child(factory: Any) -> list[tuple[Any, ...]]:
    with transaction(factory) as session:
        session.execute(text("CREATE TABLE parents (id INT PRIMARY KEY)"))
        session.execute(
            text(
                "CREATE TABLE children (id INT PRIMARY KEY, parent INT REFERENCES parents ON DELETE CASCADE)"
            )
        )
        session.execute(text("INSERT INTO parents VALUES (1), (2)"))
    with transaction(factory) as session:
        return _foreign_keys(session)


def _foreign_keys(session: Any) -> list[tuple[Any, ...]]:
    found = session.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
        )
    )
    return [tuple(row) for row in found]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_foreign_keys_checked_after_the_block_check_every_row_it_wrote(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with provisioned_database(backend, tmp_path, postgres_getter(request)) as url:
        engine = make_engine(url)
        factory = session_factory(engine)
        try:
            before = _parent_and_child(factory)
            with transaction(factory) as session:
                with postgresql_foreign_keys_checked_after(session, ["parents", "children"]):
                    assert _foreign_keys(session) == []
                    session.execute(text("INSERT INTO children VALUES (1, 1), (2, 2), (3, 1)"))
                assert _foreign_keys(session) == before
            with (
                pytest.raises(IntegrityError, match="children"),
                transaction(factory) as session,
                postgresql_foreign_keys_checked_after(session, ["parents", "children"]),
            ):
                session.execute(text("INSERT INTO children VALUES (4, 3)"))  # no parent 3
            with transaction(factory) as session:
                assert _foreign_keys(session) == before
                assert session.execute(text("SELECT count(*) FROM children")).scalar_one() == 3
        finally:
            engine.dispose()


def _inventory(session: Any) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    for table, key in (("tenants", "tenant_uuid"), ("installations", "tenant_uuid, plugin_id")):
        found[table] = [tuple(r) for r in session.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))]  # noqa: S608
    return found


def test_new_manifests_are_stored_as_upserted_ones_even_when_a_tenant_comes_again(
    make_service: Callable[..., GovernanceService], fleet: SyntheticSet
) -> None:
    """The first ingest's inventory writer stores the rows `upsert_manifests` stores: installations as
    driver rows (PostgreSQL, given a `CopiedApart`: COPY text lines sent by its thread while the caller
    goes on), and a batch naming a tenant stored already (by an earlier batch) as an upsert."""
    service = make_service(POWERX_WORKER="0", POWERX_TENANT_SOURCE=str(fleet.manifests))
    manifests = [json.loads(line) for line in fleet.manifests.read_text().splitlines()[:12]]
    first = [msgspec.convert(m, TenantManifest) for m in manifests[:8]]
    again = msgspec.structs.replace(first[2], plugins=first[2].plugins[1:])  # one plugin fewer
    second = [*(msgspec.convert(m, TenantManifest) for m in manifests[8:]), again]
    found = {}
    apart = CopiedApart()
    writers: dict[str, Callable[[Session, list[TenantManifest], datetime], object]] = {
        "upsert": inventory_store.upsert_manifests,
        "insert": inventory_store.insert_new_manifests,
        "insert apart": partial(inventory_store.insert_new_manifests, apart=apart),
    }
    for name, write in writers.items():
        with service.factory() as session, session.begin():
            write(session, first, FakeClock()())
            write(session, second, FakeClock()())  # waits for the first's copy before it reads
            apart.wait()
            found[name] = _inventory(session)
            session.rollback()
    assert len(found["upsert"]["installations"]) > 100
    assert found["insert"] == found["upsert"]
    assert found["insert apart"] == found["upsert"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_first_ingest_leaves_the_tables_it_filled_analysed(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest, fleet: SyntheticSet
) -> None:
    with (
        provisioned_database(backend, tmp_path, postgres_getter(request)) as url,
        built_services(url, tmp_path) as build,
    ):
        service = build(
            POWERX_WORKER="0",
            POWERX_TENANT_SOURCE=str(fleet.manifests),
            POWERX_CATALOG_SOURCE=str(fleet.catalog),
        )
        service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
        service.run_pending(tasks=frozenset({SCAN_TASK}))
        with service.factory() as session:
            analysed: dict[str, bool] = dict(
                session.execute(
                    text(
                        "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables"
                        " WHERE schemaname = current_schema()"
                    )
                ).all()
            )
            counted = session.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = 'recommendations'::regclass")
            ).scalar_one()
            stored = session.execute(text("SELECT count(*) FROM recommendations")).scalar_one()
    assert {table: analysed.get(table) for table in first_ingest.ANALYSED} == dict.fromkeys(
        first_ingest.ANALYSED, True
    )
    assert stored > 100
    assert counted == stored  # the planner knows the table's size (-1: never analysed)
