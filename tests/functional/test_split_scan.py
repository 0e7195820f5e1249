"""`powerx version scan` split across worker processes writes, byte for byte, the report one process
writes: every format, on the example fleet and on a generated one (a manifest directory and a
JSON-lines file), with errors in a worker's part reported and counted as one process reports them."""

from __future__ import annotations

import gc
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

import pytest

from powerx_governance.inventory.loader import load_manifests
from powerx_governance.reports import ReportFormat, report_writer
from powerx_governance.reports.json_report import JsonWriter
from powerx_governance.reports.sarif_report import SarifWriter
from powerx_governance.reports.stream import PartWriter, TenantFindings
from powerx_governance.scans.report import TenantReport, report_summary
from powerx_governance.scans.scanner import ScanResult, scan_tenants
from powerx_governance.scans.service import FileScanRequest, prepare, stream_file_scan
from powerx_governance.terminal.exit_codes import ExitCode
from tests.functional.cli import NOW, POWERX, REPO, generated_fleet, powerx

SCAN_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RULES = REPO / "config" / "version" / "governance_rules.yaml"
EXAMPLE = (
    "--catalog",
    REPO / "examples" / "catalog.yaml",
    "--manifests",
    REPO / "examples" / "manifests",
    "--rules",
    RULES,
    "--compat",
    REPO / "config" / "version" / "compat_matrix.yaml",
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated fleet: catalog.json, manifests.jsonl, and the same tenants one file each."""
    return generated_fleet(tmp_path_factory.mktemp("fleet"), seed=5, tenants=240)


def _inputs(name: str, fleet: Path) -> tuple[str | Path, ...]:
    if name == "examples":
        return EXAMPLE
    manifests = fleet / ("manifests.jsonl" if name == "fleet-jsonl" else "manifests")
    return ("--catalog", fleet / "catalog.json", "--manifests", manifests, "--rules", RULES)


def _scan(out: Path | None, inputs: tuple[str | Path, ...], fmt: str, workers: int, *args: str) -> bytes:
    """The report (scan id blanked) of one scan, written to `out`, or to stdout when None."""
    target = ("--output", out) if out is not None else ()
    run = powerx(
        "version", "scan", *inputs, "--now", NOW, "--format", fmt, "--workers", str(workers), *target, *args
    )
    assert run.returncode in (ExitCode.CLEAN, ExitCode.INCOMPLETE), run.stderr
    text = out.read_bytes() if out is not None else run.stdout.encode()
    return _blank_scan_id(text)


def _blank_scan_id(text: bytes) -> bytes:
    """The scan id (a fresh uuid4 each scan) replaced; tenant uuids are left alone."""
    for pattern in (rb'"scan_id": ?"(%s)"', rb"Scan (%s)", rb"Scan id:\*\* (%s)"):
        found = re.search(pattern % SCAN_ID.pattern, text)
        if found:
            return text.replace(found.group(1), b"SCAN-ID")
    return text


@pytest.mark.parametrize("fmt", [f.value for f in ReportFormat])
@pytest.mark.parametrize("data", ["examples", "fleet-files", "fleet-jsonl"])
def test_split_scans_write_the_single_process_report(
    tmp_path: Path, fleet: Path, fmt: str, data: str
) -> None:
    inputs = _inputs(data, fleet)
    alone = _scan(tmp_path / f"alone.{fmt}", inputs, fmt, 1)
    assert alone
    for workers in (2, 3):
        assert _scan(tmp_path / f"split{workers}.{fmt}", inputs, fmt, workers) == alone, f"{workers} workers"


@pytest.mark.parametrize(
    "args", [("--format", "table", "--all"), ("--format", "jsonl", "--fail-on", "low"), ("--format", "sarif")]
)
def test_the_console_script_ends_a_scan_as_the_app_does(
    tmp_path: Path, fleet: Path, args: tuple[str, ...]
) -> None:
    """`powerx` ends a finished scan without freeing its heap (`os._exit` once the streams are
    flushed): through pipes, the same output, messages and exit code as the app ending the
    interpreter's way; and the same report file."""
    ends = {
        "console script": [str(POWERX)],
        "interpreter": [sys.executable, "-c", "from powerx_governance.cli.main import app; app()"],
    }
    seen = {}
    out = tmp_path / "report"
    for name, command in ends.items():
        runs = []
        for target in ((), ("--output", str(out))):
            scan = [*command, "version", "scan", *map(str, (*_inputs("fleet-files", fleet), "--now", NOW))]
            run = subprocess.run(
                [*scan, *args, "--workers", "2", *target],
                capture_output=True,
                cwd=REPO,
                timeout=300,
                check=False,
            )
            runs.append((run.returncode, _blank_scan_id(run.stdout), run.stderr))
        seen[name] = (runs, _blank_scan_id(out.read_bytes()))
    assert seen["console script"] == seen["interpreter"]
    assert seen["interpreter"][0][0][1]  # something was printed
    assert {code for code, _, _ in seen["interpreter"][0]} == {1 if "--fail-on" in args else 0}


@pytest.mark.parametrize("fmt", ["jsonl", "sarif", "table"])
def test_split_scans_write_the_same_to_stdout(fleet: Path, fmt: str) -> None:
    inputs = _inputs("fleet-files", fleet)
    assert _scan(None, inputs, fmt, 3) == _scan(None, inputs, fmt, 1)


def test_a_split_table_with_every_finding_is_the_same(tmp_path: Path, fleet: Path) -> None:
    inputs = _inputs("fleet-jsonl", fleet)
    alone = _scan(tmp_path / "alone.txt", inputs, "table", 1, "--all")
    assert _scan(tmp_path / "split.txt", inputs, "table", 3, "--all") == alone


@pytest.mark.parametrize("layout", ["files", "jsonl"])
def test_bad_manifests_in_a_workers_part_are_reported_and_fail_the_scan(
    tmp_path: Path, fleet: Path, layout: str
) -> None:
    """Unreadable manifests in the last part (a worker's) are errors of the report, in tenant order,
    and the exit code says the picture is partial, exactly as one process says it."""
    lines = (fleet / "manifests.jsonl").read_bytes().splitlines()
    lines[-2] = b'{"schema": "powerx.manifest/v1", "tenant_uuid": "broken", "core_version": "one"}'
    lines[-5] = b"{not json"
    lines[-9] = b'{"schema": "powerx.manifest/v1", "tenant_uuid": "x"}'
    if layout == "jsonl":
        manifests = tmp_path / "fleet.jsonl"
        manifests.write_bytes(b"\n".join(lines) + b"\n")
    else:
        manifests = tmp_path / "manifests"
        manifests.mkdir()
        for n, line in enumerate(lines):
            (manifests / f"{n:04d}.json").write_bytes(line)
    inputs = ("--catalog", fleet / "catalog.json", "--manifests", manifests, "--rules", RULES, "--now", NOW)
    reports, codes = [], []
    for workers in (1, 3):
        out = tmp_path / f"report-{workers}.json"
        run = powerx(
            "version", "scan", *inputs, "--format", "json", "--output", out, "--workers", str(workers)
        )
        codes.append(run.returncode)
        reports.append(_blank_scan_id(out.read_bytes()))
    assert codes == [ExitCode.INCOMPLETE, ExitCode.INCOMPLETE]
    assert reports[0] == reports[1]
    report: dict[str, Any] = json.loads(reports[1])
    assert len(report["errors"]) == 3
    assert report["coverage"]["tenants_total"] == len(lines)
    assert report["coverage"]["tenants_scanned"] == len(lines) - 3
    if layout == "jsonl":  # named by their line in the whole file, though a worker read them
        assert [e["source"] for e in report["errors"]] == [f"{manifests}:{len(lines) - n}" for n in (8, 4, 1)]


def test_the_worker_count_comes_from_the_environment(tmp_path: Path, fleet: Path) -> None:
    out = tmp_path / "report.csv"
    command = [str(POWERX), "version", "scan"]
    command += [
        str(a) for a in (*_inputs("fleet-files", fleet), "--now", NOW, "--format", "csv", "--output", out)
    ]
    env = {**os.environ, "POWERX_SCAN_WORKERS": "0"}
    refused = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=300)
    assert refused.returncode != 0
    assert "POWERX_SCAN_WORKERS" in refused.stderr


