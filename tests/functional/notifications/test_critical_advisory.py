"""A critical advisory in the example fleet reaches the tenant admins' inbox and the IM robots.

Real SMTP server (aiosmtpd) and a real HTTP sink on loopback; the example fleet, rules and
catalog; the worker runs the scan and the deliveries on this thread with a hand-moved clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from powerx_governance.db.session import transaction
from powerx_governance.notifications.service import console_cards
from powerx_governance.notifications.tables import NotificationDeliveryRow
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.notifications.sinks import HttpSink, Mailbox, body_text
from tests.functional.notifications.support import (
    CONSOLE_URL,
    drain,
    install,
    notification_env,
    routes_file,
    scan,
    status_counts,
)

ACME: Final = "90072176-2ac5-5c15-a81e-9bece3eb7393"
ACME_INBOX: Final = "admins+acme-retail@tenants.powerx.test"
KESTREL: Final = "530f976e-3e10-553a-b962-9180e1a4a47a"  # kestrel-leasing, 3 critical findings
SSO: Final = "com.powerx.plugins.sso-saml"
SSO_NOTES: Final = "https://docs.powerx.example/plugins/sso-saml/releases/1.3.1-security.1"
PAYMENTS: Final = "com.powerx.plugins.payments"


def _routes(directory: Path, sink_url: str) -> Path:
    security = {"immediate": ["critical", "high"], "digest": "none"}
    return routes_file(
        directory,
        recipients={
            "console": {
                "channel": "console",
                "immediate": ["critical", "high", "medium", "low", "none"],
                "digest": "none",
            },
            "admins-email": {
                "channel": "email",
                "to": ["admins+{tenant_key}@tenants.powerx.test"],
                "immediate": ["critical"],
                "digest": "daily",
            },
            "security-wecom": {"channel": "wecom", "url": f"{sink_url}/wecom", **security},
            "security-slack": {"channel": "slack", "url": f"{sink_url}/slack", **security},
            "security-feishu": {"channel": "feishu", "url": f"{sink_url}/feishu", **security},
            "security-dingtalk": {"channel": "dingtalk", "url": f"{sink_url}/dingtalk", **security},
        },
        routes={
            "im://wecom/security-oncall": [
                "security-wecom",
                "security-slack",
                "security-feishu",
                "security-dingtalk",
                "admins-email",
                "console",
            ],
            "default": ["admins-email", "console"],
        },
    )


def _rec_id(service: GovernanceService, plugin_id: str) -> int:
    with transaction(service.factory) as session:
        return session.execute(
            select(RecommendationRow.id).where(
                RecommendationRow.tenant_uuid == ACME, RecommendationRow.plugin_id == plugin_id
            )
        ).scalar_one()


def _acme(sink: HttpSink, path: str) -> dict[str, Any]:
    """The one message the sink accepted on `path` that is about Acme Retail."""
    found = [r.body for r in sink.on(path) if "Acme Retail" in str(r.body)]
    assert len(found) == 1, f"{path}: {len(found)} messages about Acme Retail"
    body: dict[str, Any] = found[0]
    return body


def _plain(markdown: str) -> str:
    """IM markdown without emphasis and escapes, to look for the facts in it."""
    return markdown.replace("\\", "").replace("*", "")


def _assert_finding_text(text: str, rec_id: int) -> None:
    for expected in (
        "SAML Single Sign-On",
        "1.3.0 → 1.3.1-security.1",
        "CRITICAL",
        "CVSS 9.3",
        "PXSA-2025-0009",
        "CVE-2025-38841",
        SSO_NOTES,
        "2026-12-01 00:00 UTC",  # first seen at the scan (NOW) + the critical rule's 24 h (DESIGN §5.8)
        f"{CONSOLE_URL}/recommendations/{rec_id}?action=upgrade",
        f"{CONSOLE_URL}/recommendations/{rec_id}?action=schedule",
        f"{CONSOLE_URL}/recommendations/{rec_id}?action=ignore",
    ):
        assert expected.lower() in text.lower(), f"{expected!r} missing"


def test_a_critical_advisory_reaches_the_inbox_and_im_with_its_facts(
    make_service: ServiceFactory, tmp_path: Path, mailbox: tuple[Mailbox, int], sink: tuple[HttpSink, str]
) -> None:
    inbox, smtp_port = mailbox
    receiver, sink_url = sink
    clock = FakeClock()
    service = make_service(clock=clock)
    service = install(service, notification_env(_routes(tmp_path, sink_url), smtp_port=smtp_port))
    scan(service, ACME, KESTREL)
    drain(service, clock)
    sso, payments = _rec_id(service, SSO), _rec_id(service, PAYMENTS)

    # Email: Acme's two critical findings in ONE message (batched per tenant), not its high one;
    # the other tenant scanned gets its own.
    assert len(inbox.all()) == 2
    assert len(inbox.to("admins+kestrel-leasing@tenants.powerx.test")) == 1
    emails = inbox.to(ACME_INBOX)
    assert len(emails) == 1
    email = emails[0]
    assert (
        email["Subject"].strip()
        == "[PowerX] 2 plugin findings need action in Acme Retail (2 critical, 0 high)"
    )
    assert email["Message-ID"].startswith("<pxg.")
    assert email["Message-ID"].endswith("@powerx.test>")
    text, html = body_text(email, "plain"), body_text(email, "html")
    _assert_finding_text(text, sso)
    assert "4.1.2 → 4.1.3" in text
    assert "PXSA-2025-0015" in text
    assert f"/recommendations/{payments}?action=" in text
    assert "com.powerx.plugins.crm" not in text  # high: waits for the daily digest
    assert "Impact: 8 of the tenant's 13 installations need action (2 critical)." in text
    assert f'href="{SSO_NOTES}"' in html
    assert "PXSA-2025-0009" in html
    assert "CVSS 9.3" in html

    # IM: the same facts in each robot's own payload shape.
    wecom = _acme(receiver, "/wecom")
    assert wecom["msgtype"] == "markdown"
    _assert_finding_text(_plain(wecom["markdown"]["content"]), sso)
    slack = _acme(receiver, "/slack")
    sections = "\n".join(b["text"]["text"] for b in slack["blocks"] if b["type"] == "section")
    _assert_finding_text(_plain(sections), sso)
    assert slack["blocks"][-1]["type"] == "actions"
    feishu = _acme(receiver, "/feishu")
    assert feishu["msg_type"] == "interactive"
    assert feishu["card"]["header"]["template"] == "red"
    _assert_finding_text(_plain(feishu["card"]["elements"][0]["content"]), sso)
    dingtalk = _acme(receiver, "/dingtalk")
    assert dingtalk["msgtype"] == "markdown"
    _assert_finding_text(_plain(dingtalk["markdown"]["text"]), sso)

    # Every request carried its delivery's idempotency key; nothing is left pending or dead.
    with transaction(service.factory) as session:
        keys = set(session.execute(select(NotificationDeliveryRow.idempotency_key)).scalars())
    assert set(receiver.keys_seen()) <= keys
    assert set(status_counts(service)) == {"delivered"}

    # The console has a card for each of Acme's findings, the critical ones with their facts.
    with transaction(service.factory) as session:
        cards = console_cards(session, tenant_uuid=ACME, limit=100)
    card = next(c for c in cards if c["recommendation_id"] == sso)
    assert card["title"] == "[CRITICAL] SSO (SAML) 1.3.0 → 1.3.1-security.1" or card["title"].startswith(
        "[CRITICAL]"
    )
    assert card["data"]["advisories"] == ["PXSA-2025-0009"]
    assert [a["id"] for a in card["data"]["actions"]] == ["upgrade", "schedule", "ignore"]


def test_the_latency_from_trigger_to_delivery_is_measured(
    make_service: ServiceFactory, tmp_path: Path, sink: tuple[HttpSink, str]
) -> None:
    receiver, sink_url = sink
    clock = FakeClock()
    service = make_service(clock=clock)
    routes = routes_file(
        tmp_path,
        recipients={
            "oncall": {
                "channel": "slack",
                "url": f"{sink_url}/slack",
                "immediate": ["critical"],
                "digest": "none",
            }
        },
        routes={"default": ["oncall"]},
    )
    service = install(service, notification_env(routes))
    service.request_scan(ScanKind.FULL, ScanTrigger.API, tenants=(ACME, KESTREL))
    clock.advance(7)  # the data arrived 7 s before the worker got to it
    service.run_pending(limit=1)
    drain(service, clock)
    histogram = service.metrics.recommendation_push_latency_seconds
    sent = len(receiver.accepted)
    assert sent > 0
    samples = {s.name: s.value for m in histogram.collect() for s in m.samples}
    assert samples["version_recommendation_push_latency_seconds_count"] == sent
    assert samples["version_recommendation_push_latency_seconds_sum"] >= sent * 7
