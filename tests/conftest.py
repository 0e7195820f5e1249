"""Shared fixtures for functional tests of the running service.

Real stores (a SQLite file, and a PostgreSQL schema of its own on 127.0.0.1:5432), the real
FastAPI app served by uvicorn on a loopback port in a background thread, real tokens. Nothing
here is mocked; the only stand-in is a clock the test moves by hand, so retries that are due
"in 60 s" run without waiting.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Final, Literal, Protocol
from urllib.parse import quote

import httpx
import psycopg
import pytest
import uvicorn
from hypothesis import HealthCheck, settings
from psycopg import sql

from powerx_governance.app import create_app
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import create_token, revoke_token
from powerx_governance.db.session import sqlite_url, transaction
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings

REPO: Final = Path(__file__).resolve().parents[1]
EXAMPLES: Final = REPO / "examples"
RULES: Final = REPO / "config" / "version" / "governance_rules.yaml"
COMPAT: Final = REPO / "config" / "version" / "compat_matrix.yaml"
NOW: Final = datetime(2026, 11, 30, tzinfo=UTC)  # the example fleet's evaluation time

# Hypothesis's per-example deadline (200 ms) and its too-slow health check are wall-clock limits:
# on a machine whose cores run other tests (the suite runs on every core) they fail correct code.
settings.register_profile("powerx", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("powerx")

Backend = Literal["sqlite", "postgresql"]
BACKENDS: Final[tuple[Backend, ...]] = ("sqlite", "postgresql")
PG_HOST: Final = "127.0.0.1"
PG_PORT: Final = 5432
PG_DATABASE: Final = "test"
PG_USERS: Final = ("root", "postgres")  # trust auth; whichever role the machine has


class FakeClock:
    """The service's clock, moved by the test (thread-safe: the worker reads it too)."""

    def __init__(self, start: datetime = NOW) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


# -- databases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresServer:
    """The machine's PostgreSQL, reached as `user` with trust auth."""

    user: str

    @property
    def conninfo(self) -> str:
        return f"host={PG_HOST} port={PG_PORT} dbname={PG_DATABASE} user={self.user} connect_timeout=3"

    def url(self, schema: str) -> str:
        """A SQLAlchemy URL whose connections use `schema` (through the libpq `options` parameter)."""
        options = quote(f"-csearch_path={schema}", safe="")
        return f"postgresql+psycopg://{self.user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}?options={options}"

    def execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            connection.execute("SET lock_timeout = '10s'")  # a leaked connection fails the drop, not hangs it
            connection.execute(statement)


def _find_postgres() -> PostgresServer | str:
    """The server, or why it cannot be used."""
    failures = []
    for user in PG_USERS:
        server = PostgresServer(user)
        try:
            with psycopg.connect(server.conninfo) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as exc:
            failures.append(f"{user}: {str(exc).strip()}")
            continue
        return server
    return "; ".join(failures)


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The PostgreSQL server; missing, it fails the tests under CI and skips them elsewhere."""
    found = _find_postgres()
    if isinstance(found, PostgresServer):
        return found
    reason = f"PostgreSQL on {PG_HOST}:{PG_PORT}/{PG_DATABASE} is not usable ({found})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
    pytest.skip(f"{reason}; start it to run the PostgreSQL half of these tests")


@contextmanager
def provisioned_database(
    backend: Backend, directory: Path, postgres: Callable[[], PostgresServer]
) -> Iterator[str]:
    """A fresh, empty database URL: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield sqlite_url(directory / f"governance-{uuid.uuid4().hex[:8]}.db")
        return
    server = postgres()
    schema = f"pxg_test_{uuid.uuid4().hex[:12]}"
    server.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield server.url(schema)
    finally:
        server.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def postgres_getter(request: pytest.FixtureRequest) -> Callable[[], PostgresServer]:
    """Ask for the server only when a PostgreSQL database is wanted (the SQLite half never skips)."""

    def get() -> PostgresServer:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server

    return get


