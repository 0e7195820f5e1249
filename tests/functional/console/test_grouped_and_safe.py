"""Grouped by advisory, bulk decisions by target with a confirmation whose count is what is
recorded, no upgrade without a target, and reopening a decision: over real HTTP."""

from __future__ import annotations

import re
from html import unescape

import httpx
from sqlalchemy import select

from powerx_governance.auth.model import Role
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.recommendations.tables import RecommendationRow
from tests.conftest import issue_token
from tests.functional.console.conftest import ConsoleServer
from tests.functional.console.support import SANDBOX, csrf_of, recommendation_id, sign_in

SAML = "com.powerx.plugins.sso-saml"
ADVISORY = "PXSA-2025-0009"


def _link(html: str, pattern: str) -> str:
    found = re.search(pattern, html)
    assert found is not None, pattern
    return unescape(found.group(1))


def test_advisory_group_bulk_count_is_what_is_recorded(console_server: ConsoleServer) -> None:
    service, live = console_server.service, console_server.live
    with httpx.Client(base_url=live.base_url, timeout=60) as client:
        sign_in(client, issue_token(service, Role.OPERATOR))
        grouped = client.get("/console/advisories").text
        row = grouped.split(f'data-advisory="{ADVISORY}"')[1].split("</tr>")[0]
        total = int(re.search(r'data-figure="advisory-open">([\d,]+)<', row).group(1).replace(",", ""))  # type: ignore[union-attr]
        paths = re.findall(r'<strong data-figure="group-count">([\d,]+)</strong>', row)
        assert sum(int(n.replace(",", "")) for n in paths) == total
        bulk_url = _link(row, r'href="(/console/bulk\?[^"]+)"')
        answer = client.get(bulk_url)
        assert answer.status_code == 200, (bulk_url, answer.text[-500:])
        preview = answer.text
        count = int(re.search(r'data-figure="bulk-count">([\d,]+)<', preview).group(1))  # type: ignore[union-attr]
        assert f">{count}</strong> tenant" in row.replace(",", "")  # the row's figure is the preview's
        target = re.search(r"target=([^&]+)", bulk_url).group(1)  # type: ignore[union-attr]
        confirm = client.get(bulk_url + "&step=confirm&decision=upgrade").text
        assert f'<dd data-confirm="tenants">{count}</dd>' in confirm
        form = dict(
            re.findall(
                r'<input type="hidden" name="([^"]+)" value="([^"]*)"', confirm.split('id="confirm"')[1]
            )
        )
        stale = client.post("/console/bulk", data={**form, "expected": str(count + 1)})
        assert stale.status_code == 303  # post/redirect/get, nothing recorded
        assert "selection changed" in client.get(stale.headers["location"]).text
        done = client.post("/console/bulk", data={k: unescape(v) for k, v in form.items()})
        assert done.status_code == 303
        recorded = client.get(done.headers["location"]).text
        assert f'data-figure="bulk-recorded">{count}<' in recorded
    with service.factory() as session:
        batch = session.execute(select(DecisionRow).where(DecisionRow.plugin_id == SAML)).scalars().all()
    assert len(batch) == count
    assert {d.target_version for d in batch} == {unescape(target)}


def test_mixed_targets_are_refused_and_review_cards_cannot_upgrade(console_server: ConsoleServer) -> None:
    service, live = console_server.service, console_server.live
    with service.factory() as session:
        review = (
            session.execute(
                select(RecommendationRow).where(
                    RecommendationRow.target_version.is_(None),
                    RecommendationRow.latest_version.is_(None),
                    RecommendationRow.state == "open",
                )
            )
            .scalars()
            .first()
        )
    with httpx.Client(base_url=live.base_url, timeout=60) as client:
        sign_in(client, issue_token(service, Role.OPERATOR))
        mixed = client.get("/console/bulk", params={"plugin": SAML}).text
        if 'id="mixed-targets"' in mixed:
            assert 'name="step" value="confirm"' not in mixed
        if review is not None:
            card = client.get(f"/console/recommendations/{review.id}").text
            assert 'id="no-target"' in card
            assert 'value="upgrade"' not in card
            csrf = csrf_of(card)
            answer = client.post(
                f"/console/recommendations/{review.id}/decision",
                data={"csrf_token": csrf, "revision": str(review.revision), "decision": "upgrade"},
            )
            assert answer.status_code == 303
            assert "nothing to upgrade to" in client.get(answer.headers["location"]).text.lower()


def test_decision_is_shown_and_can_be_reopened(console_server: ConsoleServer) -> None:
    service, live = console_server.service, console_server.live
    rec_id = recommendation_id(service, SANDBOX, "com.powerx.plugins.crm")
    with httpx.Client(base_url=live.base_url, timeout=60) as client:
        sign_in(client, issue_token(service, Role.TENANT_ADMIN, SANDBOX))
        card = client.get(f"/console/recommendations/{rec_id}").text
        confirm = client.get(
            f"/console/recommendations/{rec_id}/confirm",
            params={
                "decision": "ignore",
                "revision": "1",
                "reason": "frozen until the migration",
                "scope": "until",
                "until": "2027-01-31",
            },
        ).text
        assert "Confirm: ignore" in confirm
        assert "frozen until the migration" in confirm
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', confirm))
        done = client.post(
            f"/console/recommendations/{rec_id}/decision", data={k: unescape(v) for k, v in form.items()}
        )
        shown = client.get(done.headers["location"]).text
        assert re.search(r"Ignored until <time[^>]*>2027-01-31", shown)
        assert "because “frozen until the migration”" in shown
        reopened = client.post(
            f"/console/recommendations/{rec_id}/reopen",
            data={"csrf_token": csrf_of(card), "revision": "1", "reason": "migration moved"},
        )
        page = client.get(reopened.headers["location"]).text
        assert "open again" in page
        assert 'data-operation="decision.reopen"' in page
    with service.factory() as session:
        assert session.get_one(RecommendationRow, rec_id).state == "open"


def test_reopen_through_the_api(console_server: ConsoleServer) -> None:
    service, live = console_server.service, console_server.live
    rec_id = recommendation_id(service, SANDBOX, "com.powerx.plugins.forms")
    api = "/internal/version/governance"
    headers = {"Authorization": f"Bearer {issue_token(service, Role.TENANT_ADMIN, SANDBOX)}"}
    with httpx.Client(base_url=live.base_url, timeout=60, headers=headers) as client:
        revision = client.get(f"{api}/recommendations/{rec_id}").json()["revision"]
        body = {"recommendation_id": rec_id, "revision": revision, "decision": "ignore", "reason": "not now"}
        assert client.post(f"{api}/decision", json=body).status_code == 201
        reopened = client.post(f"{api}/recommendations/{rec_id}/reopen", json={"revision": revision})
        assert reopened.status_code == 200, reopened.text
        assert reopened.json()["state"] == "open"
        assert reopened.json()["withdrawn"]["state"] == "superseded"
        again = client.post(f"{api}/recommendations/{rec_id}/reopen", json={"revision": revision})
        assert again.status_code == 409
