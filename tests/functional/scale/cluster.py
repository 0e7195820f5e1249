"""Real processes on the real PostgreSQL: `powerx version serve --no-worker` and `powerx version worker`."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port, wait_until
from tests.functional.cli import POWERX, REPO


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye to the database."""
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def up(self) -> bool:
        try:
            return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            assert self.popen.poll() is None, f"{self.name} exited at start: {self.log.read_text()[-3000:]}"
            return False


@dataclass
class Cluster:
    env: Mapping[str, str]
    logs: Path
    processes: list[Process] = field(default_factory=list)

    def _start(self, name: str, args: list[str], port: int) -> Process:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(POWERX), "version", *args], env=dict(self.env), cwd=REPO, stdout=out, stderr=out
            )
        process = Process(name, popen, port, log)
        self.processes.append(process)
        return process

    def api(self, name: str) -> Process:
        port = free_port()
        return self._start(
            name, ["serve", "--no-worker", "--port", str(port), "--log-level", "warning"], port
        )

    def worker(self, name: str, concurrency: int = 1) -> Process:
        port = free_port()
        args = ["worker", "--concurrency", str(concurrency), "--port", str(port), "--log-level", "warning"]
        return self._start(name, args, port)

    def wait_ready(self, timeout: float = 180) -> None:  # generous: the machine is shared
        for process in self.processes:
            wait_until(process.up, timeout=timeout, interval=0.1)

    def stop(self) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in self.processes:
            try:
                process.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=10)


@contextmanager
def cluster(env: Mapping[str, str], logs: Path) -> Iterator[Cluster]:
    running = Cluster(env, logs)
    try:
        yield running
    finally:
        running.stop()
