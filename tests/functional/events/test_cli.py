"""`powerx version events ...` on the configured store, through the real Typer app (in this process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner, Result

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.cli.main import app
from powerx_governance.service import GovernanceService
from tests.conftest import ServiceFactory
from tests.functional.events.support import fleet_service
from tests.functional.notifications.support import routes_file, scan


def _cli(database_url: str, tmp_path: Path, *args: str) -> Result:
    routes = routes_file(
        tmp_path / "cli",
        recipients={"console": {"channel": "console"}},
        routes={"default": ["console"]},
    )
    env = {
        "POWERX_DATABASE_URL": database_url,
        "POWERX_VAR_DIR": str(tmp_path / "var"),
        "POWERX_NOTIFICATION_ROUTES": str(routes),
        "POWERX_SCHEDULER": "0",
    }
    return CliRunner().invoke(app, ["version", "events", *args], env=env)


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _operations(service: GovernanceService) -> list[str]:
    with service.factory() as session:
        stmt = select(AuditEventRow.operation).where(AuditEventRow.resource_type == "event_subscription")
        return list(session.execute(stmt.order_by(AuditEventRow.seq)).scalars())


def test_the_cli_manages_subscriptions(
    make_service: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "cli").mkdir()
    service, _, _ = fleet_service(make_service, tmp_path)
    created = _json(
        _cli(
            database_url,
            tmp_path,
            "subscribe",
            "--name",
            "itsm",
            "--url",
            "http://127.0.0.1:9/hook",
            "--type",
            "plugin.version.alert",
            "--batch-size",
            "5",
        )
    )
    secret, sub = created["secret"], created["id"]
    assert secret.startswith("whsec_")
    assert (created["types"], created["batch_size"], created["status"]) == (
        ["plugin.version.alert"],
        5,
        "active",
    )
    scan(service)  # four alerts recorded for it (nobody delivers: this test runs no worker)

    listed = _cli(database_url, tmp_path, "list", "--json")
    assert [i["lag"] for i in _json(listed)["items"]] == [4]
    assert _json(_cli(database_url, tmp_path, "pause", "itsm"))["status"] == "paused"
    assert _json(_cli(database_url, tmp_path, "resume", sub))["status"] == "active"
    assert _json(_cli(database_url, tmp_path, "replay", "itsm", "--after", "2"))["cursor"] == 2
    shown = _cli(database_url, tmp_path, "show", "itsm")
    assert (_json(shown)["cursor"], _json(shown)["lag"]) == (2, 2)
    table = _cli(database_url, tmp_path, "list")
    assert "itsm" in table.stdout
    assert all(secret not in r.output for r in (listed, shown, table))
    assert _cli(database_url, tmp_path, "delete", "itsm").exit_code == 0
    assert _operations(service) == [
        f"events.subscription.{action}" for action in ("created", "paused", "resumed", "replayed", "deleted")
    ]


def test_cli_errors_exit_2_and_name_the_problem(
    make_service: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "cli").mkdir()
    service, _, _ = fleet_service(make_service, tmp_path)
    unknown = _cli(database_url, tmp_path, "show", "nobody")
    refused = _cli(
        database_url, tmp_path, "subscribe", "--name", "x", "--url", "http://hooks.attacker.test/x"
    )
    assert (unknown.exit_code, refused.exit_code) == (2, 2)
    assert "no subscription 'nobody'" in unknown.output
    assert "url: host 'hooks.attacker.test' is not on webhooks.allow_hosts" in refused.output
    assert _operations(service) == []
