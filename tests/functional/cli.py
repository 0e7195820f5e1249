"""Run the real `powerx` CLI in a subprocess, as users and CI do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.synthetic import generate

REPO = Path(__file__).resolve().parents[2]
POWERX = Path(sys.executable).with_name("powerx")
NOW = "2026-11-30T00:00:00Z"


# rich wraps the CLI's messages at $COLUMNS (80 without a terminal): a long temporary path (pytest-xdist
# adds a popen-gwN level) would be split across lines, so the scans see a wide terminal.
WIDE_TERMINAL = {"COLUMNS": "1000"}


def powerx(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return _run(args, {}, cwd)


def _run(args: tuple[str | Path, ...], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POWERX), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **WIDE_TERMINAL, **env},
        cwd=cwd,
        timeout=300,
        check=False,
    )


def scan_fleet(base: Path, *args: str | Path, now: str = NOW) -> subprocess.CompletedProcess[str]:
    """`powerx version scan` of the fleet a test wrote under `base` (catalog.json, manifests/)."""
    return powerx(
        "version",
        "scan",
        "--catalog",
        base / "catalog.json",
        "--manifests",
        base / "manifests",
        "--now",
        now,
        *args,
    )


def powerx_with(env: Mapping[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`powerx` with these settings on top of this process's environment (e.g. a test's store)."""
    return _run(args, env, REPO)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def generated_fleet(base: Path, *, seed: int, tenants: int) -> Path:
    """A synthetic fleet under `base`: catalog.json, manifests.jsonl, and the same tenants one manifest
    file each under manifests/ (as a tenant directory export has them)."""
    made = generate(
        base,
        seed=seed,
        tenants=tenants,
        installations_per_tenant=20,
        plugins=60,
        releases_per_plugin=12,
        advisories=90,
    )
    (base / "manifests").mkdir()
    for n, line in enumerate(made.manifests.read_bytes().splitlines()):
        (base / "manifests" / f"{n:04d}.json").write_bytes(line)
    return base
