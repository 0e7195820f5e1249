"""A split scan written to a file, in a format whose writer knows a part's size before writing it
(json, jsonl, csv; sarif once the parts before have numbered its rules; markdown once every part is
surveyed and the head written): each process writes its part straight to its place in the report,
no part is copied, and the report is byte for byte the one a single process writes."""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from powerx_governance import findings
from powerx_governance.reports import ReportFormat, json_report, report_writer
from powerx_governance.reports.json_report import JsonWriter
from powerx_governance.reports.markdown_report import MarkdownWriter
from powerx_governance.reports.sarif_report import SarifWriter
from powerx_governance.reports.stream import HeadedWriter, PlacedStream, PlacedWriter, Tally, TenantFindings
from powerx_governance.scans.report import TenantReport
from powerx_governance.scans.service import FileScanRequest, stream_file_scan
from tests.functional.cli import generated_fleet
from tests.functional.test_split_scan import HEADER, _blank_scan_id, scanned_reports, whole_report

PLACED = [ReportFormat.JSON, ReportFormat.JSONL, ReportFormat.CSV]
NOW = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_fleet(tmp_path_factory.mktemp("fleet"), seed=5, tenants=240)


@pytest.fixture(scope="module")
def scanned(fleet: Path) -> tuple[list[TenantReport], dict[str, Any]]:
    return scanned_reports(fleet)


@pytest.mark.parametrize("fmt", PLACED)
@pytest.mark.parametrize("first", [100, 0], ids=["findings-first", "nothing-first"])
def test_parts_written_at_their_places_make_the_whole_report(
    tmp_path: Path, scanned: tuple[list[TenantReport], dict[str, Any]], fmt: ReportFormat, first: int
) -> None:
    """The protocol alone, in one process: each part sized, told where it starts and after how many
    findings, and written there; later parts are written before the first (as workers may be)."""
    batches, summary = scanned
    no_findings = [b for b in batches if not b.parts][:3]
    cuts = [batches[:first], no_findings, batches[first : first + 1], batches[first + 1 :]]
    path = tmp_path / f"report.{fmt}"
    with path.open("wb") as out, report_writer(fmt, out) as writer:
        assert isinstance(writer, PlacedWriter)
        writer.start(HEADER)
        place = writer.place()
        assert place is not None
        descriptor, start = place
        starts, before, ends = [], 0, []
        for cut in cuts:
            starts.append((start, before))
            start += writer.size(cut, before)
            before += sum(len(b.parts) for b in cut)
            ends.append(start)
        handoffs = {}
        for k in reversed(range(1, len(cuts))):
            stream = PlacedStream(descriptor, starts[k][0])
            part = writer.placed(stream, starts[k][1])
            for batch in cuts[k]:
                part.add_tenant(batch)
            stream.flush()
            assert stream.offset == ends[k]
            handoffs[k] = part.handoff()
        for batch in cuts[0]:
            writer.add_tenant(batch)
        assert out.tell() == ends[0]
        for k in range(1, len(cuts)):
            writer.resume(handoffs[k], ends[k])
        writer.finish(summary)
    assert path.read_bytes() == whole_report(fmt, batches, summary)