class _FailingPart(JsonWriter):
    """A JSON writer whose later parts fail, as a worker that meets a bug does."""

    def continuation(self, out: BinaryIO) -> JsonWriter:
        return _Failing(out, continued=True)


class _Failing(JsonWriter):
    def add_tenant(self, batch: TenantFindings) -> None:
        raise LookupError(f"no such thing as {batch.tenant_uuid}")


def test_a_failing_worker_fails_the_scan(fleet: Path) -> None:
    request = FileScanRequest(fleet / "catalog.json", fleet / "manifests", datetime(2026, 11, 30, tzinfo=UTC))
    with pytest.raises(LookupError, match="no such thing as"):
        stream_file_scan(request, _FailingPart(io.BytesIO()), workers=2)


class _Thresholds(JsonWriter):
    """A JSON writer that notes the collector's youngest threshold when the report starts and ends."""

    seen: list[int]

    def start(self, header: Mapping[str, Any]) -> None:
        self.seen = [gc.get_threshold()[0]]
        super().start(header)

    def finish(self, summary: Mapping[str, Any]) -> None:
        self.seen.append(gc.get_threshold()[0])
        super().finish(summary)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_scan_gives_the_collector_its_thresholds_back(fleet: Path, workers: int) -> None:
    """From the catalog's intake to the report's end the youngest generation is collected rarely
    (the scan's objects are all alive then); the thresholds are given back as they were found,
    when the scan ends and when it fails."""
    request = FileScanRequest(fleet / "catalog.json", fleet / "manifests", datetime(2026, 11, 30, tzinfo=UTC))
    before = gc.get_threshold()
    stream_file_scan(request, writer := _Thresholds(io.BytesIO()), workers=workers)
    assert gc.get_threshold() == before
    assert min(writer.seen) >= max(before[0], 200_000)
    with pytest.raises(LookupError):
        stream_file_scan(request, _FailingPart(io.BytesIO()), workers=2)
    assert gc.get_threshold() == before


