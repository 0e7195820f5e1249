"""DESIGN §5.8 through `powerx version scan`: the SLA clock starts at the later of when the fix
became actionable and when the installation was first seen with the finding (`--baseline`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from powerx_governance.scans.service import FileScanRequest, run_file_scan
from tests.functional.cli import powerx, scan_fleet, write_json

PLUGIN = "com.powerx.plugins.crm"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
FIXED_AT = "2025-01-01T00:00:00Z"  # release and advisory: actionable long before governance saw anyone
CRITICAL_HOURS = 72  # defaults.sla_hours.critical of the built-in rules


def _fleet(base: Path, *, installed: str = "2.3.0") -> Path:
    releases = [{"version": v, "released_at": FIXED_AT} for v in ("2.3.0", "2.3.5", "2.4.0")]
    advisory = {
        "id": "PXSA-1",
        "published": FIXED_AT,
        "severity": [{"type": "CVSS_V3", "score": CRITICAL}],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": PLUGIN},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.4.0"}]}],
            }
        ],
    }
    catalog = {"schema": "powerx.catalog/v1", "plugins": [{"plugin_id": PLUGIN, "releases": releases}]}
    write_json(base / "catalog.json", {**catalog, "advisories": [advisory]})
    manifest = {
        "schema": "powerx.manifest/v1",
        "tenant_uuid": "t-1",
        "core_version": "1.24.0",
        "plugins": [{"plugin_id": PLUGIN, "version": installed, "channel": "stable"}],
    }
    write_json(base / "manifests" / "t-1.json", manifest)
    return base


def _scan(base: Path, now: str, out: str, *args: str | Path) -> dict[str, Any]:
    fmt = "jsonl" if out.endswith(".jsonl") else "json"
    run = scan_fleet(base, "--format", fmt, "--output", base / out, *args, now=now)
    assert run.returncode == 0, run.stderr
    text = (base / out).read_text(encoding="utf-8")
    if out.endswith(".jsonl"):
        [finding] = [json.loads(line) for line in text.splitlines()][:-1]
        return dict(finding)
    [finding] = json.loads(text)["findings"]
    return dict(finding)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_nobody_is_overdue_on_the_day_governance_first_sees_them(tmp_path: Path) -> None:
    now = "2026-11-30T00:00:00Z"
    finding = _scan(_fleet(tmp_path), now, "first.json")
    assert finding["critical_patch"] is True
    assert finding["first_seen_at"] == now
    assert _at(finding["sla_deadline"]) == _at(now) + timedelta(hours=CRITICAL_HOURS)


def test_a_baseline_keeps_the_clock_running_and_a_new_finding_restarts_it(tmp_path: Path) -> None:
    base = _fleet(tmp_path)
    first = _scan(base, "2026-11-30T00:00:00Z", "first.jsonl")
    later = _scan(base, "2026-12-10T00:00:00Z", "later.json", "--baseline", base / "first.jsonl")
    assert later["first_seen_at"] == first["first_seen_at"]
    assert later["sla_deadline"] == first["sla_deadline"]  # now ten days overdue, as it should be
    chained = _scan(base, "2026-12-20T00:00:00Z", "chained.json", "--baseline", base / "later.json")
    assert chained["sla_deadline"] == first["sla_deadline"]
    _fleet(base, installed="2.3.5")  # a different installed version: a different finding
    moved = _scan(base, "2026-12-20T00:00:00Z", "moved.json", "--baseline", base / "later.json")
    assert moved["first_seen_at"] == "2026-12-20T00:00:00Z"


def test_the_later_of_actionable_and_first_seen_starts_the_clock(tmp_path: Path) -> None:
    base = _fleet(tmp_path)
    catalog = json.loads((base / "catalog.json").read_text(encoding="utf-8"))
    catalog["plugins"][0]["releases"][-1]["released_at"] = "2026-12-01T00:00:00Z"  # the fix
    write_json(base / "catalog.json", catalog)
    request = FileScanRequest(
        catalog=base / "catalog.json", manifests=base / "manifests", now=_at("2026-12-05T00:00:00Z")
    )
    [finding] = run_file_scan(request).result.findings
    hours = timedelta(hours=CRITICAL_HOURS)
    assert finding.verdict.sla_deadline == _at("2026-12-01T00:00:00Z") + hours  # from the fix alone
    seen_before_the_fix = finding.verdict.sla_deadline_for(_at("2026-11-20T00:00:00Z"))
    assert seen_before_the_fix == _at("2026-12-01T00:00:00Z") + hours
    assert (
        finding.verdict.sla_deadline_for(_at("2026-12-05T00:00:00Z")) == _at("2026-12-05T00:00:00Z") + hours
    )


def test_an_unreadable_baseline_is_a_usage_error(tmp_path: Path) -> None:
    base = _fleet(tmp_path)
    (base / "junk.json").write_text("{not json", encoding="utf-8")
    run = powerx(
        "version",
        "scan",
        "--catalog",
        base / "catalog.json",
        "--manifests",
        base / "manifests",
        "--baseline",
        base / "junk.json",
    )
    assert run.returncode == 2
    assert "junk.json" in run.stderr
