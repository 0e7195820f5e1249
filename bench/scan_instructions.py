"""`powerx version scan` counted in instructions (valgrind's callgrind), to compare builds on a noisy machine.

    python -m bench.scan_instructions [--tenants N] [--formats json sarif ...] [--powerx PATH ...]

Wall and CPU seconds of the same build moved ±20-30 % within minutes on these virtual machines
(fresh pages cost more some minutes than others), so a change of a few percent cannot be seen in
them without tens of runs. The number of instructions a process executes does not depend on what
else the machine does: this runs the real CLI, one process (`--workers 1`), under
`valgrind --tool=callgrind` (~50x slower: keep the fleet small, 2,000 tenants by default) and
prints the instructions of each build (`--powerx`, default this checkout's) next to the first's,
and the ratio. Same inputs, `PYTHONHASHSEED=0` and the bytecode cache compiled beforehand: runs of
one build agreed within 0.15 % here (5,547,834,726 and 5,555,498,938 at 500 tenants, json).

Instructions are not time: a change that saves instructions but touches more memory (or the
kernel's side of writing a report) can still be slower. Use it to tell whether a change does less
work in Python, then confirm with `bench.scan_reference` over many alternated runs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from bench.common import OUT, dataset, installed_environment
from bench.scan_reference import FORMATS, POWERX, scan_command

_TOTAL: Final = re.compile(rb"^summary:\s+(\d+)", re.MULTILINE)


def instructions(powerx: str, catalog: Path, manifests: Path, fmt: str, out: Path) -> int:
    """Instructions `powerx version scan` executes on the inputs, in one process (callgrind's total)."""
    with tempfile.TemporaryDirectory() as work:
        profile = Path(work) / "callgrind.out"
        callgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}"]
        command = [*callgrind, *scan_command(catalog, manifests, fmt, out, powerx), "--workers", "1"]
        env = installed_environment({"PYTHONHASHSEED": "0"})
        done = subprocess.run(command, env=env, capture_output=True, check=False)
        if done.returncode not in (0, 1, 3) or not profile.exists():
            raise SystemExit(f"{' '.join(command[:6])}… exited {done.returncode}:\n{done.stderr[-3000:]!r}")
        found = _TOTAL.search(profile.read_bytes())
        if found is None:
            raise SystemExit(f"no instruction total in {profile}")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=2_000)
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=["json", "sarif"])
    parser.add_argument(
        "--powerx", nargs="+", default=[str(POWERX)], help="the `powerx` of each build (the first: baseline)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    data = dataset(args.tenants)
    out = OUT / f"reports-instructions-{args.tenants}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"fleet: {data.tenants:,} tenants, {data.installations:,} installations; one process, callgrind")
    print(f"{'format':10s} {'build':40s} {'instructions':>16s} {'x first':>8s}")
    for fmt in args.formats:
        first = None
        for powerx in args.powerx:
            count = instructions(powerx, data.catalog, data.manifests, fmt, out)
            first = first or count
            print(f"{fmt:10s} {powerx[-40:]:40s} {count:16,d} {count / first:7.4f}x")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
