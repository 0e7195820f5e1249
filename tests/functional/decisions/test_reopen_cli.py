"""`powerx version reopen`: withdraw the standing decision from the command line, audited."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner, Result

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.cli.main import app
from powerx_governance.decisions.model import DecisionKind, DecisionState
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.recommendations.tables import RecommendationRow
from tests.conftest import ServiceFactory
from tests.functional.events.support import fleet_service, open_recommendations, take_decision
from tests.functional.notifications.support import scan


def _reopen(database_url: str, tmp_path: Path, *args: str) -> Result:
    env = {"POWERX_DATABASE_URL": database_url, "POWERX_VAR_DIR": str(tmp_path / "var")}
    return CliRunner().invoke(app, ["version", "reopen", *args, "--actor", "li.wei"], env=env)


def test_reopen_withdraws_the_decision_and_a_second_one_is_refused(
    make_service: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    service, _, _ = fleet_service(make_service, tmp_path, tenants=1, plugins=1)
    scan(service)
    (rec,) = open_recommendations(service)
    decision_id = take_decision(service, rec, DecisionKind.UPGRADE)
    with service.factory() as session:
        revision = session.get_one(RecommendationRow, rec.id).revision

    ref = ("--recommendation", str(rec.id), "--revision", str(revision))
    done = _reopen(database_url, tmp_path, *ref, "--reason", "wrong target")
    assert done.exit_code == 0, done.output
    answer = json.loads(done.stdout)
    assert (answer["recommendation_id"], answer["state"]) == (rec.id, "open")
    assert answer["withdrawn"]["id"] == decision_id
    with service.factory() as session:
        assert session.get_one(DecisionRow, decision_id).state != DecisionState.ACTIVE.value
        operations = session.execute(
            select(AuditEventRow.operation, AuditEventRow.actor).order_by(AuditEventRow.seq)
        ).all()
    assert ("decision.reopen", "cli:li.wei") in [tuple(row) for row in operations]

    again = _reopen(database_url, tmp_path, *ref)
    assert again.exit_code != 0
    assert "error:" in again.output
