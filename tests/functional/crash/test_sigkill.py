"""Kill the service with SIGKILL in the middle of a stream of decisions.

After a restart every decision that was answered 2xx is present with its audit event, and
`powerx audit verify` passes; a tampered row then makes it fail.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import COMPAT, EXAMPLES, RULES, free_port, wait_until
from tests.functional.cli import POWERX, REPO

BASE = "/internal/version/governance"


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "POWERX_DATABASE_URL": f"sqlite+pysqlite:///{tmp_path / 'governance.db'}",
        "POWERX_VAR_DIR": str(tmp_path),
        "POWERX_TENANT_SOURCE": str(EXAMPLES / "manifests"),
        "POWERX_CATALOG_SOURCE": str(EXAMPLES / "catalog.yaml"),
        "POWERX_RULES": str(RULES),
        "POWERX_COMPAT": str(COMPAT),
        "POWERX_PORT": str(port),
        "POWERX_SCHEDULER": "0",
        "POWERX_POLL_INTERVAL": "0.05s",
    }


@contextmanager
def _server(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [str(POWERX), "version", "serve", "--log-level", "warning"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{env['POWERX_PORT']}/healthz"

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            assert process.poll() is None, "the service exited during start-up"
            return False

    try:
        wait_until(up, timeout=60, interval=0.1)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _token(env: dict[str, str], role: str) -> str:
    made = subprocess.run(
        [str(POWERX), "version", "token", "create", "--name", f"crash-{role}", "--role", role],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def _stream(
    client: httpx.Client, items: list[dict[str, object]], acked: list[int], stop: threading.Event
) -> None:
    for item in items:
        if stop.is_set():
            return
        try:
            answer = client.post(
                f"{BASE}/decision",
                json={"recommendation_id": item["id"], "revision": item["revision"], "decision": "upgrade"},
            )
        except httpx.TransportError:
            return  # the server is gone
        if answer.status_code in (200, 201):
            acked.append(int(answer.json()["id"]))


def test_acknowledged_decisions_survive_sigkill(tmp_path: Path) -> None:
    env = _env(tmp_path, free_port())
    operator = _token(env, "operator")
    acked: list[int] = []
    with (
        _server(env) as process,
        httpx.Client(
            base_url=f"http://127.0.0.1:{env['POWERX_PORT']}",
            headers={"Authorization": f"Bearer {operator}"},
            timeout=30,
        ) as client,
    ):
        scan_id = client.post(f"{BASE}/scan", json={"kind": "full"}).json()["scan_id"]
        wait_until(
            lambda: client.get(f"{BASE}/scans/{scan_id}").json()["status"] not in ("queued", "running"),
            timeout=120,
            interval=0.2,
        )
        items = client.get(f"{BASE}/recommendations", params={"state": "open", "limit": 400}).json()["items"]
        assert len(items) >= 200
        stop = threading.Event()
        workers = [
            threading.Thread(target=_stream, args=(client, items[i::4], acked, stop)) for i in range(4)
        ]
        for worker in workers:
            worker.start()
        wait_until(lambda: len(acked) >= 60, timeout=60, interval=0.005)
        process.send_signal(signal.SIGKILL)  # mid-stream: other requests are in flight right now
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
    assert acked, "no decision was acknowledged before the kill"
    with (
        _server(env),
        httpx.Client(
            base_url=f"http://127.0.0.1:{env['POWERX_PORT']}",
            headers={"Authorization": f"Bearer {operator}"},
            timeout=30,
        ) as client,
    ):
        stored = {d["id"] for d in client.get(f"{BASE}/decisions", params={"limit": 500}).json()["items"]}
    missing = sorted(set(acked) - stored)
    assert not missing, f"acknowledged decisions lost after SIGKILL: {missing}"
    db = sqlite3.connect(tmp_path / "governance.db")
    try:
        audited = {
            row[0]
            for row in db.execute(
                "SELECT json_extract(changes, '$.after.decision_id') FROM audit_events"
                " WHERE operation = 'decision.upgrade'"
            )
        }
        assert set(acked) <= audited, f"decisions without audit event: {sorted(set(acked) - audited)}"
        verify = subprocess.run(
            [str(POWERX), "audit", "verify"], env=env, cwd=REPO, capture_output=True, text=True, check=False
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        seq = db.execute("SELECT seq FROM audit_events ORDER BY seq LIMIT 1 OFFSET 10").fetchone()[0]
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = ?", (seq,))
        db.commit()
    finally:
        db.close()
    tampered = subprocess.run(
        [str(POWERX), "audit", "verify"], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert tampered.returncode == 1
    assert str(seq) in tampered.stdout + tampered.stderr
