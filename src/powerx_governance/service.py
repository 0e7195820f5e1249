"""The running service: store, scan runtime, job worker and scheduler threads.

One object owns the database engine and background threads; the FastAPI app and the CLI
use it. Several instances may share one PostgreSQL database: jobs are claimed with
conditional updates and each scheduled slot is a unique row, so a slot runs once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.auth.throttle import AuthThrottle, parse_limit
from powerx_governance.catalog.cache import CatalogCache
from powerx_governance.components import COMPONENTS
from powerx_governance.db.migrate import upgrade
from powerx_governance.db.session import make_engine, session_factory, transaction
from powerx_governance.durations import parse_duration
from powerx_governance.errors import InputError
from powerx_governance.feature_flags import Flag
from powerx_governance.flags.service import flags_enabled, is_enabled
from powerx_governance.jobs import queue
from powerx_governance.jobs.interface import Handlers, JobQueue, QueueBackend
from powerx_governance.jobs.local import LocalQueue
from powerx_governance.jobs.settings import JobsSettings, load_jobs_settings
from powerx_governance.kernel import (
    ChangeHook,
    ChangeStage,
    Collaborators,
    Component,
    ComponentError,
    Install,
    InstallContext,
    Mergeable,
    Periodic,
    Task,
    resolve,
)
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.observability.metrics import Metrics
from powerx_governance.policy_versions.service import PolicyRegistry
from powerx_governance.scans.model import ScanKind, ScanStatus, ScanTrigger
from powerx_governance.scans.runner import (
    ScanBusyError,
    ScanRuntime,
    request_scan,
)
from powerx_governance.scans.tables import ScanRow
from powerx_governance.settings import Settings, load_settings
from powerx_governance.sources.files import FileCatalogSource, FileTenantSource
from powerx_governance.sources.interface import CatalogSource, TenantSource
from powerx_governance.times import utc_now

log = logging.getLogger("powerx.service")
Clock = Callable[[], datetime]
T = TypeVar("T")


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def tenant_source_from(settings: Settings, metrics: Metrics) -> TenantSource | None:
    spec = settings.tenant_source
    if not spec:
        return None
    if _is_url(spec):
        from powerx_governance.sources.http_directory import HttpTenantSource  # noqa: PLC0415 - loaded on use

        return HttpTenantSource(spec, token=settings.source_token, on_error=metrics.source_error)
    return FileTenantSource(Path(spec))


def catalog_source_from(settings: Settings, metrics: Metrics) -> CatalogSource | None:
    spec = settings.catalog_source
    if not spec:
        return None
    if _is_url(spec):
        from powerx_governance.sources.http_catalog import HttpCatalogSource  # noqa: PLC0415 - loaded on use

        return HttpCatalogSource(spec, token=settings.source_token, on_error=metrics.source_error)
    return FileCatalogSource(Path(spec), settings.compat_path)


def _policy_rescan(session: Session, actor: str, now: datetime) -> str:
    """A new or restored policy version re-evaluates the fleet: a full scan in the same transaction."""
    return request_scan(session, kind=ScanKind.FULL, trigger=ScanTrigger.POLICY, now=now, requested_by=actor)


DEFAULT_SHARD_SIZE = 500


def shard_size(configured: int | None, backend: QueueBackend) -> int:
    """Tenants per shard: as configured, else sharded on procrastinate (workers scan in parallel)
    and one job on the local queue (the embedded default, unchanged)."""
    if configured is not None:
        return configured
    return DEFAULT_SHARD_SIZE if backend is QueueBackend.PROCRASTINATE else 0


@dataclass(frozen=True, slots=True)
class Installed:
    """What the components contributed, gathered once at start."""

    tasks: Mapping[str, Task]
    periodic: tuple[Periodic, ...]
    always_on_tasks: frozenset[str]  # run even while governance is off (audit shipping)
    mergeable: Mapping[str, Mergeable]  # tasks whose waiting jobs may run as one
    always_on_periodic: tuple[Periodic, ...]
    change_hooks: tuple[ChangeHook, ...]  # by stage, then component order
    collaborators: Collaborators
    sections: Mapping[str, object]  # each component's settings section, by component name
    components: tuple[Component, ...]


def install_components(service: GovernanceService, components: tuple[Component, ...]) -> Installed:
    """Read every component's settings section and install it; ComponentError names what is wrong."""
    collaborators = Collaborators()
    sections: dict[str, object] = {}
    tasks: dict[str, Task] = {}
    periodic: list[Periodic] = []
    always_on_tasks: set[str] = set()
    mergeable: dict[str, Mergeable] = {}
    always_on_periodic: list[Periodic] = []
    hooks: list[tuple[ChangeStage, int, ChangeHook]] = []
    for position, component in enumerate(components):
        section = (
            resolve(component.settings, component.name)(service.settings) if component.settings else None
        )
        sections[component.name] = section
        if component.install is None:
            continue
        install: Install = resolve(component.install, component.name)
        made = install(InstallContext(service, section, collaborators, component.name))
        for task, run in made.tasks.items():
            if task in tasks:
                raise ComponentError(f"component {component.name!r} registers task {task!r} twice")
            tasks[task] = run
        periodic.extend(made.periodic)
        always_on_tasks |= made.always_on_tasks
        for task, how in made.mergeable.items():
            if task not in made.tasks:
                raise ComponentError(f"component {component.name!r} merges task {task!r} it has not")
            mergeable[task] = how
        always_on_periodic.extend(made.always_on_periodic)
        if made.change_hook is not None:
            hooks.append((made.change_stage, position, made.change_hook))
        collaborators = collaborators.adding(made.provides, component.name)
    return Installed(
        tasks=tasks,
        periodic=tuple(periodic),
        always_on_tasks=frozenset(always_on_tasks),
        mergeable=mergeable,
        always_on_periodic=tuple(always_on_periodic),
        change_hooks=tuple(hook for _, _, hook in sorted(hooks, key=lambda h: (h[0], h[1]))),
        collaborators=collaborators,
        sections=sections,
        components=components,
    )


