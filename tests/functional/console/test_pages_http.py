"""Console pages over real HTTP on SQLite and PostgreSQL: sessions, CSRF, scope, errors on the card."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select

from powerx_governance.auth.model import Role
from powerx_governance.auth.tables import ApiTokenRow
from powerx_governance.auth.tokens import hash_token, revoke_token
from powerx_governance.db.session import transaction
from powerx_governance.recommendations.tables import RecommendationRow
from tests.conftest import LiveServer, ServiceFactory, issue_token
from tests.functional.console.conftest import ConsoleServer
from tests.functional.console.support import SANDBOX, csrf_of, recommendation_id, scanned_service, sign_in

CRM = "com.powerx.plugins.crm"


@contextmanager
def _browser(live: LiveServer) -> Iterator[httpx.Client]:
    """A cookie-keeping client that, like a browser, does not follow redirects by itself here."""
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        yield client


def test_sign_in_refusals_and_safe_redirects(console_server: ConsoleServer) -> None:
    service, live = console_server.service, console_server.live
    admin = issue_token(service, Role.TENANT_ADMIN, SANDBOX)
    with _browser(live) as client:
        assert client.get("/").headers["location"] == "/console"
        first = client.get("/console/recommendations/1?action=ignore")
        assert first.status_code == 303
        assert parse_qs(urlsplit(first.headers["location"]).query)["next"] == [
            "/console/recommendations/1?action=ignore"
        ]
        assert sign_in(client, "pxg_not-a-token").status_code == 401
        refused = sign_in(client, issue_token(service, Role.SERVICE))
        assert refused.status_code == 403
        assert "is for machines" in refused.text
        form = client.get("/console/sign-in")
        no_nonce = httpx.post(
            f"{live.base_url}/console/sign-in", data={"token": admin, "csrf_token": csrf_of(form.text)}
        )
        assert no_nonce.status_code == 403  # the form's token is bound to the browser's sign-in cookie
        assert sign_in(client, admin, next_path="//evil.example/console").headers["location"] == "/console"
        page = client.get("/console")
        assert page.status_code == 200
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert page.headers["cache-control"] == "no-store"
        assert not re.search(r'(src="|<link[^>]+href=")(https?:)?//', page.text), "every asset is served here"
        tampered = client.cookies["powerx_console"][:-2] + "xx"
        with httpx.Client(base_url=live.base_url, cookies={"powerx_console": tampered}) as forged:
            assert forged.get("/console").status_code == 303


def test_revoked_token_ends_the_session_and_cross_origin_posts_are_refused(
    console_server: ConsoleServer,
) -> None:
    service, live = console_server.service, console_server.live
    admin = issue_token(service, Role.TENANT_ADMIN, SANDBOX)
    rec_id = recommendation_id(service, SANDBOX, CRM)
    with _browser(live) as client:
        sign_in(client, admin)
        card = client.get(f"/console/recommendations/{rec_id}")
        body = {"csrf_token": csrf_of(card.text), "revision": "1", "decision": "upgrade"}
        other_site = client.post(
            f"/console/recommendations/{rec_id}/decision",
            data=body,
            headers={"Origin": "https://evil.example"},
        )
        assert other_site.status_code == 403
        assert client.get("/console").status_code == 200
        with transaction(service.factory) as session:
            token = session.execute(select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(admin)))
            revoke_token(session, token.scalar_one().id, service.clock())
        ended = client.get("/console")
        assert ended.status_code == 303
        assert "token was revoked" in client.get(ended.headers["location"]).text


def _refused_then_shown(client: httpx.Client, url: str, data: dict[str, str]) -> str:
    """Post/redirect/get: a refused decision answers 303 to the card, which shows the error once."""
    answer = client.post(url, data=data)
    assert answer.status_code == 303, answer.text
    assert "#decide" in answer.headers["location"]
    card = client.get(answer.headers["location"])
    assert card.status_code == 200
    assert 'id="decision-error"' in card.text
    assert 'id="decision-error"' not in client.get(answer.headers["location"]).text  # shown once
    return card.text


def test_decision_errors_are_shown_on_the_card(console_server: ConsoleServer) -> None:
    service, live = console_server.service, console_server.live
    rec_id = recommendation_id(service, SANDBOX, CRM)
    with _browser(live) as client:
        sign_in(client, issue_token(service, Role.TENANT_ADMIN, SANDBOX))
        csrf = csrf_of(client.get(f"/console/recommendations/{rec_id}").text)
        url = f"/console/recommendations/{rec_id}/decision"
        stale = _refused_then_shown(client, url, {"csrf_token": csrf, "revision": "2", "decision": "upgrade"})
        assert "Someone changed this finding" in stale
        assert "revision" not in stale.split('id="decision-error"')[1].split("</div>")[0]
        no_reason = _refused_then_shown(
            client, url, {"csrf_token": csrf, "revision": "1", "decision": "ignore", "reason": " "}
        )
        assert re.search(r'<textarea id="reason"[^>]*aria-invalid="true"', no_reason)
        dated = {
            "csrf_token": csrf,
            "revision": "1",
            "decision": "ignore",
            "reason": "later",
            "scope": "until",
        }
        assert "later" in _refused_then_shown(client, url, dated)  # a dated scope needs its date; kept
        bad_date = _refused_then_shown(
            client,
            url,
            {"csrf_token": csrf, "revision": "1", "decision": "schedule", "scheduled_for": "soon"},
        )
        assert "Enter a date and time" in bad_date
        key = {"csrf_token": csrf, "revision": "1", "decision": "schedule", "idempotency_key": "console:k1",
               "scheduled_for": "2026-12-24T09:30", "tz": "Asia/Shanghai", "accept_late": "1"}  # fmt: skip
        done = client.post(url, data=key)
        again = client.post(url, data=key)  # a double submit records one decision
        assert (done.status_code, again.status_code) == (303, 303)
        card = client.get(done.headers["location"]).text
        assert 'datetime="2026-12-24T01:30:00Z"' in card  # 09:30 in Shanghai
        assert card.count("<tr data-decision=") == 1
        assert "scheduled for" in card
        viewer = issue_token(service, Role.VIEWER, SANDBOX)
    with _browser(live) as as_viewer:
        sign_in(as_viewer, viewer)
        page = as_viewer.get(f"/console/recommendations/{rec_id}")
        assert "You can read this card" in page.text
        assert 'action="/console/recommendations/' not in page.text
        refused = as_viewer.post(
            f"/console/recommendations/{rec_id}/decision",
            data={"csrf_token": csrf_of(page.text), "revision": "1", "decision": "upgrade"},
        )
        assert refused.status_code == 403


def test_operator_filters_pages_and_tenant_switch(make_service: ServiceFactory) -> None:
    """On both stores: the tag filter (jsonb / json_each) and keyset pages (row values)."""
    service = scanned_service(make_service, POWERX_WORKER="0")
    server = LiveServer(service, background=False)
    with service.factory() as session:
        open_total = session.scalar(
            select(func.count()).select_from(RecommendationRow).where(RecommendationRow.state == "open")
        )
    with server as live, _browser(live) as client:
        sign_in(client, issue_token(service, Role.OPERATOR))
        seen: list[str] = []
        url: str | None = "/console"
        while url is not None:
            page = client.get(url)
            assert page.status_code == 200
            seen += re.findall(r'<article class="card[^"]*" aria-labelledby="card-(\d+)-title"', page.text)
            found = re.search(r'rel="next" href="([^"]+)"', page.text)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert open_total
        assert len(seen) == len(set(seen)) == open_total
        tagged = client.get("/console", params={"tag": "sandbox", "state": "all"}).text
        assert set(re.findall(r'href="/console/tenants/([^"]+)"', tagged)) == {SANDBOX}
        assert client.get("/console", params={"risk": "severe"}).status_code == 400
        assert client.get("/console", params={"cursor": "garbage"}).status_code == 400
        assert client.get("/console/tenants", params={"q": "sandbox-a"}).headers["location"] == (
            f"/console/tenants/{SANDBOX}"
        )
        tenant_page = client.get(f"/console/tenants/{SANDBOX}")
        assert "<h1>Sandbox Tenant A</h1>" in tenant_page.text
        assert client.get("/console/tenants/no-such-tenant").status_code == 404
        status = client.get("/console/scans").text
        scan_id = re.search(r'data-scan="([0-9a-f-]{36})"', status)
        assert scan_id is not None
        progress = client.get(f"/console/scans/{scan_id.group(1)}/status").json()
        assert progress["finished"] is True
        assert progress["coverage"]["tenants_total"] >= 99


def _main_nav(html: str) -> list[tuple[str, str]]:
    """(label, href) of the main navigation's links, in order."""
    nav = html[html.index('<nav class="mainnav"') : html.index("</nav>")]
    return [(label, href) for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav)]


