"""Streamed reports through `powerx version scan` on the example fleet: the same content as the
report built whole (DESIGN §4, schema-valid), JSON lines, and a table a person can read."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from powerx_governance.inventory.loader import load_manifests
from powerx_governance.reports import ReportFormat, render
from powerx_governance.reports.json_report import SplicedFindings
from powerx_governance.reports.stream import encode, finding_document
from powerx_governance.scans.report import TenantReport, build_report
from powerx_governance.scans.scanner import ScanResult, scan_tenants
from powerx_governance.scans.service import FileScanRequest, prepare, run_file_scan
from tests.functional.cli import NOW, REPO, generated_fleet, powerx

SCHEMA = json.loads((REPO / "docs" / "schemas" / "scan-report.v1.schema.json").read_text(encoding="utf-8"))
EXAMPLE = (
    "--catalog",
    REPO / "examples" / "catalog.yaml",
    "--manifests",
    REPO / "examples" / "manifests",
    "--rules",
    REPO / "config" / "version" / "governance_rules.yaml",
    "--compat",
    REPO / "config" / "version" / "compat_matrix.yaml",
    "--now",
    NOW,
)


def _request() -> FileScanRequest:
    return FileScanRequest(
        catalog=REPO / "examples" / "catalog.yaml",
        manifests=REPO / "examples" / "manifests",
        now=datetime(2026, 11, 30, tzinfo=UTC),
        rules=REPO / "config" / "version" / "governance_rules.yaml",
        compat=REPO / "config" / "version" / "compat_matrix.yaml",
    )


@cache
def _whole() -> dict[str, Any]:
    """The report built whole in memory, as before streaming."""
    return build_report(run_file_scan(_request()).result)


def _by_installation(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(findings, key=lambda f: (f["tenant_uuid"], f["plugin_id"]))


def _scan(tmp_path: Path, fmt: str, *args: str) -> Path:
    out = tmp_path / f"report.{fmt}"
    run = powerx("version", "scan", *EXAMPLE, "--format", fmt, "--output", out, *args)
    assert run.returncode == 0, run.stderr
    return out


def test_spliced_json_is_the_document_member_for_member() -> None:
    request = _request()
    engine, _, _ = prepare(request)
    result = ScanResult(generated_at=request.now)
    spliced, findings = SplicedFindings(), 0
    for tenant in scan_tenants(engine, load_manifests(request.manifests), result):
        batch = TenantReport(tenant, request.now)
        if batch.parts:
            expected = [encode(finding_document(batch, part)) for part in batch.parts]
            written = io.BytesIO()
            spliced.write(written, batch, b"\n")
            assert written.getvalue().split(b"\n") == expected
            findings += len(expected)
    assert findings == len(_whole()["findings"])


def test_streamed_json_is_schema_valid_and_equal_to_the_whole_report(tmp_path: Path) -> None:
    report = json.loads(_scan(tmp_path, "json").read_text(encoding="utf-8"))
    jsonschema.validate(report, SCHEMA)
    whole = _whole()
    assert {k: v for k, v in report.items() if k not in ("scan_id", "findings")} == {
        k: v for k, v in whole.items() if k not in ("scan_id", "findings")
    }
    assert _by_installation(report["findings"]) == _by_installation(whole["findings"])
    tenants = [f["tenant_uuid"] for f in report["findings"]]
    assert tenants == sorted(tenants, key=tenants.index)  # tenant by tenant, as produced


def test_jsonl_is_the_findings_then_one_summary_line(tmp_path: Path) -> None:
    lines = [json.loads(line) for line in _scan(tmp_path, "jsonl").read_text(encoding="utf-8").splitlines()]
    *findings, summary = lines
    whole = _whole()
    assert _by_installation(findings) == _by_installation(whole["findings"])
    assert summary["schema"] == "powerx.scan-summary/v1"
    assert {k: summary[k] for k in ("coverage", "errors", "warnings")} == {
        k: whole[k] for k in ("coverage", "errors", "warnings")
    }
    assert set(summary) == {"schema", "scan_id", "generated_at", "coverage", "errors", "warnings"}


def test_csv_has_one_row_per_finding_of_the_whole_report(tmp_path: Path) -> None:
    text = _scan(tmp_path, "csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert sorted((r["tenant_uuid"], r["plugin_id"]) for r in rows) == sorted(
        (f["tenant_uuid"], f["plugin_id"]) for f in _whole()["findings"]
    )


def test_the_table_summarises_then_shows_the_top_findings(tmp_path: Path) -> None:
    text = _scan(tmp_path, "table").read_text(encoding="utf-8")
    whole = _whole()
    total = len(whole["findings"])
    assert f"Findings: {total:,}" in text
    assert "By action: upgrade_now" in text
    assert f"Showing the 50 findings of highest priority of {total:,}." in text
    top = max(f["priority"] for f in whole["findings"])
    first_row = next(line for line in text.splitlines() if line[:9].strip().isdigit())
    assert int(first_row.split()[0]) == top
    plugin_ids = {f["plugin_id"] for f in whole["findings"]}
    shown = [line for line in text.splitlines() if any(p in line for p in plugin_ids)]
    assert len(shown) >= 50  # every plugin id on one line: never wrapped


@pytest.mark.parametrize("flag", ["--all"])
def test_all_shows_every_finding(tmp_path: Path, flag: str) -> None:
    text = _scan(tmp_path, "table", flag).read_text(encoding="utf-8")
    assert "Showing the" not in text
    rows = [line for line in text.splitlines() if line[:9].strip().isdigit()]
    assert len(rows) == len(_whole()["findings"])


DIGESTS = Path(__file__).parent / "snapshots" / "example_scan.sha256.json"
SCAN_ID = re.compile(
    r'(?:"scan_id": ?"|Scan |Scan id:\*\* )([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'
)
STREAMED = [f for f in ReportFormat if f is not ReportFormat.TABLE]


def _scan_id(text: str) -> str:
    """The report's scan id (CSV carries none)."""
    found = {m.group(1) for m in SCAN_ID.finditer(text)}
    assert len(found) <= 1, found
    return found.pop() if found else "SCAN-ID"


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_format_is_byte_for_byte_what_it_was(tmp_path: Path, fmt: ReportFormat) -> None:
    """The example fleet's reports, scan id and checkout path aside, as the implementation that built
    every report whole wrote them (SHA-256 of each saved; UPDATE_SNAPSHOTS=1 saves them anew)."""
    text = _scan(tmp_path, fmt.value).read_bytes().decode("utf-8")  # CSV lines end in CRLF
    normalised = text.replace(_scan_id(text), "SCAN-ID")
    if fmt is ReportFormat.TABLE:  # the table wraps long lines (a file's path) where the width ends
        normalised = re.sub(r"\s+", " ", normalised).replace(str(REPO), "<repo>")
    else:
        normalised = normalised.replace(str(REPO), "<repo>")
    digests = json.loads(DIGESTS.read_text(encoding="utf-8"))
    digest = hashlib.sha256(normalised.encode()).hexdigest()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        DIGESTS.write_text(json.dumps({**digests, fmt.value: digest}, indent=2) + "\n", encoding="utf-8")
        return
    assert digest == digests[fmt.value], f"{fmt.value} report changed; it is in {tmp_path}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic fleet, one manifest file per tenant, as a tenant directory export has it."""
    return generated_fleet(tmp_path_factory.mktemp("fleet"), seed=11, tenants=300)


