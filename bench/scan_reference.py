"""DESIGN §8 reference workload through `powerx version scan`, measured as users run it.

    python -m bench.scan_reference [--tenants N] [--repeat K] [--layout jsonl|files] [--formats ...]

For each report format the real CLI runs in its own process (`powerx version scan … --format F
--output FILE`; the table is printed to a file as it would be to a terminal), and its wall time
and peak RSS are taken from the operating system (wait4), as `/usr/bin/time -v` reports them: the
largest peak of any one of its processes (a scan forks workers, `--workers` / POWERX_SCAN_WORKERS).
"Σ peaks" adds every process's own peak (VmHWM, read from /proc every 20 ms while they run): what
the scan's processes could hold together at most. `BENCH_POWERX=/path/to/powerx` measures another
build (an A/B in one run: the floor is measured alike).
Next to it, in the same run, the floor: a process that merely `json`-loads the same input files.
Figures are medians of `--repeat` runs; ratios are to the floor's median. CPU seconds (user +
system, from the kernel) are printed next to wall time: on a shared machine they vary far less.
Their system part ("of it sys") is mostly first touches of memory (the report's pages, the heap):
on a virtual machine that hands free memory back to its host it varies from run to run by up to
seconds, and is what moves a scan's wall time most there.

`--layout files` writes the fleet as one manifest file per tenant (as a tenant directory export
is), `jsonl` as one JSON-lines file. Every process runs with Python's bytecode cache on (under
bench/out), as an installed tool does even where the shell sets PYTHONDONTWRITEBYTECODE.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Final

import msgspec

from bench.common import OUT, Run, dataset, installed_environment, whole_process

NOW: Final = "2026-11-30T00:00:00Z"
FORMATS: Final = ("json", "jsonl", "csv", "sarif", "markdown", "table")
POWERX: Final = Path(sys.executable).with_name("powerx")
_FLOOR: Final = """
import json, sys
from pathlib import Path
json.loads(Path(sys.argv[1]).read_bytes())
manifests = Path(sys.argv[2])
if manifests.is_dir():
    for path in sorted(manifests.glob("*.json")):
        json.loads(path.read_bytes())
else:
    with manifests.open("rb") as stream:
        for line in stream:
            json.loads(line)
"""


def measure(command: list[str], ok: tuple[int, ...] = (0, 1, 3), workers: int | None = None) -> Run:
    """Wall time and peak RSS of one process, from the kernel (what `/usr/bin/time -v` prints), and
    the sum of its processes' peaks; `ok`: the exit codes that mean it did its work (a scan exits 1
    or 3 on findings or gaps); `workers`: POWERX_SCAN_WORKERS (None: the CLI's default)."""
    extra = {} if workers is None else {"POWERX_SCAN_WORKERS": str(workers)}
    return whole_process(command, ok, env=installed_environment(extra))


def manifest_files(jsonl: Path) -> Path:
    """The same fleet as one manifest file per tenant (written once, next to the JSON-lines file)."""
    directory = jsonl.parent / "manifests"
    marker = directory / ".complete"
    if marker.exists():
        return directory
    directory.mkdir(exist_ok=True)
    with jsonl.open("rb") as stream:
        for number, line in enumerate(stream):
            uuid = msgspec.json.decode(line)["tenant_uuid"]
            (directory / f"{number:06d}-{uuid}.json").write_bytes(line)
    marker.touch()
    return directory


def scan_command(catalog: Path, manifests: Path, fmt: str, out: Path, powerx: str | None = None) -> list[str]:
    """`powerx version scan` of the inputs into `out`; `powerx`: the build (default $BENCH_POWERX, else
    this checkout's)."""
    command = [
        powerx or os.environ.get("BENCH_POWERX", str(POWERX)),
        "version",
        "scan",
        "--catalog",
        str(catalog),
        "--manifests",
        str(manifests),
    ]
    command += ["--now", NOW, "--format", fmt, "--output", str(out / f"report.{fmt}")]
    return command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layout", choices=["jsonl", "files"], default="files")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument(
        "--workers", type=int, help="POWERX_SCAN_WORKERS for the scans (default: the CLI's, one per CPU)"
    )
    args = parser.parse_args()
    data = dataset(args.tenants)
    manifests = manifest_files(data.manifests) if args.layout == "files" else data.manifests
    out = OUT / f"reports-{args.tenants}"
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"fleet: {data.tenants:,} tenants, {data.installations:,} installations, {data.plugins} plugins x "
        f"{data.releases // data.plugins} releases, {data.advisories} advisories; manifests as {args.layout}"
    )
    runs: dict[str, list[Run]] = {"floor": [], **{fmt: [] for fmt in args.formats}}
    measure([str(POWERX), "version", "scan", "--help"], ok=(0,))  # fills the bytecode cache
    for _ in range(args.repeat):  # interleaved, so that machine noise hits every command alike
        runs["floor"].append(
            measure([sys.executable, "-c", _FLOOR, str(data.catalog), str(manifests)], ok=(0,))
        )
        for fmt in args.formats:
            runs[fmt].append(measure(scan_command(data.catalog, manifests, fmt, out), workers=args.workers))
    _print(runs, out)


def _print(runs: dict[str, list[Run]], out: Path) -> None:
    floor = statistics.median(r.seconds for r in runs["floor"])
    floor_cpu = statistics.median(r.cpu_seconds for r in runs["floor"])
    print(f"machine load (1, 5, 15 min): {', '.join(f'{n:.2f}' for n in os.getloadavg())}")
    columns = (
        ("wall (median)", 14),
        ("runs", 26),
        ("CPU (median)", 13),
        ("of it sys", 10),
        ("peak RSS", 10),
        ("Σ peaks", 10),
        ("procs", 6),
        ("x floor", 8),
        ("CPU x floor", 12),
        ("report", 9),
    )
    print(f"{'command':10s} " + " ".join(f"{name:>{width}s}" for name, width in columns))
    for name, rs in runs.items():
        wall = statistics.median(r.seconds for r in rs)
        cpu = statistics.median(r.cpu_seconds for r in rs)
        system = statistics.median(r.system_seconds for r in rs)
        size = (out / f"report.{name}").stat().st_size / 1e6 if name != "floor" else 0.0
        print(
            f"{name:10s} {wall:12.2f} s {', '.join(f'{r.seconds:.2f}' for r in rs):>26s} {cpu:11.2f} s"
            f" {system:8.2f} s {max(r.peak_rss_mib for r in rs):7.0f} MiB"
            f" {max(r.tree_rss_mib for r in rs):7.0f} MiB"
            f" {max(r.processes for r in rs):6d} {wall / floor:7.2f}x {cpu / floor_cpu:11.2f}x"
            f" {size:6.0f} MB"
        )


if __name__ == "__main__":
    main()
