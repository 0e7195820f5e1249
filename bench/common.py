"""Shared helpers: the reference data set (generated once, cached) and phase measurement."""

from __future__ import annotations

import compileall
import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.synthetic import SyntheticSet, generate

OUT = Path(__file__).resolve().parent / "out"
REFERENCE = {
    "tenants": 20_000,
    "installations_per_tenant": 50,
    "plugins": 500,
    "releases_per_plugin": 40,
    "advisories": 1_000,
}


def dataset(tenants: int = REFERENCE["tenants"], seed: int = 7) -> SyntheticSet:
    """The synthetic fleet for these sizes, generated into bench/out once and reused."""
    sizes = {**REFERENCE, "tenants": tenants}
    directory = OUT / f"fleet-{tenants}-{seed}"
    marker = directory / "sizes.json"
    if marker.exists() and json.loads(marker.read_text()) == sizes:
        return SyntheticSet(
            directory / "catalog.json",
            directory / "manifests.jsonl",
            tenants,
            tenants * sizes["installations_per_tenant"],
            sizes["plugins"],
            sizes["plugins"] * sizes["releases_per_plugin"],
            sizes["advisories"],
        )
    directory.mkdir(parents=True, exist_ok=True)
    made = generate(directory, seed=seed, **sizes)
    marker.write_text(json.dumps(sizes))
    return made


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `action` and add its wall time and this process's peak RSS."""
    start = time.perf_counter()
    figures = action()
    return {
        **figures,
        "seconds": round(time.perf_counter() - start, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def run_phase(module: str, *args: str) -> dict[str, Any]:
    """Run one phase in a fresh interpreter (so its peak memory is its own) and read its JSON line."""
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {args} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@dataclass(frozen=True)
class Run:
    """One whole process as `/usr/bin/time -v` reports it (from the kernel: wait4), and its output."""

    seconds: float
    peak_rss_mib: float
    returncode: int
    stdout: str = ""
    cpu_seconds: float = 0.0  # user + system: far less noisy than wall on a busy machine
    # Every process of the run's tree (the command and the workers it forks), each at its own peak,
    # summed: an upper bound of what they held together. `peak_rss_mib` is what wait4 and
    # `/usr/bin/time -v` report: the largest peak of any one of them (the kernel keeps a max, not a sum).
    tree_rss_mib: float = 0.0
    processes: int = 1
    # Of `cpu_seconds`, the kernel's: mostly page faults and the report's writes. On a virtual machine
    # that hands free memory back to its host, touching fresh pages costs several times more some
    # minutes than others, and this is where it shows.
    system_seconds: float = 0.0


class TreePeaks:
    """Each process's own peak RSS (VmHWM) in a process tree, read every `interval` seconds while it runs.

    A process's peak is read from /proc while it lives: a worker's last few milliseconds may be missed.
    """

    def __init__(self, root: int, interval: float = 0.02) -> None:
        self._root, self._interval = root, interval
        self.peaks: dict[int, int] = {}  # pid -> VmHWM in KiB, as last read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> TreePeaks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in _tree(self._root):
                hwm = _vm_hwm_kib(pid)
                if hwm is not None:
                    self.peaks[pid] = max(hwm, self.peaks.get(pid, 0))

    def children_mib(self) -> list[float]:
        """The peaks of the processes below the root, in MiB."""
        return [kib / 1024 for pid, kib in self.peaks.items() if pid != self._root]


def tree_peak_mib(pid: int) -> float:
    """The largest peak RSS (VmHWM) of `pid` and its living descendants, as read now, in MiB."""
    return max((_vm_hwm_kib(each) or 0 for each in _tree(pid)), default=0) / 1024


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux: /proc/<pid>/task/<tid>/children)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                pending += [int(child) for child in (task / "children").read_text(encoding="ascii").split()]
            except OSError:
                continue
    return found


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)


def installed_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment as an installed tool runs in, plus `extra`: Python's bytecode cache on (kept
    under bench/out/pycache, compiled once here), so a measured process does not first compile every
    module it imports, even where the shell sets PYTHONDONTWRITEBYTECODE (about 0.6-2 s of CPU)."""
    cache = OUT / "pycache"
    if not (cache / "done").exists():
        cache.mkdir(parents=True, exist_ok=True)
        previous, sys.pycache_prefix = sys.pycache_prefix, str(cache)
        root = Path(__file__).resolve().parents[1]
        try:
            for tree in (root / "src", root / "bench", Path(sysconfig.get_paths()["purelib"])):
                compileall.compile_dir(tree, quiet=1, workers=0)
        finally:
            sys.pycache_prefix = previous
        (cache / "done").touch()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(cache), **(extra or {})}


def whole_process(command: list[str], ok: tuple[int, ...] = (0,), env: dict[str, str] | None = None) -> Run:
    """Run `command` to its end: its wall time, peak RSS and stdout; `ok`: the exit codes that mean it
    did its work. Output goes through files, so a chatty process never blocks on a full pipe. The
    process runs in `env`, by default this one as an installed tool sees it (`installed_environment`)."""
    env = installed_environment() if env is None else env
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        with TreePeaks(process.pid) as tree:
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if code not in ok:
        raise SystemExit(f"{command[:4]}… exited {code}:\n{stderr[-3000:]}")
    cpu = round(usage.ru_utime + usage.ru_stime, 3)  # the workers' included: wait4 counts reaped children
    # The command's own peak is not in wait4's figure once it has children (that is their max with its
    # own), so the tree's sum takes the command's VmHWM as read, or wait4's figure without children.
    children = tree.children_mib()
    own = tree.peaks.get(process.pid, usage.ru_maxrss) / 1024 if children else usage.ru_maxrss / 1024
    return Run(
        round(seconds, 3),
        round(usage.ru_maxrss / 1024, 1),
        code,
        stdout,
        cpu,
        round(own + sum(children), 1),
        1 + len(children),
        round(usage.ru_stime, 3),
    )


def json_line(run: Run) -> dict[str, Any]:
    """The figures a phase process printed as its last line."""
    found: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return found
