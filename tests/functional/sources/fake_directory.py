"""A fake PowerX tenant directory and catalog service on loopback, with knobs for faults.

It serves the real contract (`GET /internal/tenants`, `GET /internal/tenants/{uuid}/manifest`,
`POST /internal/version/catalog`) over real HTTP/1.1 from a background thread, counts every
request, and injects the faults a test asks for.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self, cast
from urllib.parse import parse_qs, urlsplit

PLUGIN: Final = "com.powerx.plugins.crm"
CATALOG_REQUEST_SCHEMA: Final = "powerx.catalog-request/v1"


def tenant_uuid(index: int) -> str:
    """A stable, realistic tenant uuid for tenant number `index`."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://powerx.invalid/tenants/{index}"))


def manifest(uuid_: str, version: str = "2.3.0") -> dict[str, Any]:
    """A valid `powerx.manifest/v1` document."""
    return {
        "schema": "powerx.manifest/v1",
        "tenant_uuid": uuid_,
        "core_version": "1.24.0",
        "plan": "pro",
        "plugins": [{"plugin_id": PLUGIN, "version": version, "channel": "stable"}],
    }


def catalog_document(*releases: dict[str, Any]) -> dict[str, Any]:
    """A valid `powerx.catalog/v1` answer: one plugin, one advisory, one matrix entry."""
    default = [{"version": v, "released_at": "2026-01-01T00:00:00Z"} for v in ("2.3.0", "2.4.0")]
    return {
        "schema": "powerx.catalog/v1",
        "plugins": [{"plugin_id": PLUGIN, "name": "CRM", "releases": [*default, *releases]}],
        "advisories": [
            {
                "id": "PXSA-2026-0001",
                "published": "2026-01-01T00:00:00Z",
                "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected": [
                    {
                        "package": {"ecosystem": "PowerX", "name": PLUGIN},
                        "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.4.0"}]}],
                    }
                ],
            }
        ],
        "matrix": [{"host": "px.host.v1", "plugin": PLUGIN, "action": "warn", "min_version": "2.4.0"}],
    }


