"""Real receivers on loopback for notification tests: an SMTP server and an HTTP sink.

The SMTP server is aiosmtpd; the HTTP sink is a ThreadingHTTPServer that accepts webhook and
notify-service posts, deduplicates them by `Idempotency-Key` the way a careful receiver does,
and can be told to fail: a seeded share of requests answered 503 before processing, or
processed and then answered 500 (an acknowledgement lost on the way back).
"""

from __future__ import annotations

import email
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import free_port

# -- SMTP -----------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server received: parsed messages with their envelope recipients."""

    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        message = email.message_from_bytes(content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(([str(r) for r in envelope.rcpt_tos], message))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for rcpts, m in self.messages if address in rcpts]

    def all(self) -> list[EmailMessage]:
        with self.lock:
            return [m for _, m in self.messages]


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """An SMTP server on a free loopback port, stopped afterwards."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()


def body_text(message: EmailMessage, subtype: str) -> str:
    """The text/plain or text/html part of a received email."""
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content


# -- HTTP -----------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    key: str | None
    headers: dict[str, str]
    body: Any


@dataclass
class SinkBehaviour:
    """How the sink answers: a seeded failure share, or always one status."""

    fail_share: float = 0.0
    lost_ack_share: float = 0.0  # of the failures: processed, then answered 500
    always_status: int | None = None
    retry_after: str | None = None
    seed: int = 0


class HttpSink:
    """Collects POSTs; `accepted` holds one body per Idempotency-Key, `attempts` counts every request."""

    def __init__(self, behaviour: SinkBehaviour | None = None) -> None:
        self.behaviour = behaviour or SinkBehaviour()
        self._random = random.Random(self.behaviour.seed)  # noqa: S311 - seeded fault injection
        self.lock = threading.Lock()
        self.accepted: dict[str, Received] = {}
        self.requests: list[Received] = []
        self.refused = 0

    def handle(self, received: Received) -> tuple[int, dict[str, str], bytes]:
        """Decide the answer to one request (and remember it when it is processed)."""
        b = self.behaviour
        with self.lock:
            self.requests.append(received)
            if b.always_status is not None:
                self.refused += 1
                headers = {"Retry-After": b.retry_after} if b.retry_after else {}
                return b.always_status, headers, b'{"error": "unavailable"}'
            roll = self._random.random()
            if roll < b.fail_share * (1 - b.lost_ack_share):
                self.refused += 1
                return 503, {}, b'{"error": "try later"}'
            if received.key is not None:
                self.accepted.setdefault(received.key, received)  # a repeated key is the same message
            if roll < b.fail_share:
                return 500, {}, b'{"error": "lost ack"}'
        return 200, {}, json.dumps({"errcode": 0, "code": 0, "id": received.key}).encode()

    def keys_seen(self) -> Counter[str]:
        with self.lock:
            return Counter(r.key for r in self.requests if r.key is not None)

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.accepted.values() if r.path == path]


def _handler(sink: HttpSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            received = Received(
                path=self.path.split("?", 1)[0],
                key=self.headers.get("Idempotency-Key"),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=json.loads(raw) if raw else None,
            )
            status, headers, body = sink.handle(received)
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            return

    return Handler


@contextmanager
def http_sink(behaviour: SinkBehaviour | None = None) -> Iterator[tuple[HttpSink, str]]:
    """An HTTP sink on a free loopback port; yields it and its base URL."""
    sink = HttpSink(behaviour)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(sink))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield sink, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