@pytest.fixture(params=BACKENDS, ids=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    name: Backend = request.param
    return name


@pytest.fixture
def database_url(backend: Backend, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of each backend for one test."""
    with provisioned_database(backend, tmp_path, postgres_getter(request)) as url:
        yield url


# -- services -------------------------------------------------------------------------------------


def service_env(
    database_url: str, var_dir: Path, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Settings for a test service: the example fleet and rules, no scheduler thread, a quick worker."""
    return {
        "POWERX_DATABASE_URL": database_url,
        "POWERX_VAR_DIR": str(var_dir),
        "POWERX_TENANT_SOURCE": str(EXAMPLES / "manifests"),
        "POWERX_CATALOG_SOURCE": str(EXAMPLES / "catalog.yaml"),
        "POWERX_RULES": str(RULES),
        "POWERX_COMPAT": str(COMPAT),
        "POWERX_SCHEDULER": "0",  # tests call schedule_tick() themselves, at the time they choose
        "POWERX_WORKER": "1",
        "POWERX_POLL_INTERVAL": "0.05s",
        "POWERX_SCAN_RETRY_DELAY": "60s",
        **(overrides or {}),
    }


class ServiceFactory(Protocol):
    def __call__(self, *, clock: FakeClock | None = None, **env: str) -> GovernanceService: ...


@contextmanager
def built_services(database_url: str, var_dir: Path) -> Iterator[ServiceFactory]:
    """Build services on `database_url`; every one is stopped (threads joined, engine disposed) after."""
    built: list[GovernanceService] = []

    def build(*, clock: FakeClock | None = None, **env: str) -> GovernanceService:
        settings = load_settings(service_env(database_url, var_dir, env))
        service = GovernanceService.create(settings, clock=clock or FakeClock())
        built.append(service)
        return service

    try:
        yield build
    finally:
        for service in built:
            service.stop()


@pytest.fixture
def make_service(database_url: str, tmp_path: Path) -> Iterator[ServiceFactory]:
    """`make_service(clock=..., POWERX_X="...")`: a service on this test's database."""
    with built_services(database_url, tmp_path) as build:
        yield build


def scanned_service(make_service: ServiceFactory) -> GovernanceService:
    """A service on the example fleet, fully scanned (notifications too), its worker thread off."""
    service = make_service(clock=FakeClock(), POWERX_WORKER="0")
    service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    while service.run_pending(limit=10_000):
        pass
    return service


def store_tenant(service: GovernanceService, tenant_uuid: str, *, tenant_key: str | None = None) -> None:
    """Store a tenant without plugins, as the tenant directory's manifest push would."""
    manifest = TenantManifest(tenant_uuid=tenant_uuid, tenant_key=tenant_key, core_version="1.24.0")
    with transaction(service.factory) as session:
        inventory_store.upsert_manifests(session, [manifest], service.clock())


def _store_from_source(service: GovernanceService, tenant: str) -> None:
    """A tenant's token names a stored tenant: before the first scan, store the tenant the way the
    scan would (from the service's tenant source), when the source has it."""
    source = service.runtime.tenant_source
    with service.factory() as session:
        if source is None or session.get(TenantRow, tenant) is not None:
            return
    found = [r.manifest for r in source.manifests([tenant]) if r.manifest is not None]
    with transaction(service.factory) as session:
        inventory_store.upsert_manifests(session, found, service.clock())


def issue_token(service: GovernanceService, role: Role, tenant: str | None = None) -> str:
    """A new API token's plaintext, created the way `powerx version token create` does."""
    if tenant is not None:
        _store_from_source(service, tenant)
    with transaction(service.factory) as session:
        _, plaintext = create_token(
            session,
            name=f"{role.value}-{tenant or 'fleet'}",
            role=role,
            tenant=tenant,
            now=service.clock(),
        )
    return plaintext


def issue_revoked_token(service: GovernanceService, role: Role, tenant: str | None = None) -> str:
    with transaction(service.factory) as session:
        row, plaintext = create_token(session, name="revoked", role=role, tenant=tenant, now=service.clock())
        revoke_token(session, row.id, service.clock())
    return plaintext


# -- the HTTP server ------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], *, timeout: float = 20.0, interval: float = 0.02) -> None:
    """Poll `predicate` until it holds; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        time.sleep(interval)


def free_port() -> int:
    """A loopback TCP port free right now (for a process or server that binds it itself)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    """The service's real ASGI app served by uvicorn on a free loopback port, in a thread."""

    service: GovernanceService
    background: bool = True
    base_url: str = ""
    _server: uvicorn.Server | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _listener: socket.socket | None = field(default=None, repr=False)

    def __enter__(self) -> LiveServer:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it uvicorn's separate header and body writes wait out 40 ms delayed ACKs.
        self._listener = listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.service, background=self.background),
            lifespan="on",
            log_config=None,  # leave the process's logging (pytest's capture) alone
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        # uvicorn installs signal handlers only on the main thread; this one is not.
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="uvicorn-test", daemon=True
        )
        self.base_url = f"http://127.0.0.1:{port}"
        self._thread.start()
        try:
            wait_until(self._healthy, timeout=15)
        except AssertionError:
            self.__exit__()
            raise
        return self

    def _healthy(self) -> bool:
        if self._thread is not None and not self._thread.is_alive():
            raise AssertionError("uvicorn stopped during startup")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1, verify=_tls_context()).status_code == 200
        except httpx.TransportError:
            return False

    def __exit__(self, *_: object) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            assert not self._thread.is_alive(), "uvicorn did not stop"
        if self._listener is not None:
            self._listener.close()  # uvicorn closed it already; closing twice is harmless

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, verify=_tls_context())


@cache
def _tls_context() -> ssl.SSLContext:
    """One verifying context for every test client (httpx would build one per client: ~30 ms each)."""
    return ssl.create_default_context()
