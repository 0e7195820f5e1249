"""Decisions per second through the HTTP API, each durable with its audit event (DESIGN §8: ≥ 500/s).

    python -m bench.decisions_http [--tenants N] [--decisions K] [--clients C] [--workers W]
                                   [--backend sqlite|postgresql|both]

Starts `powerx version serve` in its own process on a store holding a synthetic fleet (scanned
first). The floor, in the same run and the same server: C client threads each read their
recommendation (GET, authenticated) K times in all; then they post K `upgrade` decisions on
distinct recommendations. Reports both rates, the ratio, latency percentiles, the server's CPU
seconds for each part (the whole process tree: with `--workers` the supervisor, which also runs
the jobs, and its workers), the load average, and checks every 2xx decision has its audit event
and the audit chain verifies afterwards.

A decision's cost does not end with its answer: its notifications are delivered by jobs the
server's worker runs after the commit (a console card per tenant and commit). The run goes on
until those jobs are done and reports the CPU per decision with them, and how long after the last
answer the queue was empty. `BENCH_POWERX=/path/to/powerx` serves with another build (A/B).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.common import OUT, dataset, installed_environment, tree_peak_mib
from bench.store_reference import database
from powerx_governance.audit.service import verify
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import create_token
from powerx_governance.db.session import make_engine, transaction
from powerx_governance.jobs.model import JobStatus
from powerx_governance.jobs.tables import JobRow
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings

BASE = "/internal/version/governance"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare(env: dict[str, str], count: int) -> tuple[str, list[tuple[int, int]]]:
    service = GovernanceService.create(load_settings(env))
    try:
        service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="bench")
        while service.run_pending(limit=10_000):  # the scan, then its notifications: not part of the run
            pass
        with transaction(service.factory) as session:
            _, token = create_token(
                session, name="bench", role=Role.OPERATOR, tenant=None, now=service.clock()
            )
            recs = session.execute(
                select(RecommendationRow.id, RecommendationRow.revision)
                .where(
                    RecommendationRow.state == "open",  # with a release to upgrade to (else 422)
                    RecommendationRow.target_version.is_not(None)
                    | RecommendationRow.latest_version.is_not(None),
                )
                .order_by(RecommendationRow.id)
                .limit(count)
            ).all()
        return token, [(rec_id, revision) for rec_id, revision in recs]
    finally:
        service.stop()


Outcome = tuple[int, float, int | None]  # status, seconds, the decision's id


def _decision(rec: tuple[int, int]) -> dict[str, Any]:
    return {"recommendation_id": rec[0], "revision": rec[1], "decision": "upgrade"}


def _get(client: httpx.Client, rec: tuple[int, int]) -> Outcome:
    start = time.perf_counter()
    answer = client.get(f"{BASE}/recommendations/{rec[0]}")
    return answer.status_code, time.perf_counter() - start, None


def _post(client: httpx.Client, rec: tuple[int, int]) -> Outcome:
    start = time.perf_counter()
    answer = client.post(f"{BASE}/decision", json=_decision(rec))
    elapsed = time.perf_counter() - start
    return answer.status_code, elapsed, answer.json().get("id") if answer.status_code in (200, 201) else None


class LeanClients:
    """`clients` keep-alive HTTP/1.1 connections on one asyncio loop in one thread, as lean as wrk:
    a request is a few bytes written, an answer its status line, headers and Content-Length body
    read (the server's JSON answers are never chunked). httpx in 16 threads spends more CPU per
    request than the server under test on this machine's other core (see `--client`)."""

    def __init__(self, port: int, token: str, clients: int) -> None:
        self.port, self.clients = port, clients
        self.head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"

    def get(self, rec: tuple[int, int]) -> tuple[bytes, bool]:
        return f"GET {BASE}/recommendations/{rec[0]} HTTP/1.1\r\n{self.head}\r\n".encode(), False

    def post(self, rec: tuple[int, int]) -> tuple[bytes, bool]:
        body = json.dumps(_decision(rec)).encode()
        head = (
            f"POST {BASE}/decision HTTP/1.1\r\n{self.head}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body, True

    def run(self, make: Any, recs: list[tuple[int, int]]) -> list[Outcome]:
        """Each request `make(rec)` sends, on whichever connection is free; outcomes in `recs` order."""
        done: list[Outcome | None] = [None] * len(recs)
        todo = iter(enumerate(recs))

        async def connection() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                for index, rec in todo:
                    request, parse_id = make(rec)
                    start = time.perf_counter()
                    writer.write(request)
                    status, body = await _answer(reader)
                    elapsed = time.perf_counter() - start
                    made = json.loads(body).get("id") if parse_id and status in (200, 201) else None
                    done[index] = (status, elapsed, made)
            finally:
                writer.close()

        async def all_connections() -> None:
            await asyncio.gather(*(connection() for _ in range(self.clients)))

        asyncio.run(all_connections())
        return [outcome for outcome in done if outcome is not None]


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise SystemExit(f"the lean client reads Content-Length answers only, not {line!r}")
    return int(lines[0].split(b" ", 2)[1]), await reader.readexactly(length)


def run(backend: str, tenants: int, decisions: int, clients: int, workers: int | None, lean: bool) -> None:
    data = dataset(tenants)
    with database(backend) as url:
        env = installed_environment(
            {
                "POWERX_DATABASE_URL": url,
                "POWERX_TENANT_SOURCE": str(data.manifests),
                "POWERX_CATALOG_SOURCE": str(data.catalog),
                "POWERX_SCHEDULER": "0",
                "POWERX_VAR_DIR": str(OUT),
                "POWERX_PORT": str(_port()),
            }
        )
        token, recs = _prepare(env, decisions)
        log = (OUT / "decisions-serve.log").open("w")
        command = [
            os.environ.get("BENCH_POWERX", str(Path(sys.executable).with_name("powerx"))),
            "version",
            "serve",
            "--log-level",
            "warning",
            *(["--workers", str(workers)] if workers is not None else []),
        ]
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{env['POWERX_PORT']}"
        try:
            _wait(base)
            local = threading.local()
            lean_clients = LeanClients(int(env["POWERX_PORT"]), token, clients)

            def client() -> httpx.Client:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(
                        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
                    )
                return local.client  # type: ignore[no-any-return]

            def timed(call: Any, lean_call: Any) -> tuple[float, float, float, list[Outcome]]:
                cpu, mine, start = _cpu_seconds(server.pid), time.process_time(), time.perf_counter()
                if lean:
                    done = lean_clients.run(lean_call, recs)
                else:
                    with ThreadPoolExecutor(clients) as pool:
                        done = list(pool.map(lambda rec: call(client(), rec), recs))
                wall = time.perf_counter() - start
                return wall, _cpu_seconds(server.pid) - cpu, time.process_time() - mine, done

            floor_wall, floor_cpu, floor_client, reads = timed(_get, lean_clients.get)
            start_cpu = _cpu_seconds(server.pid)
            wall, server_cpu, client_cpu, results = timed(_post, lean_clients.post)
            drained_after = _drain(url)
            drained_cpu = _cpu_seconds(server.pid) - start_cpu
            peak = tree_peak_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
        ok = [r for r in results if r[0] in (200, 201)]
        latencies = sorted(r[1] * 1000 for r in ok)
        service = GovernanceService.create(load_settings(env))
        with service.factory() as session:
            audited = session.scalar(
                select(func.count())
                .select_from(AuditEventRow)
                .where(AuditEventRow.operation == "decision.upgrade")
            )
            chain = verify(session)
        service.stop()
    refused = Counter(r[0] for r in results if r[0] not in (200, 201))
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else 0.0
    read_ok = sum(1 for r in reads if r[0] == 200)
    print(
        f"[{backend}] {'1 process' if workers is None else f'--workers {workers}'},"
        f" {'lean clients' if lean else 'httpx clients'},"
        f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end"
    )
    print(
        f"  floor: {read_ok}/{len(recs)} reads 200 in {floor_wall:.2f} s"
        f" = {read_ok / floor_wall:,.0f}/s"
        f" (server cpu {floor_cpu:.2f} s, {1000 * floor_cpu / len(recs):.2f} ms per read;"
        f" client cpu {floor_client:.2f} s, {1000 * floor_client / len(recs):.2f} ms) with {clients} clients"
    )
    print(
        f"  decisions: {len(ok)}/{len(recs)} 2xx in {wall:.2f} s = {len(ok) / wall:,.0f}/s"
        f" = {(len(ok) / wall) / (read_ok / floor_wall):.2f}x the floor's rate"
        f" (server cpu {server_cpu:.2f} s,"
        f" {1000 * server_cpu / max(1, len(ok)):.2f} ms per decision;"
        f" client cpu {client_cpu:.2f} s, {1000 * client_cpu / len(recs):.2f} ms); latency p50"
        f" {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms; audit events {audited},"
        f" chain {'verified' if chain.ok else f'BROKEN at seq {chain.first_bad_seq}: {chain.problem}'}"
        + (f"; refused by status: {dict(refused)}" if refused else "")
    )
    print(
        f"  with the jobs they queued (notification deliveries): queue empty {drained_after:.2f} s after"
        f" the last answer; server cpu {drained_cpu:.2f} s, {1000 * drained_cpu / max(1, len(ok)):.2f} ms"
        f" per decision; {len(ok) / (wall + drained_after):,.0f} decisions/s with their jobs done;"
        f" server peak RSS {peak:,.0f} MiB"
    )


def _drain(url: str, timeout: float = 900.0) -> float:
    """Seconds until no job is queued or running any more (the worker polls the queue)."""
    engine = make_engine(url)
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < timeout:
            with engine.connect() as connection:
                waiting = connection.scalar(
                    select(func.count())
                    .select_from(JobRow)
                    .where(JobRow.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)))
                )
            if not waiting:
                return time.perf_counter() - start
            time.sleep(0.1)
        raise SystemExit(f"jobs still waiting {timeout:.0f} s after the decisions")
    finally:
        engine.dispose()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU so far (Linux /proc), in seconds, of a running process, its children that
    ended, and its living descendants."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it ended meanwhile
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK") + sum(_cpu_seconds(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _wait(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the service did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=None, help="serve --workers W (default: the serve default)"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--client",
        choices=["lean", "httpx"],
        default="lean",
        help="lean: keep-alive connections on one asyncio loop (default); httpx: a client per thread",
    )
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, args.tenants, args.decisions, args.clients, args.workers, args.client == "lean")


if __name__ == "__main__":
    main()