def test_one_worker_scans_in_this_process(fleet: Path) -> None:
    request = FileScanRequest(fleet / "catalog.json", fleet / "manifests", datetime(2026, 11, 30, tzinfo=UTC))
    done = stream_file_scan(request, _FailingPart(out := io.BytesIO()), workers=1)
    assert done.result.tenants_total == 240
    assert json.loads(out.getvalue())["coverage"]["tenants_total"] == 240


HEADER: Final = {
    "schema": "powerx.scan-report/v1",
    "scan_id": "SCAN-ID",
    "generated_at": "2026-11-30T00:00:00Z",
}


def scanned_reports(fleet: Path) -> tuple[list[TenantReport], dict[str, Any]]:
    """The fleet's tenants scanned one by one (as a report writer takes them) and its summary."""
    request = FileScanRequest(fleet / "catalog.json", fleet / "manifests", datetime(2026, 11, 30, tzinfo=UTC))
    engine, _, _ = prepare(request)
    result = ScanResult(generated_at=request.now)
    batches = [
        TenantReport(t, request.now) for t in scan_tenants(engine, load_manifests(request.manifests), result)
    ]
    return batches, report_summary(result)


def whole_report(fmt: ReportFormat, batches: Sequence[TenantReport], summary: Mapping[str, Any]) -> bytes:
    """The report one writer gives for `batches`, in memory."""
    with report_writer(fmt, out := io.BytesIO()) as writer:
        writer.start(HEADER)
        for batch in batches:
            writer.add_tenant(batch)
        writer.finish(summary)
    return out.getvalue()


@pytest.mark.parametrize("fmt", [f for f in ReportFormat if f is not ReportFormat.TABLE])
def test_part_writers_joined_in_memory_write_the_whole_report(fleet: Path, fmt: ReportFormat) -> None:
    """The writers' part protocol alone, in one process and in memory: the tenants cut in three,
    the later two written by continuations and joined, give the bytes one writer gives."""
    batches, summary = scanned_reports(fleet)
    header = HEADER

    with report_writer(fmt, out := io.BytesIO()) as writer:
        assert isinstance(writer, PartWriter)
        writer.start(header)
        cuts = [batches[:100], batches[100:101], batches[101:]]
        bodies = [io.BytesIO() for _ in cuts[1:]]
        writers = [writer, *(writer.continuation(body) for body in bodies)]
        prior: list[str] = []
        for part, part_writer in zip(cuts, writers, strict=True):
            if isinstance(part_writer, SarifWriter):  # rules numbered after the parts before
                for batch in part:
                    part_writer.learn(batch)
                known = set(prior)
                met = [rule for rule in part_writer.rules_met() if rule not in known]
                part_writer.follow(prior)
                prior += met
            for batch in part:
                part_writer.add_tenant(batch)
        for part_writer, body in zip(writers[1:], bodies, strict=True):
            writer.join(part_writer.handoff(), body)
        writer.finish(summary)
    assert out.getvalue() == whole_report(fmt, batches, summary)
