"""Finding 4: failed authentication is throttled per client address and per token prefix, logged, counted."""

from __future__ import annotations

import logging

import httpx
import pytest

from powerx_governance.auth.model import Role
from powerx_governance.settings import load_settings
from tests.conftest import LiveServer, ServiceFactory, issue_token
from tests.functional.console.support import csrf_of
from tests.functional.hardening.conftest import API
from tests.functional.service.support import metric


def _get(live: LiveServer, token: str) -> httpx.Response:
    with live.client(token) as client:
        return client.get(f"{API}/recommendations")


def test_failed_tokens_from_one_address_lock_it_out_with_429_and_retry_after(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(POWERX_WORKER="0", POWERX_AUTH_THROTTLE_ADDRESS="5/minute")
    good = issue_token(service, Role.OPERATOR)
    caplog.set_level(logging.WARNING, logger="powerx.auth")
    with LiveServer(service, background=False) as live:
        answers = [_get(live, f"pxg_guess{n:04d}-{'x' * 30}") for n in range(8)]
        locked_out_good = _get(live, good)
        metrics = httpx.get(f"{live.base_url}/metrics").text
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 3
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert "too many failed" in refused.json()["detail"].lower()
    assert locked_out_good.status_code == 429  # a lockout does not tell an attacker which guess was right
    assert metric(metrics, "version_auth_failures_total", channel="api") == 5
    assert metric(metrics, "version_auth_throttled_total", channel="api") == 4
    failed = [r for r in caplog.records if r.getMessage() == "authentication failed"]
    assert len(failed) == 5
    assert all(getattr(r, "token_fingerprint", "").startswith("sha256:") for r in failed)
    assert all("pxg_guess" not in str(vars(r)) for r in caplog.records)


def test_failed_attempts_with_one_token_prefix_lock_that_prefix_only(make_service: ServiceFactory) -> None:
    service = make_service(
        POWERX_WORKER="0", POWERX_AUTH_THROTTLE_ADDRESS="1000/minute", POWERX_AUTH_THROTTLE_TOKEN="3/minute"
    )
    with LiveServer(service, background=False) as live:
        same = [_get(live, f"pxg_AAAAAAAA{n}") for n in range(5)]  # one prefix: the first 12 characters
        other = _get(live, "pxg_BBBBBBBB0")
    assert [a.status_code for a in same] == [401, 401, 401, 429, 429]
    assert other.status_code == 401


def test_failed_console_sign_ins_are_throttled_logged_and_counted(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(POWERX_WORKER="0", POWERX_AUTH_THROTTLE_ADDRESS="3/minute")
    caplog.set_level(logging.WARNING, logger="powerx")
    with LiveServer(service, background=False) as live, httpx.Client(base_url=live.base_url) as browser:
        statuses = []
        for n in range(5):
            form = browser.get("/console/sign-in")
            answer = browser.post(
                "/console/sign-in", data={"token": f"pxg_wrong{n}", "csrf_token": csrf_of(form.text)}
            )
            statuses.append(answer.status_code)
        metrics = httpx.get(f"{live.base_url}/metrics").text
    assert statuses == [401, 401, 401, 429, 429]
    assert 0 < int(answer.headers["retry-after"]) <= 60
    assert "Too many failed sign-ins" in answer.text
    assert metric(metrics, "version_auth_failures_total", channel="console") == 3
    assert metric(metrics, "version_auth_throttled_total", channel="console") == 2
    assert len([r for r in caplog.records if r.getMessage() == "console sign-in failed"]) == 3


def test_the_default_thresholds_are_a_few_dozen_failures_a_minute() -> None:
    settings = load_settings({})
    assert (settings.auth_throttle_address, settings.auth_throttle_token) == ("30/minute", "10/minute")
    with pytest.raises(ValueError, match="POWERX_AUTH_THROTTLE_ADDRESS"):
        load_settings({"POWERX_AUTH_THROTTLE_ADDRESS": "lots"})