@pytest.mark.parametrize("findings_in", ["every-part", "no-part"])
def test_a_headed_reports_parts_written_at_their_places_make_the_whole_report(
    tmp_path: Path, scanned: tuple[list[TenantReport], dict[str, Any]], findings_in: str
) -> None:
    """Markdown's protocol alone, in one process: each part surveyed (its rows' bytes and counts),
    the head written for the whole scan's counts, then each part's rows at their place, the later
    parts before the first (as workers may)."""
    batches, summary = scanned
    no_findings = [b for b in batches if not b.parts]
    if findings_in == "every-part":
        cuts = [batches[:100], no_findings[:3], batches[100:101], batches[101:]]
    else:
        cuts = [no_findings[:2], no_findings[2:5], no_findings[5:]]
    expected = whole_report(ReportFormat.MARKDOWN, [b for cut in cuts for b in cut], summary)
    path = tmp_path / "report.md"
    with path.open("wb") as out, report_writer(ReportFormat.MARKDOWN, out) as writer:
        assert isinstance(writer, HeadedWriter)
        assert not isinstance(writer, PlacedWriter)  # its parts wait for the head, not for each other
        writer.start(HEADER)
        surveys = [writer.survey(cut) for cut in cuts]
        tally = Tally()
        for _, counts in surveys:
            tally.merge(counts)
        assert tally.findings == sum(len(b.parts) for cut in cuts for b in cut)
        assert sum(tally.by_risk.values()) == sum(tally.by_action.values()) == tally.findings
        writer.write_head(summary, tally)
        place = writer.place()
        assert place is not None
        descriptor, start = place
        starts = []
        for size, _ in surveys:
            starts.append(start)
            start += size
        handoffs = []
        for k in reversed(range(1, len(cuts))):
            stream = PlacedStream(descriptor, starts[k])
            part = writer.placed_rows(stream)
            part.write_rows(cuts[k])
            stream.flush()
            assert stream.offset == starts[k] + surveys[k][0]
            handoffs.append(part.handoff())
        writer.write_rows(cuts[0])
        assert out.tell() == starts[0] + surveys[0][0]
        for handoff in handoffs:
            writer.resume(handoff, start)
        writer.finish(summary)
    assert path.read_bytes() == expected
    assert (b"| Priority |" in expected) is (findings_in == "every-part")


@pytest.mark.parametrize("fmt", PLACED)
def test_a_parts_size_is_the_sum_of_its_tenants_sizes(
    scanned: tuple[list[TenantReport], dict[str, Any]], fmt: ReportFormat
) -> None:
    """What a later part sizes before it knows how many findings the parts before it have: a batch's
    size after n > 0 findings is its size after one, and a part's size is its batches' sizes summed
    (those up to the first with findings sized once `before` is known)."""
    batches, _ = scanned
    with report_writer(fmt, io.BytesIO()) as writer:
        assert isinstance(writer, PlacedWriter)
        for batch in batches[:40]:
            assert writer.size([batch], 1) == writer.size([batch], 7) == writer.size([batch], 10**6)
        no_findings = [b for b in batches if not b.parts][:2]
        part = [*no_findings, *batches[:60]]
        lead = next(k for k, b in enumerate(part) if b.parts) + 1
        rest = sum(writer.size([b], 1) for b in part[lead:])
        for before in (0, 1, 250):
            assert writer.size(part, before) == writer.size(part[:lead], before) + rest
        assert writer.size(part, 0) != writer.size(part, 1) or fmt is not ReportFormat.JSON


