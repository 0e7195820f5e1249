"""Webhook targets: only allow-listed hosts, and never a private address that is not allow-listed itself."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from powerx_governance.db.session import transaction
from powerx_governance.errors import InputError
from powerx_governance.http.allow_list import AllowList
from powerx_governance.notifications.channels.interface import DestinationRefusedError
from powerx_governance.notifications.channels.webhook import check_destination
from powerx_governance.notifications.jobs import load_runtime
from powerx_governance.notifications.service import dead_letters
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.notifications.fleet import write_fleet
from tests.functional.notifications.sinks import HttpSink
from tests.functional.notifications.support import drain, install, notification_env, routes_file, scan


def test_a_webhook_host_off_the_allow_list_is_refused_when_the_routes_load(tmp_path: Path) -> None:
    routes = routes_file(
        tmp_path,
        recipients={"oncall": {"channel": "slack", "url": "https://hooks.attacker.test/T000/B000"}},
        routes={"default": ["oncall"]},
    )
    with pytest.raises(InputError) as caught:
        load_runtime(notification_env(routes))
    problem = caught.value.problem
    assert (problem.source, problem.field) == (str(routes), "recipients.oncall.url")
    assert problem.error == "host 'hooks.attacker.test' is not on webhooks.allow_hosts"


def test_an_allowed_name_resolving_to_a_private_address_gets_no_request(
    make_service: ServiceFactory, tmp_path: Path, sink: tuple[HttpSink, str]
) -> None:
    receiver, sink_url = sink
    fleet = write_fleet(tmp_path / "fleet", tenants=1, plugins=1)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    port = urlsplit(sink_url).port
    routes = routes_file(
        tmp_path,
        recipients={
            "oncall": {"channel": "wecom", "url": f"http://localhost:{port}/wecom", "immediate": ["none"]}
        },
        routes={"default": ["oncall"]},
        allow_hosts=("localhost",),  # the name is allowed, but it resolves to loopback
    )
    service = install(service, notification_env(routes))
    scan(service)
    drain(service, clock)
    assert receiver.requests == []
    with transaction(service.factory) as session:
        dead = dead_letters(session)
    assert len(dead) == 1
    assert dead[0]["attempts"] == 1
    assert "resolves to non-public address" in dead[0]["last_error"]


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata: link-local
        "http://10.0.0.5/hook",  # private, outside the allowed 10.20.0.0/16
        "http://[::1]:8080/hook",  # loopback
        "http://[::ffff:127.0.0.1]/hook",  # loopback behind an IPv4-mapped address
        "https://hooks.slack.com.attacker.test/hook",  # a look-alike name
        "ftp://hooks.slack.com/hook",  # not http(s)
    ],
)
def test_the_allow_list_refuses_what_it_does_not_name(url: str) -> None:
    allow = AllowList.parse(("hooks.slack.com", "*.feishu.cn", "10.20.0.0/16"))
    with pytest.raises(DestinationRefusedError):
        check_destination("slack", url, allow, require_https=False)


def test_an_explicitly_allowed_internal_network_is_reachable() -> None:
    allow = AllowList.parse(("10.20.0.0/16",))
    check_destination("wecom", "http://10.20.3.4:8080/gateway", allow, require_https=False)
    with pytest.raises(DestinationRefusedError, match="scheme"):
        check_destination("wecom", "http://10.20.3.4:8080/gateway", allow, require_https=True)
