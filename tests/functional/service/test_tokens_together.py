"""The tokens of concurrent requests are read together (`api.authentication`): each request still gets
its own answer (valid, revoked, unknown, another tenant's), a revoked token is refused from the next
request on, and `last_used_at` is touched once a minute per token."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import event, select

from powerx_governance.auth.model import Role
from powerx_governance.auth.tables import ApiTokenRow
from powerx_governance.auth.tokens import authenticate_many, revoke_token
from powerx_governance.db.session import transaction
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.service import GovernanceService
from tests.conftest import (
    FakeClock,
    LiveServer,
    ServiceFactory,
    issue_revoked_token,
    issue_token,
    scanned_service,
)

BASE = "/internal/version/governance"


def _recommendations(service: GovernanceService) -> list[tuple[int, str]]:
    with service.factory() as session:
        rows = session.execute(
            select(RecommendationRow.id, RecommendationRow.tenant_uuid).order_by(RecommendationRow.id)
        ).all()
    return [(rec_id, tenant) for rec_id, tenant in rows]


def _token_reads(service: GovernanceService) -> list[str]:
    """The statements that read api_tokens from now on (appended as they run)."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_tokens" in statement:
            seen.append(statement)

    event.listen(service.engine, "before_cursor_execute", listen)
    return seen


def test_concurrent_requests_each_get_their_own_answer_from_shared_reads(
    make_service: ServiceFactory,
) -> None:
    service = scanned_service(make_service)
    recs = _recommendations(service)
    (rec_id, tenant) = recs[0]
    other = next(t for _, t in recs if t != tenant)
    tokens = {  # name: (token, status, requests); few failures, under the failed-authentication throttle
        "operator": (issue_token(service, Role.OPERATOR), 200, 16),
        "own viewer": (issue_token(service, Role.VIEWER, tenant), 200, 16),
        "other viewer": (issue_token(service, Role.VIEWER, other), 404, 16),
        "revoked": (issue_revoked_token(service, Role.OPERATOR), 401, 4),
        "unknown": ("pxg_not-a-token", 401, 4),
    }
    asks = [name for name, (_, _, times) in tokens.items() for _ in range(times)]
    reads = _token_reads(service)
    with LiveServer(service, background=False) as live:

        def get(name: str) -> tuple[str, int]:
            with live.client(tokens[name][0]) as client:
                answer: httpx.Response = client.get(f"{BASE}/recommendations/{rec_id}")
                return name, answer.status_code

        with ThreadPoolExecutor(16) as pool:
            answers = Counter(pool.map(get, asks))
    assert answers == Counter({(name, status): times for name, (_, status, times) in tokens.items()})
    assert 1 <= len(reads) < len(asks)  # read together, not once per request


def test_a_revoked_token_is_refused_from_the_next_request(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    token = issue_token(service, Role.OPERATOR)
    rec_id = _recommendations(service)[0][0]
    with LiveServer(service, background=False) as live, live.client(token) as client:
        assert client.get(f"{BASE}/recommendations/{rec_id}").status_code == 200
        with transaction(service.factory) as session:
            row = session.execute(select(ApiTokenRow)).scalars().one()
            revoke_token(session, row.id, service.clock())
        assert client.get(f"{BASE}/recommendations/{rec_id}").status_code == 401


def test_authenticate_many_touches_each_token_once_a_minute(make_service: ServiceFactory) -> None:
    clock = FakeClock()
    service = make_service(clock=clock, POWERX_WORKER="0")
    a, b = issue_token(service, Role.OPERATOR), issue_token(service, Role.SERVICE)
    revoked = issue_revoked_token(service, Role.OPERATOR)

    def used() -> dict[str, Any]:
        with service.factory() as session:
            rows = session.execute(select(ApiTokenRow.name, ApiTokenRow.last_used_at)).all()
            return dict(rows)

    with transaction(service.factory) as session:
        found = authenticate_many(session, [a, b, revoked, "pxg_unknown"], clock())
    assert {plaintext: who.role for plaintext, who in found.items()} == {a: Role.OPERATOR, b: Role.SERVICE}
    first = clock()
    assert used() == {"operator-fleet": first, "service-fleet": first, "revoked": None}
    clock.advance(30)
    with transaction(service.factory) as session:
        authenticate_many(session, [a], clock())
    assert used()["operator-fleet"] == first  # within the minute: not written again
    clock.advance(31)
    with transaction(service.factory) as session:
        authenticate_many(session, [a, b], clock())
    assert set(used().values()) == {first + timedelta(seconds=61), None}
