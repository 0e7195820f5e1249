"""`batch_scanner`: batch after batch of one scan, each batch's result what `scan` gives for it, the
tables of the batches before kept (a batch of tenants already seen asks the engine nothing)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from powerx_governance.inventory.loader import load_manifests
from powerx_governance.scans.scanner import batch_scanner, scan
from powerx_governance.scans.service import FileScanRequest, prepare

ROOT = Path(__file__).resolve().parents[2]
REQUEST = FileScanRequest(
    catalog=ROOT / "examples" / "catalog.yaml",
    manifests=ROOT / "examples" / "manifests",
    now=datetime(2026, 11, 30, tzinfo=UTC),
    rules=ROOT / "config" / "version" / "governance_rules.yaml",
    compat=ROOT / "config" / "version" / "compat_matrix.yaml",
)


def _shape(result: Any) -> list[tuple[str, str, str | None, int, tuple[str, ...]]]:
    return [
        (
            f.tenant.tenant_uuid,
            f.installation.plugin_id,
            f.verdict.target_version,
            f.verdict.priority,
            f.dependency_notes,
        )
        for f in result.findings
    ]


def test_each_batch_gets_what_a_scan_of_it_alone_gives() -> None:
    manifests = list(load_manifests(REQUEST.manifests))
    halves = [manifests[: len(manifests) // 2], manifests[len(manifests) // 2 :]]
    engine, _, _ = prepare(REQUEST)
    batches = batch_scanner(engine)
    together = [batches(half) for half in halves]
    alone_engine, _, _ = prepare(REQUEST)
    alone = [scan(alone_engine, half) for half in halves]
    for mine, theirs in zip(together, alone, strict=True):
        assert _shape(mine) == _shape(theirs)
        assert (mine.tenants_scanned, mine.installations, mine.errors) == (
            theirs.tenants_scanned,
            theirs.installations,
            theirs.errors,
        )
    assert sum(len(r.findings) for r in together) > 0


def test_a_batch_of_tenants_already_seen_asks_the_engine_nothing(monkeypatch: Any) -> None:
    manifests = list(load_manifests(REQUEST.manifests))
    engine, _, _ = prepare(REQUEST)
    asked: list[object] = []
    evaluate = engine.evaluate

    def counted(*args: Any) -> Any:
        asked.append(args)
        return evaluate(*args)

    monkeypatch.setattr(engine, "evaluate", counted)
    batches = batch_scanner(engine)
    first = batches(manifests)
    before = len(asked)
    again = batches(manifests)
    assert before > 0
    assert len(asked) == before  # every (context, plugin, version, channel) answered from the tables kept
    assert _shape(again) == _shape(first)
