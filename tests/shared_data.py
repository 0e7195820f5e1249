"""Where the team's shared reference data lives (read-only, beside the project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """$POWERX_SHARED_DIR, else ../shared beside the checkout, else /work/shared."""
    candidates = [os.environ.get("POWERX_SHARED_DIR"), str(_REPO.parent / "shared"), "/work/shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "DESIGN.md").is_file():
            return Path(candidate)
    return None


def require_shared(relative: str) -> Path:
    """The shared file or directory; a failure under CI, a skip on a machine without it."""
    base = shared_dir()
    path = base / relative if base else None
    if path is None or not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared reference data {relative} not found (set POWERX_SHARED_DIR)")
        pytest.skip(f"shared reference data {relative} not found")
    return path