@dataclass
class GovernanceService:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    metrics: Metrics
    policies: PolicyRegistry
    catalog_cache: CatalogCache
    clock: Clock = utc_now
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{id(object())}")
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _wake: threading.Event = field(default_factory=threading.Event)
    auth_throttle: AuthThrottle = field(init=False)
    installed: Installed = field(init=False)  # set once by `create`, before anything runs
    runtime: ScanRuntime = field(init=False)
    queue: JobQueue = field(init=False)  # runs the jobs: the local table, or procrastinate
    _background: list[Callable[[], None]] = field(default_factory=list)  # stops what `start` started

    def __post_init__(self) -> None:
        self.auth_throttle = AuthThrottle(
            parse_limit(self.settings.auth_throttle_address, "POWERX_AUTH_THROTTLE_ADDRESS"),
            parse_limit(self.settings.auth_throttle_token, "POWERX_AUTH_THROTTLE_TOKEN"),
            self.metrics,
        )

    def rescan(self, session: Session, actor: str, now: datetime) -> str:
        """A full re-scan after a policy or flag change (`kernel.Rescan`), in the caller's transaction."""
        return _policy_rescan(session, actor, now)

    # -- components ----------------------------------------------------------------------------

    @property
    def tasks(self) -> Mapping[str, Task]:
        return self.installed.tasks

    def require(self, kind: type[T]) -> T:
        """A collaborator a component provides (e.g. `NotificationRuntime`, `EventsConfig`)."""
        return self.installed.collaborators.require(kind, "the service")

    @property
    def notifications(self) -> NotificationRuntime:
        return self.require(NotificationRuntime)

    def section(self, component: str, kind: type[T]) -> T:
        """A component's settings section, read at start."""
        found = self.installed.sections.get(component)
        if not isinstance(found, kind):
            raise ComponentError(f"component {component!r} has no {kind.__name__} settings section")
        return found

    # -- flags and policy ----------------------------------------------------------------------

    def flags(self) -> dict[Flag, bool]:
        """Whether each feature flag is on now (one read of the overrides)."""
        with self.factory() as session:
            return self.flags_in(session)

    def flags_in(self, db: Session | Connection) -> dict[Flag, bool]:
        """`flags`, read in the caller's transaction (the API reads them with the caller's token)."""
        enabled = flags_enabled(db, self.settings.flags)
        for flag, on in enabled.items():
            self.metrics.feature_flag_enabled.labels(flag=flag.value).set(1 if on else 0)
        return enabled

    def enabled(self, flag: Flag) -> bool:
        return self.flags()[flag]

    def sync_policy(self) -> None:
        """Read the rules file: a changed, valid file becomes the next policy version and queues a
        full re-scan; an invalid one is refused (audited) and the version in force stays."""
        try:
            created = self.policies.sync(self.clock())
        except InputError as exc:  # nothing in force yet: scans fail naming the field until fixed
            log.error("rules file unusable and no policy version in force: %s", exc)  # noqa: TRY400 - expected
            return
        if created is not None:
            self._wake.set()

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        migrate: bool = True,
        components: tuple[Component, ...] = COMPONENTS,
        engine: Engine | None = None,
    ) -> GovernanceService:
        """Build the service: the store (migrated), then every component in order; ComponentError or
        ValueError names what is misconfigured, before anything runs."""
        if settings.default_database:
            settings.var_dir.mkdir(parents=True, exist_ok=True)
        engine = engine or make_engine(settings.database_url)
        if migrate:
            upgrade(engine)
        factory = session_factory(engine)
        metrics = Metrics()
        registry = PolicyRegistry(
            factory,
            settings.rules_path,
            plain=lambda session: not is_enabled(session, settings.flags, Flag.UPGRADE_POLICY),
            rescan=_policy_rescan,
        )
        service = cls(settings, engine, factory, metrics, registry, CatalogCache(), clock)
        service.installed = install_components(service, components)
        jobs = service.jobs_settings()
        service.runtime = ScanRuntime(
            factory=factory,
            policy=lambda: registry.current(clock()),
            clock=clock,
            metrics=metrics,
            notifications=service.notifications,
            tenant_source=tenant_source_from(settings, metrics),
            catalog_source=catalog_source_from(settings, metrics),
            retry_delay_seconds=settings.retry_delay_seconds,
            change_hooks=service.installed.change_hooks,
            catalog_cache=service.catalog_cache,
            shard_size=shard_size(settings.scan_shard_size, jobs.backend),
            delta_shard_from=settings.scan_delta_shard_from,
        )
        service.queue = service._job_queue()
        return service

    def jobs_settings(self) -> JobsSettings:
        found = self.installed.sections.get("jobs")
        if isinstance(found, JobsSettings):
            return found
        return load_jobs_settings(self.settings.environ, self.settings.database_url)

    def _job_queue(self) -> JobQueue:
        """The backend `POWERX_QUEUE_BACKEND` names; jobs enqueued on this engine go to it."""
        jobs = self.jobs_settings()
        handlers = Handlers(
            tasks=self.installed.tasks,
            runnable=self._runnable,
            mergeable=self.installed.mergeable,
            tick=self.schedule_tick,
            postponed=(ScanBusyError,),
        )
        if jobs.backend is QueueBackend.PROCRASTINATE:
            from powerx_governance.jobs.procrastinate_queue import (  # noqa: PLC0415 - only at scale
                ProcrastinateQueue,
            )

            backend = ProcrastinateQueue(
                self.factory, self.engine, self.clock, self.worker_name, handlers, jobs.procrastinate
            )
            queue.route_jobs(self.engine, backend)
            return backend
        queue.route_jobs(self.engine, None)
        return LocalQueue(self.factory, self.clock, self.worker_name, handlers)

    def _runnable(self) -> frozenset[str] | None:
        """Every task while governance is on (None); only the always-on ones (audit shipping) while off."""
        if self.enabled(Flag.GOVERNANCE):
            return None
        return self.installed.always_on_tasks

    def reconfigured(
        self, environ: Mapping[str, str], *, components: tuple[Component, ...] | None = None
    ) -> GovernanceService:
        """A service on the same store with these environment variables changed: what a restart with
        a changed configuration gives. This one is left as it is (stop it first if it runs)."""
        settings = load_settings({**self.settings.environ, **environ})
        return GovernanceService.create(
            settings,
            clock=self.clock,
            migrate=False,
            components=components or self.installed.components,
            engine=self.engine,
        )

    # -- scans -------------------------------------------------------------------------------

    def request_scan(
        self,
        kind: ScanKind,
        trigger: ScanTrigger,
        *,
        tenants: tuple[str, ...] = (),
        requested_by: str | None = None,
    ) -> str:
        with transaction(self.factory) as session:
            scan_id = request_scan(
                session,
                kind=kind,
                trigger=trigger,
                now=self.clock(),
                tenants=tenants,
                requested_by=requested_by,
            )
        self._wake.set()
        return scan_id

    def request_delta(self, session: Session, requested_by: str) -> str:
        """In the caller's transaction, coalescing pushes onto a delta scan that has not started yet.

        Call `wake()` after the commit so the worker picks it up at once.
        """
        pending = session.execute(
            select(ScanRow.scan_id)
            .where(ScanRow.kind == ScanKind.DELTA.value, ScanRow.status == ScanStatus.QUEUED.value)
            .limit(1)
        ).scalar_one_or_none()
        return pending or request_scan(
            session,
            kind=ScanKind.DELTA,
            trigger=ScanTrigger.PUSH,
            now=self.clock(),
            requested_by=requested_by,
        )

    def wake(self) -> None:
        self._wake.set()

    def schedule_tick(self) -> str | None:
        """Request the scheduled full scan of the current slot, once across every instance.

        Nothing is scheduled while the `plugin-version-governance` flag is off.
        """
        self.sync_policy()
        for follow_up in self.installed.always_on_periodic:
            follow_up(self)
        if not self.enabled(Flag.GOVERNANCE):
            return None
        rules = self.runtime.rules()
        interval = parse_duration(rules.defaults.scan_interval).total_seconds()
        now = self.clock()
        slot = datetime.fromtimestamp(now.timestamp() // interval * interval, UTC).isoformat()
        try:
            with transaction(self.factory) as session:
                scan_id = request_scan(
                    session,
                    kind=ScanKind.FULL,
                    trigger=ScanTrigger.SCHEDULE,
                    now=now,
                    requested_by="scheduler",
                    schedule_slot=slot,
                )
        except IntegrityError:
            scan_id = None  # another instance (or an earlier tick) already requested this slot
        for follow_up in self.installed.periodic:  # digests, SLA checks, expiries: each idempotent per period
            follow_up(self)
        self._wake.set()
        return scan_id

    # -- jobs --------------------------------------------------------------------------------

    def run_pending(self, limit: int = 100, *, tasks: frozenset[str] | None = None) -> int:
        """Run due jobs (only `tasks` when given) in this process until none is left (or `limit`);
        returns how many ran. While governance is off only the always-on tasks run (audit shipping)."""
        return self.queue.run_pending(limit, tasks=tasks)

    # -- background threads ------------------------------------------------------------------

    def start(self) -> None:
        """The serving process: read the rules file now (then on every scheduler tick), start the threads.

        Other processes (CLI commands) never author policy versions from their own environment.
        """
        self.sync_policy()
        if self.settings.worker:  # scans and pushes run here: index the catalog before the first
            self._spawn("catalog-warm", self._warm_catalog)
        if self.queue.backend is QueueBackend.PROCRASTINATE:
            self._start_procrastinate()
            return
        if self.settings.worker:
            self._spawn("worker", self._worker_loop)
        if self.settings.scheduler:
            self._spawn("scheduler", self._scheduler_loop)

    def _start_procrastinate(self) -> None:
        """On procrastinate the tick is a periodic task run by the workers; `POWERX_WORKER=1` runs one
        in this process too (`serve --no-worker` and the API-only processes run none)."""
        if not self.settings.worker:
            return
        from powerx_governance.jobs.procrastinate_queue import (  # noqa: PLC0415 - only at scale
            BackgroundWorker,
            ProcrastinateQueue,
        )

        if isinstance(self.queue, ProcrastinateQueue):
            worker = BackgroundWorker(self.queue, f"{self.worker_name}:serve")
            worker.start()
            self._background.append(worker.stop)

    def warm_catalog(self) -> None:
        """Index the stored catalog now (plugins, advisories, matrix), so that the first scan or
        push of this process does not pay for it (~0.2 s of CPU on the reference catalog); later
        ones only re-read what changed (`CatalogCache.index`)."""
        with self.factory() as session:
            self.catalog_cache.index(session)

    def _warm_catalog(self) -> None:
        try:
            self.warm_catalog()
        except Exception:  # the first scan indexes it then, and reports what is wrong
            log.exception("indexing the catalog at start failed")

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"powerx-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_pending()
            except Exception:  # keep the worker alive through database hiccups
                log.exception("worker iteration failed")
                ran = 0
            if not ran:
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()

    def _scheduler_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.schedule_tick()
            except Exception:  # a bad rules file must not stop the service
                log.exception("scheduler tick failed")
            self._stop.wait(
                min(5.0, parse_duration(self.runtime.rules().defaults.scan_interval).total_seconds())
            )

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for stop in self._background:
            stop()
        for thread in self._threads:
            thread.join(timeout=30)
        self.engine.dispose()


def open_service() -> GovernanceService:
    """The service this process's environment configures (what a command-line command works on)."""
    return GovernanceService.create(load_settings())
