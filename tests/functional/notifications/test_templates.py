"""Templates escape hostile values for each format; a broken templates or routes file names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest
import yaml

from powerx_governance.errors import InputError
from powerx_governance.notifications.config import DEFAULT_TEMPLATES
from powerx_governance.notifications.jobs import load_runtime
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.notifications.fleet import critical_advisory, write_fleet
from tests.functional.notifications.sinks import HttpSink, Mailbox, body_text
from tests.functional.notifications.support import drain, install, notification_env, routes_file, scan

HOSTILE_NAME: Final = '<script>alert("pwned")</script> [click me](http://evil.test) <!channel> @all'
HOSTILE_SUMMARY: Final = "<img src=x onerror=alert(1)> **urgent** see <http://evil.test|here>"


def test_hostile_catalog_values_are_escaped_in_every_format(
    make_service: ServiceFactory, tmp_path: Path, mailbox: tuple[Mailbox, int], sink: tuple[HttpSink, str]
) -> None:
    inbox, smtp_port = mailbox
    receiver, sink_url = sink
    fleet = write_fleet(tmp_path / "fleet", tenants=1, plugins=1, plugin_names=[HOSTILE_NAME])
    fleet.write_catalog(
        advisories=[critical_advisory("PXSA-TEST-0666", fleet.plugin_ids[0], summary=HOSTILE_SUMMARY)],
        notes_url="javascript:alert(document.cookie)",
    )
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    everything = {"immediate": ["critical"], "digest": "none"}
    routes = routes_file(
        tmp_path,
        recipients={
            "admins": {"channel": "email", "to": ["admins@tenants.powerx.test"], **everything},
            "wecom": {"channel": "wecom", "url": f"{sink_url}/wecom", **everything},
            "slack": {"channel": "slack", "url": f"{sink_url}/slack", **everything},
        },
        routes={"default": ["admins", "wecom", "slack"]},
    )
    service = install(service, notification_env(routes, smtp_port=smtp_port))
    scan(service)
    drain(service, clock)

    (email,) = inbox.all()
    html = body_text(email, "html")
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "javascript:" not in html
    assert "\n" not in str(email["Subject"]).strip()

    (wecom,) = receiver.on("/wecom")
    markdown = wecom.body["markdown"]["content"]
    assert "<script>" not in markdown
    assert "](http://evil.test)" not in markdown  # no link injected through the name
    assert "\\[click me\\]\\(http://evil.test\\)" in markdown
    assert "@all" not in markdown

    (slack,) = receiver.on("/slack")
    text = "\n".join(b["text"]["text"] for b in slack.body["blocks"] if b["type"] == "section")
    assert "<!channel>" not in text
    assert "<http://evil.test|here>" not in text
    assert "&lt;!channel&gt;" in text
    assert all(
        e["url"].startswith("https://console.powerx.test/") for e in slack.body["blocks"][-1]["elements"]
    )


def _templates_with(tmp_path: Path, kind: str, part: str, text: str | None) -> Path:
    document = yaml.safe_load(DEFAULT_TEMPLATES.read_text(encoding="utf-8"))
    if text is None:
        del document["messages"][kind][part]
    else:
        document["messages"][kind][part] = text
    path = tmp_path / "templates.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("kind", "part", "text", "error"),
    [
        ("finding", "card_title", "{{ finding.plugn_name }}", "UndefinedError"),
        ("digest", "email_subject", "{{ tenant.name ", "line 1"),
        ("alert", "markdown", None, "this template is required"),
        ("decision", "card_title", "{{ ''.__class__.__mro__ }}", "SecurityError"),
    ],
)
def test_a_broken_template_is_refused_naming_its_field(
    tmp_path: Path, kind: str, part: str, text: str | None, error: str
) -> None:
    path = _templates_with(tmp_path, kind, part, text)
    with pytest.raises(InputError) as caught:
        load_runtime({"POWERX_NOTIFICATION_TEMPLATES": str(path)})
    problem = caught.value.problem
    assert (problem.source, problem.field) == (str(path), f"messages.{kind}.{part}")
    assert error in problem.error


@pytest.mark.parametrize(
    ("recipients", "routes", "field"),
    [
        ({"a": {"channel": "console"}}, {"default": ["b"]}, "routes.default[0]"),
        ({"a": {"channel": "email", "to": ["x@y.test"]}}, {}, "recipients.a.channel"),
        ({"a": {"channel": "console", "digest": "weekly"}}, {}, "recipients.a.digest"),
        ({"a": {"channel": "console", "url": "https://x.test"}}, {}, "recipients.a.url"),
        ({"a": {"channel": "notify_service", "audience": "{tenant}"}}, {}, "recipients.a.channel"),
        ({"bad id!": {"channel": "console"}}, {}, "recipients.bad id!"),
    ],
)
def test_a_bad_routes_file_is_refused_naming_its_field(
    tmp_path: Path, recipients: dict[str, object], routes: dict[str, object], field: str
) -> None:
    path = routes_file(tmp_path, recipients=recipients, routes=routes)
    with pytest.raises(InputError) as caught:
        load_runtime(notification_env(path))
    assert (caught.value.problem.source, caught.value.problem.field) == (str(path), field)


def test_the_shipped_routes_file_loads_with_its_environment() -> None:
    shipped = DEFAULT_TEMPLATES.parent / "notification_routes.yaml"
    env = {
        "POWERX_NOTIFICATION_ROUTES": str(shipped),
        "POWERX_NOTIFY_URL": "https://notify.powerx.internal",
        "POWERX_SMTP_HOST": "smtp.powerx.internal",
        "POWERX_WECOM_SECURITY_WEBHOOK": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        "POWERX_FEISHU_GOVERNANCE_WEBHOOK": "https://open.feishu.cn/open-apis/bot/v2/hook/h",
        "POWERX_FEISHU_GOVERNANCE_SECRET": "s",
        "POWERX_DINGTALK_FINANCE_WEBHOOK": "https://oapi.dingtalk.com/robot/send?access_token=t",
        "POWERX_DINGTALK_FINANCE_SECRET": "s",
    }
    runtime = load_runtime(env)
    rules = yaml.safe_load((DEFAULT_TEMPLATES.parent / "governance_rules.yaml").read_text(encoding="utf-8"))
    named = {rules["defaults"]["notification"], rules["defaults"]["alert_channel"]}
    named |= {r["notification"]["route"] for r in rules["rules"] if isinstance(r.get("notification"), dict)}
    assert all(runtime.routes.knows(route) for route in named)  # every route the rules name is routed