def closed_port_url() -> str:
    """A loopback base URL nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Faults:
    """What the fake gets wrong, and when."""

    fail_rate: float = 0.0  # share of all requests answered 500 or 503, drawn from `seed`
    seed: int = 0
    always_fail: dict[str, int] = field(default_factory=dict)  # tenant uuid -> status, forever
    fail_listing_page: int | None = None  # this page (0-based) of the tenant list always answers 500
    delays: dict[str, float] = field(default_factory=dict)  # tenant uuid -> seconds before answering
    raw_manifests: dict[str, bytes] = field(default_factory=dict)  # tenant uuid -> body served verbatim
    rate_limited: dict[str, str] = field(default_factory=dict)  # tenant -> Retry-After of a first 429
    catalog_failures: int = 0  # the first N catalog requests answer 503
    catalog_body: bytes | None = None  # served verbatim instead of the catalog document
    token: str | None = None  # when set, requests without `Bearer <token>` answer 401


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # handler threads are joined on close: nothing outlives the fake
    block_on_close = True

    def __init__(self, fake: FakePowerX) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (its read timeout, an abandoned scan) is normal here; the rest is not."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakePowerX:
    """The fake services; use as a context manager (started on enter, stopped and joined on exit)."""

    def __init__(
        self, tenants: int = 0, *, catalog: dict[str, Any] | None = None, faults: Faults | None = None
    ) -> None:
        self.manifests: dict[str, dict[str, Any]] = {
            tenant_uuid(i): manifest(tenant_uuid(i)) for i in range(tenants)
        }
        self.listed: list[str] = list(self.manifests)
        self.catalog = catalog if catalog is not None else catalog_document()
        self.faults = faults or Faults()
        self.hits: Counter[str] = Counter()  # "list", "catalog", or a tenant uuid
        self.failures_served = 0  # answers that were injected faults (random or scheduled)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._asked: Counter[str] = Counter()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> int:
        """Every request served so far."""
        with self._lock:
            return sum(self.hits.values())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stopping.set()  # wakes handlers sleeping on a delay
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def count(self, key: str) -> int:
        """Record a request for `key`; the number of requests for it so far, this one included."""
        with self._lock:
            self.hits[key] += 1
            return self.hits[key]

    def random_failure(self, request: str) -> int | None:
        """500 or 503 for `fail_rate` of the requests, or None.

        Each draw is seeded by (seed, request line, how often it was asked), so which attempts fail
        is reproducible whatever order the client's threads send them in.
        """
        if self.faults.fail_rate <= 0:
            return None
        with self._lock:
            self._asked[request] += 1
            draw = random.Random(f"{self.faults.seed}:{request}:{self._asked[request]}")  # noqa: S311 - fault injection
        status = draw.choice((500, 503))
        return status if draw.random() < self.faults.fail_rate else None

    def served_fault(self) -> None:
        with self._lock:
            self.failures_served += 1

    def page(self, query: dict[str, list[str]]) -> tuple[int, bytes]:
        """(status, body) for one page of the tenant list; tokens are offsets."""
        size = int(query.get("page_size", ["100"])[0])
        offset = int(query.get("page_token", ["0"])[0])
        if offset // size == self.faults.fail_listing_page:
            self.served_fault()
            return 500, _json({"error": "listing failed"})
        tenants = self.listed[offset : offset + size]
        more = offset + size < len(self.listed)
        return 200, _json(
            {
                "tenants": [{"tenant_uuid": t} for t in tenants],
                "next_page_token": str(offset + size) if more else None,
            }
        )

    def catalog_answer(self, body: bytes) -> tuple[int, bytes]:
        """(status, body) for a catalog request: checks the request, then scheduled faults."""
        request = json.loads(body or b"null")
        if not isinstance(request, dict) or request.get("schema") != CATALOG_REQUEST_SCHEMA:
            return 400, _json({"error": "expected a powerx.catalog-request/v1 body"})
        if self.count("catalog-attempt") <= self.faults.catalog_failures:
            self.served_fault()
            return 503, _json({"error": "warming up"})
        if self.faults.catalog_body is not None:
            return 200, self.faults.catalog_body
        return 200, _json(self.catalog)


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls
    timeout = 2.0  # an idle keep-alive connection is dropped, so closing never waits long

    @property
    def fake(self) -> FakePowerX:
        return cast("_Server", self.server).fake

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's parameter name
        """Quiet: tests read counters, not access logs."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/")
        if segments == ["internal", "tenants"]:
            self._answer("list", lambda: self.fake.page(parse_qs(parts.query)))
        elif len(segments) == 4 and segments[:2] == ["internal", "tenants"] and segments[3] == "manifest":
            self._manifest(segments[2])
        else:
            self._send(404, b'{"error": "no such route"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path != "/internal/version/catalog":
            self._send(404, b'{"error": "no such route"}')
            return
        self._answer("catalog", lambda: self.fake.catalog_answer(body))

    def _answer(self, key: str, build: Callable[[], tuple[int, bytes]]) -> None:
        """Count, check the token, inject a random fault, else answer `build()`."""
        self.fake.count(key)
        if self.fake.faults.token and self.headers.get("Authorization") != f"Bearer {self.fake.faults.token}":
            self._send(401, b'{"error": "unauthorised"}')
            return
        failure = self.fake.random_failure(self.path)
        if failure is not None:
            self.fake.served_fault()
            self._send(failure, b'{"error": "injected"}')
            return
        self._send(*build())

    def _manifest(self, tenant: str) -> None:
        number = self.fake.count(tenant)
        faults = self.fake.faults
        if faults.token and self.headers.get("Authorization") != f"Bearer {faults.token}":
            self._send(401, b'{"error": "unauthorised"}')
        elif tenant in faults.rate_limited and number == 1:
            self.fake.served_fault()
            self._send(429, b'{"error": "slow down"}', {"Retry-After": faults.rate_limited[tenant]})
        elif tenant in faults.always_fail:
            self.fake.served_fault()
            self._send(faults.always_fail[tenant], b'{"error": "broken"}')
        elif (status := self.fake.random_failure(self.path)) is not None:
            self.fake.served_fault()
            self._send(status, b'{"error": "injected"}')
        elif not self.fake.stopping.wait(faults.delays.get(tenant, 0.0)):
            self._send_manifest(tenant)

    def _send_manifest(self, tenant: str) -> None:
        raw = self.fake.faults.raw_manifests.get(tenant)
        if raw is not None:
            self._send(200, raw)
        elif tenant in self.fake.manifests:
            self._send(200, json.dumps(self.fake.manifests[tenant]).encode())
        else:
            self._send(404, b'{"error": "no such tenant"}')

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its read timeout)
            self.close_connection = True
