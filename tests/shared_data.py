"""Where the team's shared reference data lives (read-only, beside the project)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def osv_record(line: dict[str, Any]) -> dict[str, Any]:
    """One line of `advisories.jsonl` as the OSV record a PowerX feed would carry, raw as published:
    dates as the source wrote them, versions unconverted, one PowerX package per source package."""
    vector = line.get("cvss_vector")
    severity = (
        [{"type": "CVSS_V4" if vector.startswith("CVSS:4") else "CVSS_V3", "score": vector}] if vector else []
    )
    return {
        "id": line["id"],
        "published": line.get("published"),
        "withdrawn": (line.get("withdrawn_date") or "2020-01-01") if line.get("withdrawn") else None,
        "aliases": line.get("aliases") or [],
        "summary": line.get("title"),
        "severity": severity,
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": shared_package(line)},
                "ranges": [
                    {"type": "SEMVER", "events": _events(r)} for r in line.get("affected_ranges") or []
                ],
                "versions": line.get("affected_versions") or [],
            }
        ],
    }


def shared_package(line: dict[str, Any]) -> str:
    return f"{line['ecosystem']}/{line['package']}"


def _events(source_range: dict[str, Any]) -> list[dict[str, str]]:
    """OSV events of a range: `{introduced, fixed | last_affected}`, or Packagist's constraint list."""
    if "constraints" not in source_range:
        return [{k: source_range[k]} for k in ("introduced", "fixed", "last_affected") if source_range.get(k)]
    events = []
    for constraint in source_range["constraints"] or []:
        for op, kind in ((">=", "introduced"), ("<=", "last_affected"), ("<", "fixed")):
            if constraint.startswith(op):
                events.append({kind: constraint[len(op) :].strip()})
                break
    if not any("introduced" in e for e in events):
        events.insert(0, {"introduced": "0"})
    return events
