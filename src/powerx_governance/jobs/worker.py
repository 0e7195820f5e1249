"""`powerx version worker`: a job process on procrastinate, with `/readyz` and `/metrics`.

Run any number of them, on any number of machines sharing the PostgreSQL database; each has a
unique name and a heartbeat, runs `--concurrency` jobs at once, and defers the periodic tick
(once per period across all of them). SIGTERM or Ctrl-C stops it gracefully; a killed worker's
jobs are retried by the others once its heartbeat is `POWERX_WORKER_STALLED_AFTER` old.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy import text

from powerx_governance.jobs.metrics import render_queue_metrics
from powerx_governance.jobs.procrastinate_queue import ProcrastinateQueue
from powerx_governance.observability.logging import configure_logging
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

log = logging.getLogger("powerx.worker")


class _Probe(BaseHTTPRequestHandler):
    """`/healthz`, `/readyz` (the store answers) and `/metrics` (the service's and the queue's)."""

    service: GovernanceService

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer(200, "application/json", json.dumps({"status": "ok"}).encode())
        elif self.path == "/readyz":
            self._ready()
        elif self.path == "/metrics":
            jobs = self.service.queue
            ticks = jobs.ticks if isinstance(jobs, ProcrastinateQueue) else None
            body = self.service.metrics.render() + render_queue_metrics(jobs.stats(), ticks)
            self._answer(200, "text/plain; version=0.0.4; charset=utf-8", body)
        else:
            self._answer(404, "application/json", json.dumps({"status": "not found"}).encode())

    def _ready(self) -> None:
        try:
            with self.service.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            body = {"status": "unavailable", "detail": type(exc).__name__}
            self._answer(503, "application/json", json.dumps(body).encode())
            return
        body = {"status": "ready", "worker": self.service.worker_name}
        self._answer(200, "application/json", json.dumps(body).encode())

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        del format, args  # probes every few seconds: not worth a log line each


def serve_probes(service: GovernanceService, host: str, port: int) -> ThreadingHTTPServer:
    """The worker's small HTTP listener, in a daemon thread; returns the server (its bound port)."""
    handler = type("Probe", (_Probe,), {"service": service})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="powerx-worker-probes", daemon=True).start()
    return server


def worker_command(
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs this process runs at once.")] = 2,
    host: Annotated[
        str | None, typer.Option(help="Probe listener address (default $POWERX_WORKER_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Probe listener port (default $POWERX_WORKER_PORT or 8718; 0: any).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug | info | warning | error")] = "info",
) -> None:
    """Run jobs from the shared PostgreSQL queue (POWERX_QUEUE_BACKEND=procrastinate) until stopped."""
    configure_logging(log_level)
    service = open_service()
    try:
        jobs = service.jobs_settings()
        if not isinstance(service.queue, ProcrastinateQueue):
            typer.echo("error: powerx version worker needs POWERX_QUEUE_BACKEND=procrastinate", err=True)
            raise typer.Exit(ExitCode.USAGE)
        address = host or jobs.worker_host
        probes = serve_probes(service, address, jobs.worker_port if port is None else port)
        where = f"http://{address}:{probes.server_port}"
        typer.echo(f"worker {service.worker_name} (pid {os.getpid()}) probes on {where}", err=True)
        service.sync_policy()
        asyncio.run(service.queue.work(concurrency, service.worker_name))
        probes.shutdown()
    finally:
        service.stop()
