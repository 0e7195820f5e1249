"""Fail-closed intake through `powerx version scan` (DESIGN §7): the five cases of the trust issue,
the exit code of a scan that could not read everything, warnings in every format, unknown tenants."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.functional.cli import REPO, scan_fleet, write_json

SCHEMA = json.loads((REPO / "docs" / "schemas" / "scan-report.v1.schema.json").read_text(encoding="utf-8"))
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
HIGH = {"severity": "HIGH"}


def _plugin(name: str, *versions: str) -> dict[str, Any]:
    return {
        "plugin_id": f"com.powerx.plugins.{name}",
        "releases": [
            {"version": v, "channel": "stable", "released_at": "2020-01-01T00:00:00Z"} for v in versions
        ],
    }


def _advisory(adv_id: str, name: str, *affected: dict[str, Any], **fields: Any) -> dict[str, Any]:
    package = {"ecosystem": "PowerX", "name": f"com.powerx.plugins.{name}"}
    return {"id": adv_id, **fields, "affected": [{"package": package, **a} for a in affected]}


def _semver(*events: dict[str, str]) -> dict[str, Any]:
    return {"ranges": [{"type": "SEMVER", "events": list(events)}]}


# (plugin, installed, releases, advisory); one tenant per case, named after the plugin.
CASES: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = [
    (
        "dateonly",
        "1.0.0",
        ("1.0.0", "1.0.1"),
        _advisory(
            "PXSA-DATE",
            "dateonly",
            _semver({"introduced": "0"}, {"fixed": "1.0.1"}),
            published="2020-12-21",
            severity=[{"type": "CVSS_V3", "score": CRITICAL}],
        ),
    ),
    (
        "fixedone",
        "0.1.0",
        ("0.1.0", "0.2.0", "1.0.0"),
        _advisory(
            "PXSA-ONE", "fixedone", _semver({"introduced": "0"}, {"fixed": "1"}), database_specific=HIGH
        ),
    ),
    (
        "twoentries",
        "2.0.5",
        ("2.0.0", "2.0.5", "2.1.0"),
        _advisory(
            "PXSA-TWO",
            "twoentries",
            _semver({"introduced": "x.y.z"}, {"fixed": "1.0.0"}),
            _semver({"introduced": "2.0.0"}, {"fixed": "2.1.0"}),
            database_specific=HIGH,
        ),
    ),
    (
        "listed",
        "1.0.0",
        ("1.0.0", "1.0.1"),
        _advisory("PXSA-LIST", "listed", {"versions": ["0", "1.0.0"]}, database_specific=HIGH),
    ),
    (
        "fruit",
        "1.0.0",
        ("1.0.0", "1.0.1"),
        _advisory(
            "PXSA-FRUIT",
            "fruit",
            _semver({"introduced": "banana"}, {"fixed": "pear"}),
            database_specific=HIGH,
        ),
    ),
]


def _write(base: Path, cases: list[tuple[str, str, tuple[str, ...], dict[str, Any]]]) -> Path:
    catalog = {
        "schema": "powerx.catalog/v1",
        "plugins": [_plugin(name, *releases) for name, _, releases, _ in cases],
        "advisories": [advisory for *_, advisory in cases],
    }
    write_json(base / "catalog.json", catalog)
    for name, installed, _, _ in cases:
        manifest = {
            "schema": "powerx.manifest/v1",
            "tenant_uuid": f"tenant-{name}",
            "tenant_key": name,
            "core_version": "1.24.0",
            "plugins": [
                {"plugin_id": f"com.powerx.plugins.{name}", "version": installed, "channel": "stable"}
            ],
        }
        write_json(base / "manifests" / f"{name}.json", manifest)
    return base


@pytest.fixture
def intake(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    run = scan_fleet(_write(tmp_path, CASES), "--format", "json", "--output", tmp_path / "report.json")
    return run, json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))


def _finding(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in report["findings"] if f["tenant_key"] == name)


def test_date_only_published_is_repaired_and_the_critical_patch_found(intake: Any) -> None:
    _, report = intake
    f = _finding(report, "dateonly")
    assert (f["risk_level"], f["critical_patch"], f["target_version"]) == ("critical", True, "1.0.1")
    assert any("PXSA-DATE" in w["error"] and "published" in w["error"] for w in report["warnings"])


def test_fixed_one_is_padded_and_affects_the_versions_below(intake: Any) -> None:
    _, report = intake
    f = _finding(report, "fixedone")
    assert (f["risk_level"], f["action"], f["target_version"]) == ("high", "upgrade_now", "1.0.0")


def test_a_broken_entry_costs_only_itself(intake: Any) -> None:
    _, report = intake
    f = _finding(report, "twoentries")
    assert (f["risk_level"], f["target_version"]) == ("high", "2.1.0")
    assert any("PXSA-TWO" in e["error"] and "x.y.z" in e["error"] for e in report["errors"])


def test_an_enumerated_version_zero_does_not_drop_the_advisory(intake: Any) -> None:
    _, report = intake
    f = _finding(report, "listed")
    assert (f["risk_level"], f["target_version"]) == ("high", "1.0.1")


def test_nothing_readable_goes_to_review_and_the_scan_is_incomplete(intake: Any) -> None:
    run, report = intake
    f = _finding(report, "fruit")
    assert (f["action"], f["risk_level"]) == ("review", "high")
    assert any("PXSA-FRUIT" in r and "could not be read" in r for r in f["reasons"])
    assert any("PXSA-FRUIT" in e["error"] and "review" in e["error"] for e in report["errors"])
    assert run.returncode == 3, run.stderr
    jsonschema.validate(report, SCHEMA)


def test_repairs_alone_leave_the_scan_complete(tmp_path: Path) -> None:
    run = scan_fleet(_write(tmp_path, CASES[:2]), "--format", "json")
    report = json.loads(run.stdout)
    assert run.returncode == 0, run.stderr
    assert report["errors"] == []
    assert len(report["warnings"]) == 2


def test_incomplete_wins_over_findings(tmp_path: Path) -> None:
    assert scan_fleet(_write(tmp_path, CASES), "--format", "json", "--fail-on", "low").returncode == 3


@pytest.mark.parametrize(
    ("fmt", "errors", "warnings"),
    [("table", "Errors (", "Warnings: input repaired"), ("markdown", "## Errors", "## Warnings")],
)
def test_warnings_are_shown_apart_from_errors(tmp_path: Path, fmt: str, errors: str, warnings: str) -> None:
    out = scan_fleet(_write(tmp_path, CASES), "--format", fmt).stdout
    errors_at, warnings_at = out.index(errors), out.index(warnings)
    assert "PXSA-DATE" in out[warnings_at:]
    assert "PXSA-DATE" not in out[errors_at:warnings_at]


def test_sarif_lists_repairs_as_warnings_and_losses_as_errors(tmp_path: Path) -> None:
    sarif = json.loads(scan_fleet(_write(tmp_path, CASES), "--format", "sarif").stdout)
    invocation = sarif["runs"][0]["invocations"][0]
    levels = {
        n["level"] for n in invocation["toolExecutionNotifications"] if "PXSA-DATE" in n["message"]["text"]
    }
    assert levels == {"warning"}
    assert invocation["executionSuccessful"] is False


def test_an_unknown_tenant_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    base = _write(tmp_path, CASES[:1])
    run = scan_fleet(base, "--tenant", "does-not-exist", "--tenant", "dateonly")
    assert run.returncode == 2
    assert "does-not-exist" in run.stderr
    assert "dateonly" not in run.stderr.split("does-not-exist", 1)[1]
    assert scan_fleet(base, "--tenant", "dateonly", "--format", "json").returncode == 0


def test_an_unreadable_advisory_source_calls_nothing_clean(tmp_path: Path) -> None:
    base = _write(tmp_path, CASES[:1])
    catalog = json.loads((base / "catalog.json").read_text(encoding="utf-8"))
    catalog["advisories"] = "no-such-directory"
    write_json(base / "catalog.json", catalog)
    run = scan_fleet(base, "--format", "json")
    [finding] = json.loads(run.stdout)["findings"]
    assert (finding["action"], finding["risk_level"]) == ("review", "medium")
    assert any("advisory source could not be read" in r for r in finding["reasons"])
    assert run.returncode == 3


def test_an_installed_release_the_catalog_could_not_read_is_review(tmp_path: Path) -> None:
    base = _write(tmp_path, CASES[:1])
    catalog = json.loads((base / "catalog.json").read_text(encoding="utf-8"))
    catalog["advisories"] = []
    catalog["plugins"][0]["releases"][0]["min_core"] = "one point two"  # the installed 1.0.0
    write_json(base / "catalog.json", catalog)
    run = scan_fleet(base, "--format", "json")
    [finding] = json.loads(run.stdout)["findings"]
    assert finding["action"] == "review"
    assert any("release 1.0.0 could not be read" in r and "min_core" in r for r in finding["reasons"])
    assert run.returncode == 3
