"""Fixtures for notification tests: a real SMTP server and a real HTTP sink on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.functional.notifications.sinks import HttpSink, Mailbox, http_sink, smtp_server


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[tuple[HttpSink, str]]:
    with http_sink() as server:
        yield server
