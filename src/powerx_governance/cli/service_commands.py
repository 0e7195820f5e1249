"""`powerx version serve`: run the service (API, console, job worker, scheduler).

With `--workers N` (`POWERX_WEB_WORKERS`) uvicorn's supervisor starts N API processes sharing the
listening socket. The supervisor is this process: it migrates the store, then runs the job worker
and the scheduler itself, once, while the N processes only answer requests (they run no jobs: a
job they queue is run by the supervisor's worker within `POWERX_POLL_INTERVAL`). What must hold
across processes already does, in the store: the audit chain lock, job claims and scheduled slots
are database locks and rows, and SQLite writers queue on a file lock (`db.session`). Per process:
`/metrics` counters, the failed-authentication throttle and the decisions' group commit.
"""

from __future__ import annotations

import os
from typing import Annotated, Final

import typer
import uvicorn
from fastapi import FastAPI

from powerx_governance.app import create_app
from powerx_governance.observability.logging import configure_logging
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings

_WORKER_LOG_LEVEL: Final = "POWERX_SERVE_LOG_LEVEL"  # what `serve --log-level` hands its API processes


def serve(service: GovernanceService, *, log_level: str = "info") -> None:
    """Serve the API (and run the worker and scheduler) until interrupted."""
    configure_logging(log_level)
    settings = service.settings
    if settings.web_workers == 1:
        uvicorn.run(
            create_app(service), host=settings.host, port=settings.port, log_level=log_level, access_log=False
        )
        return
    # the API processes are spawned: they read this environment, and run no jobs and no scheduler
    os.environ.update(
        {**settings.environ, "POWERX_WORKER": "0", "POWERX_SCHEDULER": "0", _WORKER_LOG_LEVEL: log_level}
    )
    service.start()
    try:
        uvicorn.run(
            f"{__name__}:api_process_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.web_workers,
            log_level=log_level,
            access_log=False,
        )
    finally:
        service.stop()


def api_process_app() -> FastAPI:
    """The app of one of `serve --workers`' API processes (the supervisor migrated the store)."""
    configure_logging(os.environ.get(_WORKER_LOG_LEVEL, "info"))
    return create_app(GovernanceService.create(load_settings(), migrate=False), background=False)


def serve_command(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default $POWERX_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default $POWERX_PORT or 8717).")] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
    no_worker: Annotated[
        bool,
        typer.Option(
            "--no-worker",
            help="API and console only: jobs and the scheduler run in `powerx version worker` processes.",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="API processes sharing the port (default $POWERX_WEB_WORKERS or 1); the jobs and the"
            " scheduler run once, in the supervising process.",
        ),
    ] = None,
) -> None:
    """Run the governance service: HTTP API, job worker and scheduler."""
    overrides = ({"POWERX_HOST": host} if host else {}) | ({"POWERX_PORT": str(port)} if port else {})
    if workers is not None:
        overrides |= {"POWERX_WEB_WORKERS": str(workers)}
    if no_worker:
        overrides |= {"POWERX_WORKER": "0", "POWERX_SCHEDULER": "0"}
    serve(GovernanceService.create(load_settings({**os.environ, **overrides})), log_level=log_level)
