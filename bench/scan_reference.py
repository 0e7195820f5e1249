"""DESIGN §8 reference workload through the file scan: 20,000 tenants x 50 installations.

    python -m bench.scan_reference [--tenants N] [--repeat K]

Phases run in separate interpreters so each peak-memory figure is its own:
  load    read and validate the inventory and the catalog (the load floor)
  scan    load + index + evaluate every installation + fan findings out (what `powerx version scan` does)
  report  scan + build the DESIGN §4 report and encode it as JSON
Figures are reported as ratios to the load floor measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import UTC, datetime
from typing import Any

import msgspec

from bench.common import dataset, measure, run_phase
from powerx_governance.catalog.loader import Loaded, load_catalog
from powerx_governance.inventory.loader import load_manifests
from powerx_governance.scans.report import build_report
from powerx_governance.scans.scanner import bulk_allocation
from powerx_governance.scans.service import FileScanRequest, run_file_scan

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _load(tenants: int) -> dict[str, Any]:
    data = dataset(tenants)
    loaded = Loaded()
    with bulk_allocation():  # the same GC setting the scan runs under: a fair floor
        load_catalog(data.catalog, loaded)
        manifests = [r.manifest for r in load_manifests(data.manifests) if r.manifest is not None]
    return {"tenants": len(manifests), "installations": sum(len(m.plugins) for m in manifests)}


def _scan(tenants: int, *, report: bool) -> dict[str, Any]:
    data = dataset(tenants)
    done = run_file_scan(FileScanRequest(catalog=data.catalog, manifests=data.manifests, now=NOW))
    figures = {
        "tenants": done.result.tenants_scanned,
        "installations": done.result.installations,
        "findings": len(done.result.findings),
        "distinct_combinations": done.result.distinct_combinations,
        "errors": len(done.result.errors),
    }
    if report:
        figures["report_bytes"] = len(msgspec.json.encode(build_report(done.result)))
    return figures


def phase(name: str, tenants: int) -> dict[str, Any]:
    if name == "load":
        return measure(lambda: _load(tenants))
    return measure(lambda: _scan(tenants, report=name == "report"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--phase", choices=["load", "scan", "report"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.tenants)))
        return
    data = dataset(args.tenants)
    print(
        f"fleet: {data.tenants} tenants, {data.installations} installations, {data.plugins} plugins x "
        f"{data.releases // data.plugins} releases, {data.advisories} advisories"
    )
    runs: dict[str, list[dict[str, Any]]] = {"load": [], "scan": [], "report": []}
    for _ in range(args.repeat):
        for name, results in runs.items():
            results.append(run_phase("bench.scan_reference", "--phase", name, "--tenants", str(args.tenants)))
    _print(runs)


def _print(runs: dict[str, list[dict[str, Any]]]) -> None:
    median = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    scan = runs["scan"][-1]
    for name, rs in runs.items():
        seconds = ", ".join(f"{r['seconds']:.2f}" for r in rs)
        peak = max(r["peak_rss_mib"] for r in rs)
        print(
            f"{name:7s} median {median[name]:6.2f} s  (runs: {seconds})  peak RSS {peak:7.1f} MiB"
            f"  ratio to load {median[name] / median['load']:.2f}x"
        )
    print(f"installations/s (scan, median): {scan['installations'] / median['scan']:,.0f}")
    combos, installs = scan["distinct_combinations"], scan["installations"]
    print(f"distinct combinations: {combos:,} for {installs:,} installations; findings: {scan['findings']:,}")
    print(f"report JSON: {runs['report'][-1].get('report_bytes', 0) / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
