"""Dependencies point one way (issue 11): the import contracts in `.importlinter` hold, and the
shared helpers sit outside every package-level import cycle."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Final

import grimp

REPO: Final = Path(__file__).resolve().parents[2]
ROOT: Final = "powerx_governance"
# Neutral homes: anything may import them, they import no component.
NEUTRAL: Final = frozenset({"errors", "times", "domain", "versioning", "http", "records", "durations"})


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "0 broken" in done.stdout


def _package_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(ROOT)
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        parts = module.split(".")
        if len(parts) < 2:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            target = imported.split(".")
            if len(target) >= 2 and target[1] != parts[1]:
                edges[parts[1]].add(target[1])
    return edges


def _cyclic(edges: dict[str, set[str]]) -> set[str]:
    """Packages on some cycle: those that reach themselves."""
    on_cycle = set()
    for start in list(edges):
        seen, todo = set(), list(edges[start])
        while todo:
            node = todo.pop()
            if node == start:
                on_cycle.add(start)
                break
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
    return on_cycle


def test_shared_helpers_are_on_no_package_cycle() -> None:
    cyclic = _cyclic(_package_graph())
    assert not (NEUTRAL & cyclic), sorted(NEUTRAL & cyclic)
