"""`powerx version serve --workers 2` on SQLite and PostgreSQL: real processes over real HTTP.

Concurrent clients posting decisions to two API processes get one decision, one audit record and
one console card each, the audit trail stays one verified chain, a stale revision is still a 409,
and the jobs (the console deliveries) run once, in the supervising process.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import httpx
from sqlalchemy import func, select

from powerx_governance.audit.service import verify
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.jobs.tables import JobRow
from powerx_governance.notifications.tables import ConsoleCardRow
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.service import GovernanceService
from tests.conftest import ServiceFactory, free_port, issue_token, scanned_service, service_env, wait_until
from tests.functional.cli import POWERX, REPO

BASE: Final = "/internal/version/governance"
WORKERS: Final = 2


def _upgradeable(service: GovernanceService) -> list[tuple[int, int]]:
    with service.factory() as session:
        rows = session.execute(
            select(RecommendationRow.id, RecommendationRow.revision)
            .where(
                RecommendationRow.state == "open",
                RecommendationRow.target_version.is_not(None) | RecommendationRow.latest_version.is_not(None),
            )
            .order_by(RecommendationRow.id)
        ).all()
    return [(rec_id, revision) for rec_id, revision in rows]


def _api_processes(pid: int) -> int:
    """How many of `pid`'s children are uvicorn's spawned API processes (not the resource tracker)."""
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return sum(1 for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes())


@contextmanager
def _served(service: GovernanceService, var: Path) -> Iterator[str]:
    """`powerx version serve --workers 2` on the service's store; its base URL."""
    port = free_port()
    env = {**os.environ, **service_env(service.settings.database_url, var, {"POWERX_POLL_INTERVAL": "0.1s"})}
    log = var / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(POWERX), "version", "serve", "--workers", str(WORKERS), "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, f"serve exited at start: {log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=120, interval=0.1)  # generous: the machine is shared
        wait_until(lambda: _api_processes(server.pid) == WORKERS, timeout=60)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert server.returncode == 0, log.read_text()[-3000:]


def _count(service: GovernanceService, stmt: object) -> int:
    with service.factory() as session:
        return int(session.execute(stmt).scalar_one())  # type: ignore[call-overload]


def test_several_api_processes_keep_one_chain_and_one_record_per_decision(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service = scanned_service(make_service)
    token = issue_token(service, Role.OPERATOR)
    recs = _upgradeable(service)
    assert len(recs) >= 8
    with _served(service, tmp_path) as base:

        def post(rec: tuple[int, int]) -> tuple[int, int | None]:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
                body = {"recommendation_id": rec[0], "revision": rec[1], "decision": "upgrade"}
                answer = c.post(f"{BASE}/decision", json=body)
                return answer.status_code, answer.json().get("id")

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(post, recs + recs[:4]))  # four decided twice: superseded
        stale = post((recs[0][0], recs[0][1] + 1))
        cards = select(func.count()).select_from(ConsoleCardRow).where(ConsoleCardRow.kind == "decision")
        decided = len(recs) + 4
        wait_until(lambda: _count(service, cards) == decided, timeout=120, interval=0.1)
    assert Counter(code for code, _ in answers) == Counter({201: decided})
    assert stale[0] == 409
    assert _count(service, select(func.count()).select_from(DecisionRow)) == decided
    with service.factory() as session:
        recorded = [
            e.changes["after"]["decision_id"]
            for e in session.execute(
                select(AuditEventRow).where(AuditEventRow.operation == "decision.upgrade")
            ).scalars()
        ]
        assert sorted(recorded) == sorted(int(decision_id or 0) for _, decision_id in answers)  # one each
        chain = verify(session)
        assert chain.ok, chain.problem
        assert chain.checked == _count(service, select(func.count()).select_from(AuditEventRow))
        dead = select(func.count()).select_from(JobRow).where(JobRow.status == "dead")
        assert session.execute(dead).scalar_one() == 0  # the supervisor's worker ran the deliveries
    assert _count(service, cards) == decided