def _reference(request: FileScanRequest, scan_id: str, fmt: ReportFormat) -> str:
    """The report through the other path: every finding built as a document, then rendered whole, in
    the order a streamed report has (tenant by tenant, each tenant's findings highest priority first)."""
    report = build_report(run_file_scan(request).result, scan_id=scan_id)
    first = {uuid: n for n, uuid in enumerate(_tenant_order(request))}
    report["findings"].sort(key=lambda doc: first[doc["tenant_uuid"]])  # stable: priorities stay ordered
    return render(report, fmt)


def _tenant_order(request: FileScanRequest) -> list[str]:
    return [r.manifest.tenant_uuid for r in load_manifests(request.manifests) if r.manifest is not None]


@pytest.mark.parametrize("fmt", STREAMED)
@pytest.mark.parametrize("data", ["examples", "fleet"])
def test_streamed_reports_equal_the_reports_built_whole(
    tmp_path: Path, fleet: Path, fmt: ReportFormat, data: str
) -> None:
    """Spliced from shared findings tenant by tenant, or rendered from whole documents: the same bytes."""
    args: tuple[str | Path, ...] = EXAMPLE
    request = _request()
    if data == "fleet":
        rules = REPO / "config" / "version" / "governance_rules.yaml"
        request = FileScanRequest(fleet / "catalog.json", fleet / "manifests", request.now, rules=rules)
        args = (
            "--catalog",
            request.catalog,
            "--manifests",
            request.manifests,
            "--rules",
            rules,
            "--now",
            NOW,
        )
    out = tmp_path / f"report.{fmt.value}"
    run = powerx("version", "scan", *args, "--format", fmt.value, "--output", out)
    assert run.returncode in (0, 1, 3), run.stderr
    text = out.read_bytes().decode("utf-8")  # CSV lines end in CRLF
    assert text == _reference(request, _scan_id(text), fmt)
