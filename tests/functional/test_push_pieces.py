"""On PostgreSQL a write sends its rewrites in pieces, each by a thread of its own while the next is
planned (`_Rewrites.send`): what it stores is what the one-piece write stores, and a piece that
fails fails the scan with nothing of it stored. Real service on a SQLite file or a PostgreSQL schema.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from powerx_governance.recommendations import store
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import Backend, FakeClock, ServiceFactory
from tests.functional.service.support import Inputs
from tests.functional.test_push_rewrites import (
    CRITICAL,
    _advisory,
    _assert_stored_as_its_columns_say,
    _push,
    every_change,
)

PIECE = 7  # rewrites per piece: a push of the example fleet's base plugin sends a dozen


def _scanned(make_service: ServiceFactory, tmp_path: Path, clock: FakeClock) -> GovernanceService:
    service = make_service(clock=clock, POWERX_WORKER="0", **Inputs(tmp_path / "inputs").sources)
    service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
    service.run_pending()
    return service


def _senders(monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> list[str]:
    """The threads that ran each piece's update, the sums' too (the piece numbered `fail_at` raises
    instead)."""
    ran: list[str] = []

    def sent(made: Callable[..., Callable[[], None]]) -> Callable[..., Callable[[], None]]:
        def update_from(
            session: Any, model: Any, columns: Sequence[str], rows: Sequence[Any]
        ) -> Callable[[], None]:
            update = made(session, model, columns, rows)

            def run() -> None:
                ran.append(threading.current_thread().name)
                if fail_at is not None and len(ran) == fail_at:
                    raise RuntimeError("the piece failed")
                update()

            return run

        return update_from

    monkeypatch.setattr(store, "_SEND_EVERY", PIECE)
    monkeypatch.setattr(store, "_update_from_lines", sent(store._update_from_lines))
    monkeypatch.setattr(store, "_update_from_binary", sent(store._update_from_binary))
    return ran


def test_rewrites_sent_in_pieces_store_what_their_columns_say_and_what_a_full_scan_finds(
    make_service: ServiceFactory, tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    service = _scanned(make_service, tmp_path, clock)
    senders = _senders(monkeypatch)
    for advisory in every_change():
        delta = _push(service, clock, advisory)
        assert (delta.kind, delta.status) == ("delta", "succeeded")
        _assert_stored_as_its_columns_say(service)
    if backend == "postgresql":  # pieces written apart while the next ones were planned
        assert senders.count("powerx-copy") > 3
        assert set(senders) == {"powerx-copy", threading.current_thread().name}  # sums: here
    else:
        assert senders == []  # SQLite writes each piece where it is planned, in one statement per set
    clock.advance(60)
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
    service.run_pending()
    with service.factory() as session:
        full = session.get_one(ScanRow, scan_id)
    assert (full.status, full.changes) == ("succeeded", 0)


def test_a_piece_that_fails_fails_the_scan_with_nothing_of_it_stored(
    make_service: ServiceFactory, tmp_path: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("only PostgreSQL sends pieces apart")
    clock = FakeClock()
    service = _scanned(make_service, tmp_path, clock)

    def stored() -> tuple[list[Any], int]:
        with service.factory() as session:
            rows = session.execute(
                select(
                    RecommendationRow.id, RecommendationRow.revision, RecommendationRow.report_digest
                ).order_by(RecommendationRow.id)
            ).all()
            revisions = session.scalar(select(func.count()).select_from(RecommendationRevisionRow))
        return [tuple(row) for row in rows], revisions or 0

    before = stored()
    _senders(monkeypatch, fail_at=2)
    delta = _push(service, clock, _advisory("PXSA-TEST-CRIT", CRITICAL))
    assert delta.status == "failed"
    assert stored() == before
    monkeypatch.undo()
    again = _push(service, clock, _advisory("PXSA-TEST-CRIT-2", CRITICAL))
    assert again.status == "succeeded"
    _assert_stored_as_its_columns_say(service)
