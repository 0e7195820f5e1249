"""Critical-patch recall on a fleet built from real advisories, through `powerx version scan`.

One plugin and one tenant per real critical advisory (RustSec, Go, PyPA, FriendsOfPHP), the
record fed as its feed publishes it (date-only `published`, partial versions). The tenant runs
a version inside an affected range; the plugin's only newer release is the range's fix. Every
such tenant must be told `critical_patch` with that target (the brief: ≥ 98 % accuracy; a
fail-open intake scored 0.63 here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import semver

from powerx_governance.versioning.semver import InvalidVersionError, read_version
from tests.functional.cli import NOW, powerx, write_json
from tests.shared_data import osv_record, require_shared


def _padded(text: str | None) -> str | None:
    if text is None or text in ("0", "0.0.0-0"):
        return None
    try:
        return read_version(text)[0].text
    except InvalidVersionError:
        return None


def _pairs(osv: dict[str, Any]) -> list[tuple[str | None, str | None, str]] | None:
    """(introduced, end, kind) per range, padded; None when a bound is not SemVer even padded."""
    pairs = []
    for osv_range in osv["affected"][0]["ranges"]:
        events = {k: v for e in osv_range["events"] for k, v in e.items()}
        start, kind = events.get("introduced", "0"), "last_affected" if "last_affected" in events else "fixed"
        end = events.get(kind)
        if (start not in ("0", "0.0.0-0") and _padded(start) is None) or (end and _padded(end) is None):
            return None
        pairs.append((_padded(start), _padded(end), kind))
    return pairs


def _covers(pairs: list[tuple[str | None, str | None, str]], version: str) -> bool:
    x = semver.Version.parse(version)
    for start, end, kind in pairs:
        if start is not None and x < semver.Version.parse(start):
            continue
        if end is None or (
            x < semver.Version.parse(end) if kind == "fixed" else x <= semver.Version.parse(end)
        ):
            return True
    return False


def _case(line: dict[str, Any]) -> tuple[dict[str, Any], str, str] | None:
    """(advisory, installed, fix) for a critical, current record with a SemVer fix; None otherwise."""
    if (
        line.get("cvss_severity_computed") != "Critical"
        or line.get("withdrawn")
        or line.get("affected_versions")
    ):
        return None
    osv = osv_record(line)
    pairs = _pairs(osv)
    fixed = [p for p in pairs or [] if p[1] is not None and p[2] == "fixed"]
    if not pairs or not fixed:
        return None
    start, fix, _ = fixed[0]
    installed = start or "0.0.1"
    if fix is None or not _covers(pairs, installed) or _covers(pairs, fix):
        return None
    return osv, installed, fix


def build_fleet(lines: list[dict[str, Any]], base: Path) -> dict[str, str]:
    """Write catalog and manifests; returns tenant uuid → the expected target."""
    plugins, advisories, expected = [], [], {}
    for i, line in enumerate(lines):
        case = _case(line)
        if case is None:
            continue
        osv, installed, fix = case
        plugin_id = f"com.powerx.real.p{i}"
        osv["affected"][0]["package"]["name"] = plugin_id
        advisories.append(osv)
        releases = [
            {"version": v, "channel": "stable", "released_at": "2020-01-01T00:00:00Z"}
            for v in (installed, fix)
        ]
        plugins.append({"plugin_id": plugin_id, "releases": releases})
        tenant = f"tenant-{i}"
        expected[tenant] = fix
        manifest = {
            "schema": "powerx.manifest/v1",
            "tenant_uuid": tenant,
            "tenant_key": tenant,
            "core_version": "1.24.0",
            "plugins": [{"plugin_id": plugin_id, "version": installed, "channel": "stable"}],
        }
        write_json(base / "manifests" / f"{tenant}.json", manifest)
    write_json(
        base / "catalog.json", {"schema": "powerx.catalog/v1", "plugins": plugins, "advisories": advisories}
    )
    return expected


def test_critical_patch_recall_on_real_advisories(tmp_path: Path) -> None:
    path = require_shared("data/advisories/advisories.jsonl")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    expected = build_fleet(lines, tmp_path)
    run = powerx(
        "version",
        "scan",
        "--catalog",
        tmp_path / "catalog.json",
        "--manifests",
        tmp_path / "manifests",
        "--now",
        NOW,
        "--format",
        "json",
        "--output",
        tmp_path / "report.json",
    )
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    found = {f["tenant_uuid"]: f for f in report["findings"]}
    hits = [
        t
        for t, fix in expected.items()
        if found.get(t, {}).get("critical_patch") and found[t]["target_version"] == fix
    ]
    recall = len(hits) / len(expected)
    date_repairs = sum("has no time or zone" in w["error"] for w in report["warnings"])
    print(  # noqa: T201 - the figures go into the closing notes (pytest -s shows them)
        f"\n{len(expected)} critical patches expected, {len(hits)} found: recall {recall:.3f};"
        f" {date_repairs} dates repaired; exit {run.returncode}"
    )
    assert len(expected) > 50
    assert recall >= 0.98, sorted(set(expected) - set(hits))[:10]
    assert date_repairs > 0
