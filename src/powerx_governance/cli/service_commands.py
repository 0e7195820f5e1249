"""`powerx version serve`: run the service (API, console, job worker, scheduler)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
import uvicorn

from powerx_governance.app import create_app
from powerx_governance.observability.logging import configure_logging
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings


def serve(service: GovernanceService, *, log_level: str = "info") -> None:
    """Serve the API (and run the worker and scheduler) until interrupted."""
    configure_logging(log_level)
    settings = service.settings
    uvicorn.run(
        create_app(service), host=settings.host, port=settings.port, log_level=log_level, access_log=False
    )


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
) -> None:
    """Run the governance service: HTTP API, job worker and scheduler."""
    overrides = ({"POWERX_HOST": host} if host else {}) | ({"POWERX_PORT": str(port)} if port else {})
    if no_worker:
        overrides |= {"POWERX_WORKER": "0", "POWERX_SCHEDULER": "0"}
    serve(GovernanceService.create(load_settings({**os.environ, **overrides})), log_level=log_level)
