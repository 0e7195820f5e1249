"""`powerx version scan` end to end: exit codes, formats, bad input, conformance."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.functional.cli import NOW, POWERX, REPO, powerx, scan_fleet, write_json
from tests.shared_data import require_shared

SCHEMA = json.loads((REPO / "docs" / "schemas" / "scan-report.v1.schema.json").read_text(encoding="utf-8"))
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"
PLUGIN = "com.powerx.plugins.crm"


def _catalog(vector: str = CRITICAL, extra_releases: list[Any] | None = None) -> dict[str, Any]:
    releases = [{"version": v, "released_at": "2025-01-01T00:00:00Z"} for v in ("2.3.0", "2.4.0")]
    return {
        "schema": "powerx.catalog/v1",
        "plugins": [{"plugin_id": PLUGIN, "releases": releases + (extra_releases or [])}],
        "advisories": [
            {
                "id": "PXSA-1",
                "published": "2025-01-01T00:00:00Z",
                "severity": [{"type": "CVSS_V3", "score": vector}],
                "affected": [
                    {
                        "package": {"ecosystem": "PowerX", "name": PLUGIN},
                        "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.4.0"}]}],
                    }
                ],
            }
        ],
    }


def _manifest(uuid: str, version: str = "2.3.0", **extra: Any) -> dict[str, Any]:
    return {
        "schema": "powerx.manifest/v1",
        "tenant_uuid": uuid,
        "tenant_key": uuid,
        "core_version": "1.24.0",
        "plugins": [{"plugin_id": PLUGIN, "version": version, "channel": "stable"}],
        **extra,
    }


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    write_json(tmp_path / "catalog.json", _catalog())
    for i in range(4):
        write_json(
            tmp_path / "manifests" / f"t{i}.json", _manifest(f"tenant-{i}", "2.3.0" if i % 2 else "2.4.0")
        )
    return tmp_path


def test_json_report_validates_against_the_design_schema(fleet: Path) -> None:
    run = scan_fleet(fleet, "--format", "json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    jsonschema.validate(report, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert report["coverage"] == {
        "tenants_total": 4,
        "tenants_scanned": 4,
        "tenants_stale": 0,
        "tenants_failed": 0,
        "installations": 4,
        "rate": 1.0,
    }
    assert [(f["tenant_uuid"], f["target_version"], f["action"]) for f in report["findings"]] == [
        ("tenant-1", "2.4.0", "upgrade_now"),
        ("tenant-3", "2.4.0", "upgrade_now"),
    ]


@pytest.mark.parametrize(("fail_on", "code"), [("critical", 1), ("high", 1), ("none", 0)])
def test_fail_on_threshold(fleet: Path, fail_on: str, code: int) -> None:
    assert scan_fleet(fleet, "--format", "json", "--fail-on", fail_on).returncode == code


def test_fail_on_below_the_worst_risk_is_clean(tmp_path: Path) -> None:
    write_json(tmp_path / "catalog.json", _catalog(MEDIUM))
    write_json(tmp_path / "manifests" / "a.json", _manifest("a"))
    assert scan_fleet(tmp_path, "--format", "json", "--fail-on", "high").returncode == 0
    assert scan_fleet(tmp_path, "--format", "json", "--fail-on", "medium").returncode == 1


def test_bad_manifest_is_not_scanned_and_the_scan_goes_on(fleet: Path) -> None:
    write_json(fleet / "manifests" / "zz-bad.json", _manifest("broken", core_version="1.24"))
    run = scan_fleet(fleet, "--format", "json", "--output", fleet / "r.json")
    assert run.returncode == 3, "coverage 4/5 is below the default minimum of 0.99"
    report = json.loads((fleet / "r.json").read_text())
    assert report["coverage"]["tenants_total"] == 5
    assert report["coverage"]["tenants_scanned"] == 4
    assert report["coverage"]["tenants_failed"] == 1
    assert report["coverage"]["rate"] == 0.8
    [error] = report["errors"]
    assert error["tenant_uuid"] == "broken"
    assert "zz-bad.json" in error["source"]
    assert "core_version" in error["error"]
    assert "'1.24'" in error["error"]


def test_a_bad_plugin_entry_is_named_and_the_rest_of_the_manifest_counts(fleet: Path) -> None:
    bad = _manifest("odd", "2.x.1")
    bad["plugins"].append({"plugin_id": PLUGIN, "version": "2.3.0", "channel": "stable"})
    write_json(fleet / "manifests" / "zz-odd.json", bad)
    run = scan_fleet(fleet, "--format", "json", "--output", fleet / "r.json")
    report = json.loads((fleet / "r.json").read_text())
    assert run.returncode != 3
    assert report["coverage"]["tenants_scanned"] == 5
    [error] = report["errors"]
    assert (error["tenant_uuid"], error["error"].split(":")[0]) == ("odd", "plugins[0].version")
    assert "'2.x.1'" in error["error"]
    [finding] = [f for f in report["findings"] if f["tenant_uuid"] == "odd"]
    assert finding["current_version"] == "2.3.0"


def test_bad_release_and_advisory_are_skipped_and_named(tmp_path: Path) -> None:
    catalog = _catalog(
        extra_releases=[
            {"version": "2.5", "released_at": "2025-01-01T00:00:00Z"},
            {"version": "2.6.0", "released_at": "yesterday"},
        ]
    )
    catalog["advisories"].append(
        {
            "id": "PXSA-BAD",
            "affected": [
                {
                    "package": {"ecosystem": "PowerX", "name": PLUGIN},
                    "ranges": [{"type": "SEMVER", "events": [{"introduced": "one"}]}],
                }
            ],
        }
    )
    write_json(tmp_path / "catalog.json", catalog)
    write_json(tmp_path / "manifests" / "a.json", _manifest("a"))
    report = json.loads(scan_fleet(tmp_path, "--format", "json").stdout)
    errors = {e["error"] for e in report["errors"]}
    assert any("releases[2] 2.5" in e and "version" in e for e in errors), errors
    assert any("releases[3] 2.6.0" in e and "released_at" in e for e in errors), errors
    assert any("PXSA-BAD" in e and "affected[0].ranges[0].events[0].introduced" in e for e in errors), errors
    assert report["findings"][0]["target_version"] == "2.4.0"


def test_unusable_inputs_exit_2_with_a_named_error(tmp_path: Path, fleet: Path) -> None:
    missing = powerx(
        "version", "scan", "--catalog", tmp_path / "nope.yaml", "--manifests", fleet / "manifests"
    )
    assert missing.returncode == 2
    assert "nope.yaml" in missing.stderr
    (tmp_path / "rules.yaml").write_text("defaults:\n  scan_interval: soon\n", encoding="utf-8")
    bad_rules = scan_fleet(fleet, "--rules", tmp_path / "rules.yaml")
    assert bad_rules.returncode == 2
    assert "defaults.scan_interval" in bad_rules.stderr
    naive = powerx(
        "version",
        "scan",
        "--catalog",
        fleet / "catalog.json",
        "--manifests",
        fleet / "manifests",
        "--now",
        "2026-11-30T00:00:00",
    )
    assert naive.returncode == 2
    assert "time zone" in naive.stderr


def test_yaml_alias_bomb_is_refused(tmp_path: Path, fleet: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = powerx("version", "scan", "--catalog", tmp_path / "bomb.yaml", "--manifests", fleet / "manifests")
    assert run.returncode == 2
    assert "alias" in run.stderr


def test_tenant_filter_by_uuid_or_key(fleet: Path) -> None:
    report = json.loads(
        scan_fleet(fleet, "--format", "json", "--tenant", "tenant-1", "--tenant", "tenant-2").stdout
    )
    assert report["coverage"]["tenants_total"] == 2
    assert [f["tenant_uuid"] for f in report["findings"]] == ["tenant-1"]


def test_jsonl_and_cyclonedx_inventories(tmp_path: Path) -> None:
    write_json(tmp_path / "catalog.json", _catalog())
    lines = [json.dumps(_manifest(f"j{i}")) for i in range(3)] + ["{not json"]
    (tmp_path / "fleet.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = json.loads(
        powerx(
            "version",
            "scan",
            "--catalog",
            tmp_path / "catalog.json",
            "--manifests",
            tmp_path / "fleet.jsonl",
            "--now",
            NOW,
            "--format",
            "json",
        ).stdout
    )
    assert report["coverage"]["tenants_scanned"] == 3
    assert report["coverage"]["tenants_total"] == 4
    assert "fleet.jsonl:4" in report["errors"][0]["source"]
    sbom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "metadata": {
            "properties": [
                {"name": "powerx:tenant_uuid", "value": "sbom-tenant"},
                {"name": "powerx:core_version", "value": "1.24.0"},
                {"name": "powerx:tags", "value": "finance, eu"},
            ]
        },
        "components": [
            {
                "type": "application",
                "name": PLUGIN,
                "version": "2.3.0",
                "purl": f"pkg:powerx/{PLUGIN}@2.3.0",
                "properties": [{"name": "powerx:channel", "value": "stable"}],
            },
            {"type": "library", "name": "left-pad", "version": "1.0.0", "purl": "pkg:npm/left-pad@1.0.0"},
        ],
    }
    write_json(tmp_path / "sbom" / "tenant.cdx.json", sbom)
    report = json.loads(
        powerx(
            "version",
            "scan",
            "--catalog",
            tmp_path / "catalog.json",
            "--manifests",
            tmp_path / "sbom",
            "--now",
            NOW,
            "--format",
            "json",
        ).stdout
    )
    assert report["coverage"]["installations"] == 1
    assert report["findings"][0]["tenant_uuid"] == "sbom-tenant"


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown", "sarif"])
def test_every_format_writes_a_file(fleet: Path, fmt: str) -> None:
    out = fleet / f"report.{fmt}"
    run = scan_fleet(fleet, "--format", fmt, "--output", out)
    assert run.returncode == 0, run.stderr
    text = out.read_text(encoding="utf-8")
    assert "tenant-1" in text
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["tenant_uuid"] for r in rows] == ["tenant-1", "tenant-3"]
    if fmt == "sarif":
        assert json.loads(text)["version"] == "2.1.0"


def test_csv_neutralises_formula_injection_from_manifest_data(tmp_path: Path) -> None:
    write_json(tmp_path / "catalog.json", _catalog())
    write_json(
        tmp_path / "manifests" / "evil.json", _manifest('=HYPERLINK("http://x")', tenant_key="@SUM(A1)")
    )
    out = tmp_path / "r.csv"
    assert scan_fleet(tmp_path, "--format", "csv", "--output", out).returncode == 0
    row = next(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert row["tenant_uuid"].startswith("'=")
    assert row["tenant_key"].startswith("'@")


def test_design_conformance_cases_pass() -> None:
    runner = require_shared("conformance/run")
    run = subprocess.run(
        [sys.executable, str(runner)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "POWERX": str(POWERX)},
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert run.stdout.strip().endswith("36 passed, 0 failed")
