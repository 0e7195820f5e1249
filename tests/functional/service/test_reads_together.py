"""The recommendations concurrent requests ask for are read together (`api.together`): each caller
still gets its own tenant-scoped answer, the same as a read alone, and an unknown or another tenant's
recommendation is a 404 for its caller only."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import event, select

from powerx_governance.auth.model import Role
from powerx_governance.recommendations.queries import get_recommendation
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.service import GovernanceService
from tests.conftest import LiveServer, ServiceFactory, issue_token, scanned_service

BASE = "/internal/version/governance"


def _recommendation_reads(service: GovernanceService) -> list[str]:
    """The statements that read recommendations from now on (appended as they run)."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM recommendations" in statement:
            seen.append(statement)

    event.listen(service.engine, "before_cursor_execute", listen)
    return seen


def _alone(service: GovernanceService, rec_id: int) -> dict[str, Any] | None:
    with service.factory() as session:
        return get_recommendation(session, rec_id)


def test_concurrent_reads_each_get_their_own_scoped_answer(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    with service.factory() as session:
        recs = session.execute(
            select(RecommendationRow.id, RecommendationRow.tenant_uuid).order_by(RecommendationRow.id)
        ).all()
    tenant = recs[0][1]
    own = [rec_id for rec_id, t in recs if t == tenant][:8]
    others = [rec_id for rec_id, t in recs if t != tenant][:8]
    unknown = recs[-1][0] + 1000
    operator, viewer = issue_token(service, Role.OPERATOR), issue_token(service, Role.VIEWER, tenant)
    asks = (
        [(operator, rec_id) for rec_id in own + others]
        + [(viewer, rec_id) for rec_id in own + others]
        + [(operator, unknown), (viewer, unknown)]
    ) * 2
    expected = {rec_id: _alone(service, rec_id) for rec_id in own + others}
    reads = _recommendation_reads(service)
    with LiveServer(service, background=False) as live:

        def get(ask: tuple[str, int]) -> tuple[str, int, int, Any]:
            token, rec_id = ask
            with live.client(token) as client:
                answer = client.get(f"{BASE}/recommendations/{rec_id}")
                return token, rec_id, answer.status_code, answer.json()

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(get, asks))
    for token, rec_id, status, body in answers:
        readable = rec_id in own or (token == operator and rec_id in others)
        assert (status, body) == ((200, expected[rec_id]) if readable else (404, body)), (token, rec_id)
    assert Counter(status for _, _, status, _ in answers) == {
        200: 2 * (2 * len(own) + len(others)),
        404: 2 * (len(others) + 2),
    }
    assert 1 <= len(reads) < len(asks)  # read together, not once per request