@pytest.mark.parametrize("fmt", PLACED)
def test_a_later_part_renders_nothing_its_sizing_rendered(
    tmp_path: Path,
    scanned: tuple[list[TenantReport], dict[str, Any]],
    fmt: ReportFormat,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker sizes its part with the report's writer before it waits, then writes it through
    `placed`: each shared verdict and finding is rendered once, by the sizing, none again."""
    batches, _ = scanned
    rendered: list[object] = []

    def counted(method: Any) -> Any:
        def render(self: object) -> Any:
            rendered.append(self)
            return method(self)

        return render

    for cls, name in ((findings.SharedVerdict, "document"), (findings.SharedFinding, "context_document")):
        monkeypatch.setattr(cls, name, counted(getattr(cls, name)))
    with (tmp_path / f"r.{fmt}").open("wb") as out, report_writer(fmt, out) as writer:
        assert isinstance(writer, PlacedWriter)
        size = sum(writer.size([b], 1) for b in batches)
        sized = len(rendered)
        assert sized > 0
        stream = PlacedStream(out.fileno(), 0)
        part = writer.placed(stream, 1)
        for batch in batches:
            part.add_tenant(batch)
        stream.flush()
    assert stream.offset == size
    assert len(rendered) == sized  # writing rendered nothing again
    assert len(rendered) == len(set(map(id, rendered)))  # and sizing each once


def test_a_sarif_part_counts_its_results_as_it_learns_them(
    scanned: tuple[list[TenantReport], dict[str, Any]],
) -> None:
    """What a SARIF part tells the next one (how many results come before it) is counted during its
    scan, tenant by tenant, and is what the report then holds."""
    batches, summary = scanned
    writer = SarifWriter(io.BytesIO())
    counts = [writer.learn(batch) for batch in batches]
    report = json.loads(whole_report(ReportFormat.SARIF, batches, summary))
    assert sum(counts) == len(report["runs"][0]["results"]) > len(batches)
    assert [writer.learn(batch) for batch in batches] == counts  # met again: the same count


def test_a_file_is_placed_a_pipe_or_an_appended_file_is_not(tmp_path: Path) -> None:
    with (tmp_path / "r.json").open("wb") as out:
        out.write(b"12345")
        assert JsonWriter(out).place() == (out.fileno(), 5)
    with (tmp_path / "r.json").open("ab") as out:
        assert JsonWriter(out).place() is None
    assert JsonWriter(io.BytesIO()).place() is None


@pytest.mark.parametrize("fmt", [*PLACED, ReportFormat.SARIF, ReportFormat.MARKDOWN])
def test_a_split_scan_to_a_file_copies_no_part(
    tmp_path: Path, fleet: Path, fmt: ReportFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = FileScanRequest(fleet / "catalog.json", fleet / "manifests", NOW)
    reports = []
    for workers in (1, 3):
        with (tmp_path / f"{workers}.{fmt}").open("wb") as out, report_writer(fmt, out) as writer:
            stream_file_scan(request, writer, workers=workers)
        reports.append(_blank_scan_id((tmp_path / f"{workers}.{fmt}").read_bytes()))
        monkeypatch.setattr(json_report, "append_file", _no_copy)
        monkeypatch.setattr(f"powerx_governance.reports.{fmt.value}_report.append_file", _no_copy)
    assert reports[0] == reports[1]


def _no_copy(*_: object, **__: object) -> None:
    raise AssertionError("a part was copied into the report")


class _FailingPlaced(JsonWriter):
    """A JSON writer whose later (placed) parts fail, as a worker that meets a bug does."""

    def placed(self, out: BinaryIO, before: int) -> JsonWriter:
        return _Failing(out, continued=before > 0)


class _Failing(JsonWriter):
    def add_tenant(self, batch: TenantFindings) -> None:
        raise LookupError(f"no such thing as {batch.tenant_uuid}")


class _Oversized(JsonWriter):
    """A JSON writer that says its parts are a byte longer than they are."""

    def size(self, batches: Sequence[TenantFindings], before: int) -> int:
        return super().size(batches, before) + 1


class _FailingRows(MarkdownWriter):
    """A markdown writer whose later parts fail once surveyed, writing their rows."""

    def placed_rows(self, out: BinaryIO) -> MarkdownWriter:
        return _FailingMarkdown(out, rows=out)


class _FailingMarkdown(MarkdownWriter):
    def write_rows(self, batches: Sequence[TenantFindings]) -> None:
        raise LookupError(f"no such thing as {batches[0].tenant_uuid}")


class _Undersurveyed(MarkdownWriter):
    """A markdown writer that says its parts' rows are a byte shorter than they are."""

    def survey(self, batches: Sequence[TenantFindings]) -> tuple[int, Tally]:
        size, tally = super().survey(batches)
        return size - 1, tally


@pytest.mark.parametrize(
    ("writer", "error"),
    [
        (_FailingPlaced, LookupError),
        (_Oversized, RuntimeError),
        (_FailingRows, LookupError),
        (_Undersurveyed, RuntimeError),
    ],
)
def test_a_failing_or_wrongly_sized_part_fails_the_scan(
    tmp_path: Path, fleet: Path, writer: type[JsonWriter | MarkdownWriter], error: type[Exception]
) -> None:
    request = FileScanRequest(fleet / "catalog.json", fleet / "manifests", NOW)
    with (tmp_path / "r.out").open("wb") as out, pytest.raises(error, match=r"no such thing|to end at byte"):
        stream_file_scan(request, writer(out), workers=2)
    gc.collect()  # a writer left unfinished holds no file (a spool would warn here, unclosed)