def test_main_navigation_comes_from_the_components(console_server: ConsoleServer) -> None:
    """Every component's console pages are in the main navigation (the console's own first);
    fleet-wide pages only for fleet-wide roles; error pages keep the navigation."""
    service, live = console_server.service, console_server.live
    with _browser(live) as client:
        sign_in(client, issue_token(service, Role.OPERATOR))
        operator = _main_nav(client.get("/console").text)
        groups = client.get("/console/groups")
        missing = client.get("/console/groups/no-such-group")
    assert operator == [
        ("Overview", "/console"),
        ("Adoption", "/console/adoption"),
        ("Tenants", "/console/tenants"),
        ("Bulk decisions", "/console/bulk"),
        ("Scans", "/console/scans"),
        ("Groups", "/console/groups"),
        ("Plugins", "/console/fleet/plugins"),
    ]
    assert 'href="/console/groups" aria-current="page"' in groups.text
    assert missing.status_code == 404
    assert _main_nav(missing.text) == operator
    with _browser(live) as client:
        sign_in(client, issue_token(service, Role.TENANT_ADMIN, SANDBOX))
        admin = _main_nav(client.get("/console").text)
    assert admin == [
        ("Overview", "/console"),
        ("Adoption", "/console/adoption"),
        ("Groups", "/console/groups"),
        ("Plugins", "/console/fleet/plugins"),
    ]
